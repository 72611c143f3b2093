"""A network of `rill node run` processes split in two by the peer blocklist across a month
end, then healed (`rill peers block` / `unblock` on every node): tests/test_partition.py and
the `partition_heal` benchmark (tests/bench/run.py).

Roles: in each group, nodes 0, 2, 4... are donors and 1, 3... creators; every donor clicks
one thing of every creator of both groups in October.  Topology: the groups' nodes are
interleaved (A0, B0, A1, B1, ...) and each node dials the three before it, so every
node has peers of both groups and each group stays connected within itself once split.

Timeline (manual clocks, every daemon alike): split; the month ends; every donor settles
one grace period (60 s) later and publishes; each side converges on its own; the clocks
reach 10 minutes past month end and at least ``split_real_s`` real seconds have passed
since the settlements went out (so GossipSub's caches cannot carry them across); heal.
After the heal, both ends of each closed connection dial it again; creators get the
claims to them by sync on reconnect (no clock moved); other nodes get the other side's
settlements and sealed claims from the donors' first republish, one hour after settling
(the clocks are moved there once every creator holds its claims).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clitools import fast_home, js
from procnet import ProcNode

from rill.node import control
from rill.protocol.keys import did_from_key, key_from_did, peer_id_from_key
from rill.protocol.months import month_end, month_start

OCT = month_start("2026-10")
END = month_end("2026-10")
GRACE = 60  # ProcNode runs every daemon with --grace 60
#: How long (clock seconds after month end) the network stays split.
SPLIT_S = 600
#: py-libp2p 0.8.1 GossipSub replays its message cache (5 heartbeats of 1 s) to a new
#: peer, and its seen cache keeps message IDs 120 s (real seconds both).
REPLAY_WINDOW_S = 6.0
SEEN_TTL_S = 121.0
#: The donors' first republish of unreceipted claims: NodeConfig.republish[0] after settling.
REPUBLISH_S = 3600


@dataclass
class Node:
    proc: ProcNode
    group: str
    role: str
    did: str = ""
    peer_id: str = ""
    dials: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.proc.name

    @property
    def sock(self) -> Path:
        return self.proc.home / control.SOCKET_NAME

    def call(self, cmd: str, **args: Any) -> Any:
        return control.call(self.sock, cmd, 30, **args)

    def peers(self) -> set[str]:
        return {p["peer_id"] for p in self.call("peers")}


def wait_until(pred: Callable[[], bool], timeout: float, what: str,
               why: Callable[[], object] = lambda: "") -> float:
    """Poll ``pred`` until true; the seconds it took (AssertionError past ``timeout``,
    with ``why()`` to say what was missing)."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: "
                                 f"{why()}")
        time.sleep(0.1)


def diff(nodes: list[Node], want: Callable[[Node], set[str]]) -> dict[str, Any]:
    """Per node: how many held, what is missing and what is extra (short IDs)."""
    out = {}
    for n in nodes:
        have, should = held(n), want(n)
        if have != should:
            out[n.name] = {"held": len(have), "missing": sorted(x[:8] for x in should - have),
                           "extra": sorted(x[:8] for x in have - should)}
    return out


def held(node: Node) -> set[str]:
    """IDs (hex) of the settlements and sealed claims a node holds (its object store: a
    donor's own are there too; claims in clear are private and not compared)."""
    db = sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {bytes(r[0]).hex() for r in db.execute(
            "SELECT id FROM objects WHERE type IN ('settlement', 'sealed-claim') "
            "AND private = 0")}
    finally:
        db.close()


def equivocations(node: Node) -> int:
    db = sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM objects WHERE type = 'equivocation'"
                              ).fetchone()[0])
    finally:
        db.close()


def incoming(node: Node) -> set[str]:
    """Claim IDs (hex) owed to a creator."""
    db = sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {bytes(r[0]).hex() for r in db.execute(
            "SELECT claim FROM obligations WHERE direction = 'in'")}
    finally:
        db.close()


