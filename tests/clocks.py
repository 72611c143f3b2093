"""Clocks minutes apart and a node asleep across month end: `rill node run` daemons on
127.0.0.1 with manual clocks set to different offsets and advanced together
(tests/test_clocks.py).

Every node is a donor and a creator: it clicks one thing of every other node in October
and in November, so each settlement has a line for every other node.  What SPEC says
(§7.4, §11.2, §11.3), with the daemons' grace period of 60 s:

* a donor settles at its own clock END + GRACE and publishes.  A receiver whose clock is
  ``d`` seconds behind the publisher's reads END + GRACE - d, and refuses a settlement
  (and its sealed claims) whose month has not ended by now + 300 s (``future``): it
  takes it at first sight iff d <= GRACE + SKEW (360 s), else it IGNOREs it (no
  penalty: clocks differ);
* what was refused comes later: the settlement and the sealed claim to the receiver by
  the sync every node runs with all its peers one grace period after settling (its own
  clock END + 2 * GRACE), the sealed claims to others by the donor's first republish
  (one hour after settling);
* a node asleep across month end (SIGSTOP, or stopped and started again on the same home)
  that wakes days later settles the month once, publishes, and syncs: the others take its
  settlement (the month is 3 days old, well inside the window of the current month and
  the 3 before it), it takes theirs.

Timeline: the base clock moves in 60 s steps across each month end; node i's clock is
base + OFFSET[i], set in ascending order of offset, so when a node settles every other
clock already shows this step, and who takes its settlement at first sight is decided
exactly by the offsets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clitools import fast_home, js
from partition import Node, addr, equivocations, start, wait_until
from procnet import ProcNode

from rill.protocol.keys import did_from_key, key_from_did, peer_id_from_key
from rill.protocol.months import month_end, month_start

OCT = month_start("2026-10")
OCT_END = month_end("2026-10")
NOV_END = month_end("2026-11")
GRACE = 60  # ProcNode runs every daemon with --grace 60
SKEW = 300  # SPEC §7.4
REPUBLISH_S = 3600  # NodeConfig.republish[0]
DAY = 86400
STEP = 60


def db_rows(node: Node, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def settlements(node: Node, month: str) -> dict[str, list[str]]:
    """The settlements of ``month`` a node holds: donor did -> settlement IDs (hex)."""
    out: dict[str, list[str]] = {}
    for oid, signer in db_rows(node, "SELECT id, signer FROM objects WHERE type = "
                               "'settlement' AND month = ?", (month,)):
        out.setdefault(did_from_key(bytes(signer)), []).append(bytes(oid).hex())
    return out


def own_settled(node: Node) -> dict[str, str]:
    return {m_: bytes(s).hex() for m_, s in db_rows(node, "SELECT month, settlement "
                                                    "FROM settled")}


def public(node: Node, month: str) -> set[str]:
    """Settlements and sealed claims of ``month`` a node holds (IDs, hex)."""
    return {bytes(r[0]).hex() for r in db_rows(
        node, "SELECT id FROM objects WHERE type IN ('settlement', 'sealed-claim') "
        "AND private = 0 AND month = ?", (month,))}


def claims_out(node: Node, month: str) -> dict[str, str]:
    return {bytes(c).hex(): did_from_key(bytes(cr)) for c, cr in db_rows(
        node, "SELECT claim, creator FROM obligations WHERE direction = 'out' AND month = ?",
        (month,))}


def claims_in(node: Node, month: str) -> set[str]:
    return {bytes(r[0]).hex() for r in db_rows(
        node, "SELECT claim FROM obligations WHERE direction = 'in' AND month = ?", (month,))}


class Net:
    def __init__(self, nodes: list[Node], offsets: dict[str, int],
                 note: Callable[[str], None]) -> None:
        self.nodes = nodes
        self.offsets = offsets
        self.note = note
        self.base = 0

    def off(self, n: Node) -> int:
        return self.offsets[n.name]

    def set_base(self, base: int, nodes: list[Node] | None = None) -> None:
        """Every clock (of ``nodes``) to base + its offset, behind clocks first."""
        self.base = base
        for n in sorted(nodes or self.nodes, key=self.off):
            n.call("clock", set=base + self.off(n))

    def month_end(self, month: str, end: int, awake: list[Node],
                  first_sight: dict[tuple[str, str], bool]) -> float:
        """Step the awake nodes' clocks across ``end`` (60 s steps) until every clock shows
        END + 2 * GRACE; at each node's settling step check who takes its settlement at
        first sight (recorded in ``first_sight[(publisher, receiver)]``).  Returns the
        seconds from the last step until every awake creator holds every awake donor's
        claim to it (the sync after settling)."""
        lo = end - max(self.off(n) for n in awake) - 7 * STEP
        hi = end + 2 * GRACE - min(self.off(n) for n in awake) + STEP
        lo = max(lo, self.base)
        for base in range(lo + (-lo) % STEP, hi + STEP, STEP):
            before = {n.name: n.call("status")["counters"] for n in awake}
            self.set_base(base, awake)
            for p in awake:
                if base + self.off(p) == end + GRACE:  # p settles at this step
                    self._first_sight(p, month, awake, before, first_sight)
        # the sync after settling brings each creator the claims its peers hold: at least
        # those of the donors it is connected to (a peer that refused a donor's sealed
        # claims at first sight holds them only after the donor's republish)
        t0 = time.monotonic()
        everyone = self.expected_in(month, awake, awake)
        peers = {c.name: c.peers() for c in awake}
        expect = {c.name: {cid for d in awake if d.peer_id in peers[c.name]
                           for cid in self.expected_in(month, [d], [c])[c.name]}
                  for c in awake}
        wait_until(lambda: all(expect[c.name] <= claims_in(c, month) <= everyone[c.name]
                               for c in awake), 60,
                   "every creator to hold every claim to it from its peers (sync after "
                   "settling)",
                   lambda: {c.name: len(expect[c.name] - claims_in(c, month))
                            for c in awake})
        return time.monotonic() - t0

    def _first_sight(self, p: Node, month: str, awake: list[Node],
                     before: dict[str, dict[str, int]],
                     first_sight: dict[tuple[str, str], bool]) -> None:
        """``p`` settles now: the nodes at most GRACE + SKEW behind it take its settlement
        at once, the others (those that hear of it) ignore it as future."""
        wait_until(lambda: month in own_settled(p), 30, f"{p.name} to settle")
        sid = own_settled(p)[month]
        lines = len(claims_out(p, month))
        take = {r.name: self.off(p) - self.off(r) <= GRACE + SKEW
                for r in awake if r is not p}
        takers = [r for r in awake if r is not p and take[r.name]]
        refusers = [r for r in awake if r is not p and not take[r.name]]
        wait_until(lambda: all(sid in public(r, month) for r in takers), 30,
                   f"{p.name}'s settlement at first sight")

        def refused(r: Node) -> bool:
            c, b = r.call("status")["counters"], before[r.name]
            # the settlement and its sealed claims, ignored (not as known)
            return (c["ignored"] - c["duplicates"]) - (
                b["ignored"] - b["duplicates"]) >= 1 + lines
        # those with a neighbour that took it see it, and ignore it
        near = {q.peer_id for q in (p, *takers)}
        seen = [r for r in refusers if r.peers() & near]
        wait_until(lambda: all(refused(r) for r in seen), 30,
                   f"{p.name}'s settlement to be ignored where it is future")
        for r in refusers:
            assert sid not in public(r, month), (p.name, r.name)
        for r in awake:
            if r is not p:
                first_sight[(p.name, r.name)] = take[r.name]
        self.note(f"{month}: {p.name} ({self.off(p):+d} s) settled; taken at once by "
                  f"{[r.name for r in takers]}, ignored as future by "
                  f"{[r.name for r in refusers]}")

    def expected_in(self, month: str, donors: list[Node], creators: list[Node]
                    ) -> dict[str, set[str]]:
        out = {d.name: claims_out(d, month) for d in donors}
        return {c.name: {cid for d in donors for cid, cr in out[d.name].items()
                         if cr == c.did} for c in creators}

    def all_public(self, month: str, donors: list[Node]) -> set[str]:
        """What every node should hold in the end: each donor's settlement and sealed
        claims (a donor's own store holds exactly these)."""
        return set().union(*(own_public(d, month) for d in donors))


def own_public(node: Node, month: str) -> set[str]:
    return {bytes(r[0]).hex() for r in db_rows(
        node, "SELECT id FROM objects WHERE type IN ('settlement', 'sealed-claim') "
        "AND private = 0 AND month = ? AND signer = ?", (month, key_from_did(node.did)))}


def build(base: Path, offsets: list[int]) -> tuple[list[Node], dict[str, int]]:
    nodes: list[Node] = []
    names: dict[str, int] = {}
    for i, off in enumerate(offsets):
        name = f"n{i}{'p' if off >= 0 else 'm'}{abs(off)}"
        proc = ProcNode(base, name, OCT + 3600)
        did = fast_home(proc.home, name)
        nodes.append(Node(proc, "all", "both", did, peer_id_from_key(key_from_did(did))))
        names[name] = off
    for d in nodes:
        js("budget", "set", "6.00", "EUR", home=d.proc.home, now=OCT + 60)
        for k, c in enumerate(n for n in nodes if n is not d):
            js("click", f"https://{c.name}.example/oct", "--creator", c.did,
               home=d.proc.home, now=OCT + 7200 + k)
    for i, node in enumerate(nodes):
        node.dials = [nodes[j].peer_id for j in range(max(0, i - 3), i)]
    return nodes, names


def check_once(nodes: list[Node], months: list[str]) -> None:
    """No settlement twice: each donor settled each month once, every node holds at most
    one settlement per donor and month, and nobody saw an equivocation."""
    for n in nodes:
        for month in months:
            for donor, ids in settlements(n, month).items():
                assert len(ids) == 1, (n.name, month, donor, ids)
        assert equivocations(n) == 0, n.name
        status = n.call("status")
        assert status["marked_donors"] == [], (n.name, status["marked_donors"])
        assert status["counters"]["rejected"] == 0, (n.name, status["counters"])


def run(base: Path, offsets: list[int], *, sleeper: int, sleep: str = "sigstop",
        days: int = 3, cache_s: float = 0.0,
        note: Callable[[str], None] = lambda _s: None) -> dict[str, Any]:
    """The whole scenario; assertions inside.  ``sleeper``: index of the node asleep
    across November's end; ``sleep``: "sigstop" (the process frozen, its connections
    left open) or "restart" (stopped with SIGTERM, started again on the same home with
    its clock ``days`` later).  ``cache_s``: real seconds between a publication and the
    republish that must bring it to nodes away from the donor (py-libp2p's seen cache
    keeps a message ID 120 real seconds and an author's republish keeps its message ID:
    with real clocks republishes are hours apart; in a network that is not a full mesh
    the relays must have forgotten the first flood: partition.SEEN_TTL_S and a margin, for
    a duplicate arriving late refreshes an entry)."""
    nodes, offsets_by = build(base, offsets)
    net = Net(nodes, offsets_by, note)
    figures: dict[str, Any] = {"nodes": len(nodes), "offsets": offsets}
    first: dict[tuple[str, str], bool] = {}
    try:
        figures["start_s"] = start(nodes, 60 + 10 * len(nodes))
        net.set_base(OCT + 3600 + 600)
        # -- October: every clock awake, up to 20 minutes apart ----------------------------
        figures["oct_sync_s"] = net.month_end("2026-10", OCT_END, nodes, first)
        t_oct = time.monotonic()  # every first publication is older
        figures["refused_first"] = sum(1 for v in first.values() if not v)
        # every node holds the settlement of every donor it is connected to by then
        for n in nodes:
            have, peers = settlements(n, "2026-10"), n.peers()
            assert {d.did for d in nodes if d.peer_id in peers} <= set(have), n.name
        # the sealed claims to others: the donors' first republish.  Clocks first to just
        # before the earliest one, then past the latest (clocks moved one after the other
        # must not straddle it by 20 minutes: gate.REPUBLISH_FLOOR_S)
        everything = net.all_public("2026-10", nodes)
        hi = max(offsets)
        time.sleep(max(0.0, t_oct + cache_s - time.monotonic()))  # caches age
        net.set_base(OCT_END + GRACE + REPUBLISH_S - hi - 10)
        net.set_base(OCT_END + GRACE + REPUBLISH_S - min(offsets) + STEP)
        expect = net.expected_in("2026-10", nodes, nodes)
        figures["oct_republish_s"] = wait_until(
            lambda: all(public(n, "2026-10") == everything
                        and claims_in(n, "2026-10") == expect[n.name] for n in nodes), 60,
            "every node to hold every October settlement and sealed claim",
            lambda: {n.name: len(everything - public(n, "2026-10")) for n in nodes})
        check_once(nodes, ["2026-10"])
        # -- November: clicks, then one node asleep across the month end -------------------
        net.set_base(OCT_END + DAY)
        for d in nodes:
            for k, c in enumerate(n for n in nodes if n is not d):
                js("click", f"https://{c.name}.example/nov", "--creator", c.did,
                   home=d.proc.home, now=net.base + net.off(d) + k)
        net.set_base(NOV_END - 20 * 60)
        s = nodes[sleeper]
        awake = [n for n in nodes if n is not s]
        assert s.proc.proc is not None
        if sleep == "sigstop":
            os.kill(s.proc.proc.pid, signal.SIGSTOP)
        else:
            assert s.proc.stop() == 0
        figures["nov_sync_s"] = net.month_end("2026-11", NOV_END, awake, first)
        assert "2026-11" not in own_settled(s)
        # the awake nodes live on three days (their first republish goes by; the sleeper
        # misses it)
        net.set_base(NOV_END + GRACE + REPUBLISH_S - hi - 10, awake)
        wake = NOV_END + days * DAY
        net.set_base(wake, awake)
        t_jump = time.monotonic()  # the awake donors' second republish went out
        # -- wake up -----------------------------------------------------------------------
        t0 = time.monotonic()
        if sleep == "sigstop":
            os.kill(s.proc.proc.pid, signal.SIGCONT)
        else:
            s.proc.clock_start = wake + net.off(s)
            s.proc.start([addr(n) for n in awake[:3]])
            s.proc.wait_started(60)
        s.call("clock", set=wake + net.off(s))
        wait_until(lambda: "2026-11" in own_settled(s), 60, "the sleeper to settle November")
        figures["wake_settle_s"] = time.monotonic() - t0
        sid = own_settled(s)["2026-11"]
        wait_until(lambda: all(sid in public(n, "2026-11") for n in awake), 60,
                   "every node to take the late settlement")
        figures["wake_taken_s"] = time.monotonic() - t0
        # the sleeper holds every claim to it (by sync), every other creator the sleeper's
        # claim to it (by gossip); claims a node's neighbours refused at first sight come
        # with the next republish, below
        expect = net.expected_in("2026-11", nodes, nodes)
        now_ = {c.name: (expect[c.name] if c is s else
                         net.expected_in("2026-11", [s], [c])[c.name]) for c in nodes}
        wait_until(lambda: all(now_[c.name] <= claims_in(c, "2026-11") for c in nodes), 60,
                   "the sleeper to hold every November claim to it, and every creator its "
                   "claim", lambda: {c.name: len(now_[c.name] - claims_in(c, "2026-11"))
                                     for c in nodes})
        figures["wake_catch_up_s"] = time.monotonic() - t0
        assert set(settlements(s, "2026-11")) == {d.did for d in nodes}
        # the next republish (6 h later) brings the rest: everyone holds everything
        everything = net.all_public("2026-11", nodes)
        time.sleep(max(0.0, t_jump + cache_s - time.monotonic()))  # caches age
        net.set_base(wake + 6 * 3600 + 1800)
        figures["nov_republish_s"] = wait_until(
            lambda: all(public(n, "2026-11") == everything
                        and claims_in(n, "2026-11") == expect[n.name] for n in nodes), 60,
            "every node to hold every November settlement and sealed claim",
            lambda: {n.name: len(everything - public(n, "2026-11")) for n in nodes})
        check_once(nodes, ["2026-10", "2026-11"])
        assert own_settled(s).keys() == {"2026-10", "2026-11"}
        if sleep == "sigstop":  # one process all along: it settled twice in all
            assert s.call("status")["counters"]["settled"] == 2
        figures["first_sight"] = {f"{p}->{r}": v for (p, r), v in sorted(first.items())}
    finally:
        for n in nodes:
            if n.proc.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.proc.proc.pid, signal.SIGCONT)
        codes = {n.name: n.proc.stop() for n in nodes}
    assert set(codes.values()) == {0}, codes
    return figures