def outgoing(node: Node) -> dict[str, str]:
    """A donor's claims: claim ID (hex) -> the creator's did."""
    db = sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {bytes(r[0]).hex(): did_from_key(bytes(r[1])) for r in db.execute(
            "SELECT claim, creator FROM obligations WHERE direction = 'out'")}
    finally:
        db.close()


def build(base: Path, per_group: int) -> list[Node]:
    """Homes (no proof of work), budgets and October's clicks; nothing running yet."""
    nodes: list[Node] = []
    for i in range(per_group):
        for group in ("a", "b"):
            role = "donor" if i % 2 == 0 else "creator"
            proc = ProcNode(base, f"{group}{i}-{role}", OCT + 3600)
            did = fast_home(proc.home, proc.name)
            nodes.append(Node(proc, group, role, did, peer_id_from_key(key_from_did(did))))
    creators = [n for n in nodes if n.role == "creator"]
    for donor in (n for n in nodes if n.role == "donor"):
        js("budget", "set", "6.00", "EUR", home=donor.proc.home, now=OCT + 60)
        for k, c in enumerate(creators):
            js("click", f"https://{c.name}.example/post", "--creator", c.did,
               home=donor.proc.home, now=OCT + 7200 + k)
    for i, node in enumerate(nodes):
        node.dials = [nodes[j].peer_id for j in range(max(0, i - 3), i)]
    return nodes


def addr(node: Node) -> str:
    return f"/ip4/127.0.0.1/tcp/{node.proc.port}/p2p/{node.peer_id}"


def planned(nodes: list[Node]) -> dict[str, set[str]]:
    """Each node's planned peers (those it dials and those that dial it)."""
    return {n.name: set(n.dials) | {m.peer_id for m in nodes if n.peer_id in m.dials}
            for n in nodes}


def start(nodes: list[Node], timeout: float = 90) -> float:
    """Start the daemons one after the other (each dials its earlier neighbours, already
    listening: started all at once, dials to peers not listening yet back off for up to a
    minute); the seconds until every planned connection is up."""
    by_peer = {n.peer_id: n for n in nodes}
    t0 = time.monotonic()
    for node in nodes:
        node.proc.start([addr(by_peer[p]) for p in node.dials])
        node.proc.wait_started(timeout)
    want = planned(nodes)
    wait_until(lambda: all(want[n.name] <= n.peers() for n in nodes), timeout,
               "every planned connection")
    return time.monotonic() - t0


def set_clocks(nodes: list[Node], t: int) -> None:
    for n in nodes:
        n.call("clock", set=t)


def block_across(nodes: list[Node], block: bool) -> None:
    """Every node blocks (or unblocks) every node of the other group with the CLI."""
    for n in nodes:
        for other in nodes:
            if other.group != n.group:
                out = js("peers", "block" if block else "unblock", other.peer_id,
                         home=n.proc.home)
                assert out["node"] == "applied" and out["blocked"] is block, out


def run(base: Path, per_group: int, *, split_real_s: float = REPLAY_WINDOW_S,
        heal_timeout: float = 60, note: Callable[[str], None] = lambda _s: None
        ) -> dict[str, Any]:
    """The whole scenario; returns figures (seconds) and counts.  Assertions inside.

    ``split_real_s``: real seconds the split lasts at least after the donors published,
    so that what GossipSub caches no longer crosses at the heal (past REPLAY_WINDOW_S
    its replay to new peers is empty; past SEEN_TTL_S every seen cache forgot too)."""
    nodes = build(base, per_group)
    figures: dict[str, Any] = {"nodes": len(nodes)}
    try:
        figures["start_s"] = start(nodes, 60 + 10 * len(nodes))
        note(f"started {len(nodes)} daemons in {figures['start_s']:.1f} s")
        # -- split -----------------------------------------------------------------------
        t0 = time.monotonic()
        block_across(nodes, True)
        same = {n.name: {m.peer_id for m in nodes if m.group == n.group and m is not n}
                for n in nodes}
        wait_until(lambda: all(n.peers() <= same[n.name] for n in nodes), 30,
                   "every cross-group connection to close")
        figures["split_s"] = time.monotonic() - t0
        # a blocked peer cannot come back: its dial is refused after the handshake
        a0, b0 = nodes[0], nodes[1]
        try:
            b0.call("connect", addr=addr(a0))
            raise AssertionError("a blocked peer's connection was accepted")
        except ConnectionError as exc:
            figures["refusal"] = str(exc)
        assert b0.peer_id not in a0.peers() and a0.peer_id not in b0.peers()
        # -- the month ends on both sides --------------------------------------------------
        for t in (END + 1, END + GRACE + 1, END + 2 * GRACE + 1):
            set_clocks(nodes, t)
        donors = [n for n in nodes if n.role == "donor"]
        creators = [n for n in nodes if n.role == "creator"]
        wait_until(lambda: all(len(outgoing(d)) == len(creators) for d in donors), 60,
                   "every donor to settle")
        claims = {d.name: outgoing(d) for d in donors}
        t_published = time.monotonic()
        own = {d.name: held(d) for d in donors}  # settlement + one sealed claim per creator
        side = {g: set().union(*(own[d.name] for d in donors if d.group == g)) for g in "ab"}
        t1 = time.monotonic()
        wait_until(lambda: all(held(n) == side[n.group] for n in nodes), 60,
                   "each side to hold its own side's settlements and claims",
                   lambda: diff(nodes, lambda n: side[n.group]))
        figures["side_converge_s"] = time.monotonic() - t1
        set_clocks(nodes, END + SPLIT_S)  # the split lasts 10 minutes past month end
        # ... and ``split_real_s`` real seconds after the settlements went out: a duration
        # of the scenario (caches age), not a wait for something to happen
        time.sleep(max(0.0, t_published + split_real_s - time.monotonic()))
        for n in nodes:  # and nothing of the other side
            assert not held(n) & side["b" if n.group == "a" else "a"], n.name
        everything = side["a"] | side["b"]
        figures["objects"] = len(everything)
        # -- heal --------------------------------------------------------------------------
        t_heal = time.monotonic()
        block_across(nodes, False)
        want = planned(nodes)  # both ends of each former connection dial it again
        figures["reconnect_s"] = wait_until(
            lambda: all(want[n.name] <= n.peers() for n in nodes), heal_timeout,
            "every connection closed by the split to be up again")
        # claims reach their creators across the former split by sync on reconnect, with
        # no clock moved: each creator holds exactly the claims every donor made to it
        expect = {c.did: {cid for d in donors for cid, cr in claims[d.name].items()
                          if cr == c.did} for c in creators}
        figures["claims_s"] = time.monotonic() - t_heal + wait_until(
            lambda: all(incoming(c) == expect[c.did] for c in creators), heal_timeout,
            "every creator to hold every claim to it")
        # relays and everyone else: the donors' first republish (one hour after settling)
        # every clock first to just before the first republish (due one hour after settling,
        # at END + GRACE at the earliest): clocks moved one node after the other must not
        # be 53 minutes apart when it fires, or a node still at END + 10 min takes an honest
        # relay's forward of the republish for a replay (gate.REPUBLISH_FLOOR_S, 20 min)
        assert END + SPLIT_S < END + GRACE + REPUBLISH_S - 10
        set_clocks(nodes, END + GRACE + REPUBLISH_S - 10)
        set_clocks(nodes, END + 2 * GRACE + REPUBLISH_S + 60)
        figures["converge_s"] = time.monotonic() - t_heal + wait_until(
            lambda: all(held(n) == everything for n in nodes), heal_timeout,
            "every node to hold every settlement and claim",
            lambda: diff(nodes, lambda n: everything))
        assert figures["converge_s"] <= heal_timeout, figures
        # no equivocation invented, nobody marked, nothing rejected
        for n in nodes:
            status = n.call("status")
            assert equivocations(n) == 0 and status["marked_donors"] == [], n.name
            assert status["counters"]["rejected"] == 0, (n.name, status["counters"])
        for d in donors:  # each donor signed one settlement: the same one everywhere
            assert outgoing(d) == claims[d.name]
    finally:
        codes = {n.name: n.proc.stop() for n in nodes}
    assert set(codes.values()) == {0}, codes
    return figures
