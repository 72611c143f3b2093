"""The honest side of the Sybil soak (tests/test_sybil_soak.py): setting the honest
network up, and reading back what it did.

* Set-up: every node a donor clicking every other node's things in October (CLI
  processes beside the daemons); third-party objects stored before the flood.
* Reading back: the daemons' own INFO log lines (asctime, 1 ms): when a donor settled
  (right before it publishes), when a creator took a claim in; a poll of the
  creators' ``obligations`` tables as a second witness; the Sybils' cut-offs from the
  daemons' peer tables; the machine's CPU.
"""

from __future__ import annotations

import functools
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio
from attacker import Attacker
from attacknet import AttackNet
from forge import Forged, forge_settlement, object_id, rill_key, sign_raw
from sybilsoak import ROLES, Sybil

from rill.protocol import keys
from rill.protocol import messages as m


async def blocking(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kw))


def across(net: AttackNet, name: str) -> str:
    """The node across the ring from ``name``."""
    i = net.names.index(name)
    return net.names[(i + len(net.names) // 2) % len(net.names)]


# -- honest set-up -----------------------------------------------------------------------

def honest_clicks(net: AttackNet, month_start: int) -> None:
    """Every node a donor: a budget, one thing of every other node clicked in the month
    starting at ``month_start`` (CLI processes on the daemons' homes, three homes at a
    time)."""
    dids = {n: keys.did_from_key(net.identity(n)) for n in net.names}

    def donor(i: int, name: str) -> None:
        net.cli(name, "budget", "set", "10.00", "EUR", now=month_start + 60)
        for k, other in enumerate(o for o in net.names if o != name):
            net.cli(name, "click", f"https://{other}.example/post/{i}", "--creator",
                    dids[other], now=month_start + 3600 * (k + 2))

    with ThreadPoolExecutor(3) as pool:
        for f in [pool.submit(donor, i, n) for i, n in enumerate(net.names)]:
            f.result()


async def held_everywhere(net: AttackNet, ids: set[bytes], timeout: float
                          ) -> dict[str, set[bytes]]:
    """Wait until every node holds ``ids``; return what each holds of them."""
    deadline = trio.current_time() + timeout
    while True:
        held = {n: ids & await blocking(net.object_ids, n) for n in net.names}
        if all(h == ids for h in held.values()) or trio.current_time() > deadline:
            return held
        await trio.sleep(0.5)


async def third_party_objects(net: AttackNet, rnd: random.Random, month: str, now: int
                              ) -> tuple[dict[str, set[bytes]], set[bytes], list[bytes]]:
    """Honest objects stored before the flood: settlements of ``month`` by two third-party
    donors per node, each with sealed claims to two honest creators, a receipt per donor
    signed by its first creator (`rill receipt`, published by the creator's daemon) and
    the creators' key documents, published by an honest peer.  Returns what each node
    holds of them, their IDs and the raw objects the peer published (what replayers
    replay)."""
    creators = [net.identity(n) for n in net.names]
    donors = [forge_settlement(rill_key(), month, rnd.sample(creators, 2), filler=4)
              for _ in range(2 * len(net.names))]
    docs = [sign_raw(net.signing_key(n), "key", {
        "name": n, "origins": [f"https://{n}.example"], "payto": [],
        "valid_from": now - 86400}) for n in net.names]
    raws = [r for f in donors for r in f.all()]
    name_of = {net.identity(n): n for n in net.names}
    async with Attacker.running() as witness:
        wt = await witness.connect(net.nodes[net.names[0]].addr)
        for raw in [*raws, *docs]:
            assert await witness.publish(wt, raw), "the witness lost its connection"
            await trio.sleep(0.03)
        ids = {object_id(r) for r in [*raws, *docs]}
        held = await held_everywhere(net, ids, 60)
        assert all(h == ids for h in held.values()), \
            f"third-party objects did not spread: {({n: len(h) for n, h in held.items()})}"

        def receipt(i: int, f: Forged) -> None:
            creator = sorted(f.claims)[0]
            net.cli(name_of[creator], "receipt", object_id(f.claims[creator]).hex(),
                    "--reference", f"tp-{i}", now=now - 30)

        with ThreadPoolExecutor(3) as pool:
            for fut in [pool.submit(receipt, i, f) for i, f in enumerate(donors)]:
                fut.result()
        receipts = {object_id(r) for n in net.names
                    for r in await blocking(net.objects, n, "receipt")}
        assert len(receipts) == len(donors), f"{len(receipts)} receipts signed"
        ids |= receipts
        held = await held_everywhere(net, ids, 60)
    return held, ids, [*raws, *docs]


async def connect_sybils(net: AttackNet, stack: AsyncExitStack) -> list[Sybil]:
    """Four silent Sybils per node, each connected to its node and the one across."""
    sybils = []
    for name in net.names:
        for role in ROLES:
            a = await stack.enter_async_context(Attacker.running(silent=True))
            sybils.append(Sybil(a, role, name, {}))
    limiter = trio.CapacityLimiter(6)

    async def connect(s: Sybil, target: str) -> None:
        async with limiter:
            s.targets[target] = await s.attacker.connect(net.nodes[target].addr, timeout=60)

    async with trio.open_nursery() as nursery:
        for s in sybils:
            for target in (s.home, across(net, s.home)):
                nursery.start_soon(connect, s, target)
    return sybils


class HonestObjects:
    """What a replayer replays: the third-party objects, then the honest nodes' own
    objects it received since (signed by an honest node: the envelope's last 32
    bytes).  Scans only what arrived since the last call."""

    def __init__(self, received: list[Any], honest_keys: set[bytes], known: list[bytes]
                 ) -> None:
        self.received, self.honest_keys = received, honest_keys
        self.out = list(known)
        self.seen = {object_id(r) for r in known}
        self.scanned = 0

    def __call__(self) -> list[bytes]:
        for r in self.received[self.scanned:]:
            if r.data[-32:] in self.honest_keys and object_id(r.data) not in self.seen:
                self.seen.add(object_id(r.data))
                self.out.append(r.data)
        self.scanned = len(self.received)
        return self.out


def honest_claims(net: AttackNet, month: str) -> dict[str, dict[str, Any]]:
    """Every honest claim of ``month``: claim ID -> its donor, creator and settlement."""
    names = {keys.did_from_key(net.identity(n)): n for n in net.names}
    out = {}
    for n in net.names:
        db = net.db(n)
        try:
            for row in net.cli_json(n, "claims", "--outgoing", "--month", month):
                raw = db.execute("SELECT raw FROM objects WHERE id = ?",
                                 (bytes.fromhex(row["id"]),)).fetchone()[0]
                out[row["id"]] = {"id": row["id"], "donor": n,
                                  "creator_name": names[row["creator"]],
                                  "settlement": m.decode(raw, m.Claim).body.settlement.hex()}
        finally:
            db.close()
    return out


def ask(net: AttackNet, name: str, cmd: str, default: Any) -> Any:
    """A control request, or ``default`` when the daemon does not answer (dead)."""
    try:
        return net.ctl(name, cmd)
    except (OSError, AssertionError, ValueError):
        return default


def set_clocks(net: AttackNet, t: int, names: list[str] | None = None) -> list[str]:
    """Set the daemons' manual clocks; return those that did not answer (dead: reported
    at the end, the flood goes on without them)."""
    mute = []
    for n in names or net.names:
        try:
            net.ctl(n, "clock", set=t)
        except (OSError, AssertionError, ValueError):
            mute.append(n)
    return mute


# -- reading honest delivery back ----------------------------------------------------------

_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
SETTLED = re.compile(_STAMP + r"INFO rill\.node: settled (\d{4}-\d\d): ([0-9a-f]{64}), "
                     r"(\d+) claim", re.M)
TAKEN = re.compile(_STAMP + r"INFO rill\.node: (gossip|sync|adopted|cli): ([a-z-]+) "
                   r"([0-9a-f]{16}) ([a-z-]+) ?(.*)$", re.M)
REJECTED = re.compile(_STAMP + r"INFO rill\.node: rejected a message on \[[^\]]*\] from "
                      r"(\S+): (.*)$", re.M)


def stamp(text: str) -> float:
    """A log line's asctime (local time, milliseconds) as Unix seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


@dataclass(frozen=True)
class Taken:
    at: float
    via: str
    type: str
    id16: str
    action: str
    detail: str


def settled_at(log: str, month: str) -> dict[str, float]:
    """Settlement ID (hex) -> when the daemon logged it settled (right before it
    publishes the settlement and its sealed claims)."""
    return {sid: stamp(ts) for ts, mo, sid, _n in SETTLED.findall(log) if mo == month}


def taken(log: str) -> list[Taken]:
    return [Taken(stamp(ts), via, type_, id16, action, detail)
            for ts, via, type_, id16, action, detail in TAKEN.findall(log)]


def rejections(log: str) -> Counter[str]:
    """Reasons of the REJECT lines of a daemon's log."""
    return Counter(reason.split(":")[0][:60] for _ts, _peer, reason in REJECTED.findall(log))


class ObligationPoll:
    """Polls the creators' ``obligations`` tables (read-only) for incoming claims of a
    month: claim ID -> first time seen (Unix seconds, from the test's clock)."""

    def __init__(self, homes: dict[str, Path], month: str) -> None:
        self.month = month
        self.dbs = {n: sqlite3.connect(f"file:{h / 'rill.db'}?mode=ro", uri=True,
                                       timeout=5, check_same_thread=False)
                    for n, h in homes.items()}
        self.seen: dict[str, dict[bytes, float]] = {n: {} for n in homes}

    def poll(self, now: float) -> None:
        for name, db in self.dbs.items():
            try:
                rows = db.execute("SELECT claim FROM obligations WHERE direction = 'in' AND "
                                  "month = ?", (self.month,)).fetchall()
            except sqlite3.OperationalError:  # busy: next round
                continue
            seen = self.seen[name]
            for (claim,) in rows:
                seen.setdefault(bytes(claim), now)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


def first_seen(poll: ObligationPoll, c: dict[str, Any]) -> float | None:
    return poll.seen[c["creator_name"]].get(bytes.fromhex(c["id"]))


def arrival(log: str, c: dict[str, Any], poll: ObligationPoll) -> float | None:
    """When the creator first held claim ``c``: its own log line (the claim taken in, or
    the settlement that took the waiting claim in), or the poll of its obligations,
    whichever is first."""
    times = []
    cid16, sid16 = c["id"][:16], c["settlement"][:16]
    pending = False
    for t in taken(log):
        if t.type == "claim" and t.id16 == cid16:
            if t.action == "claim-received":
                times.append(t.at)
                break
            pending = pending or t.action == "pending"
        if pending and t.type == "settlement" and t.id16 == sid16 and "waiting" in t.detail:
            times.append(t.at)
            break
    polled = first_seen(poll, c)
    if polled is not None:
        times.append(polled)
    return min(times) if times else None


def cut_offs(sybils: list[Sybil], peers: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per node, per Sybil (``role@home``): "cut (after N s)" when the node blacklisted
    it or no longer lists it as a peer (N: when our writes to it started failing), else
    "connected"."""
    out: dict[str, dict[str, str]] = {n: {} for n in peers}
    for s in sybils:
        pid = str(s.attacker.peer_id)
        for target in s.targets:
            row = peers[target].get(pid)
            gone = row is None or bool(row.get("blacklisted"))
            when = s.tally.cut.get(target)
            out[target][f"{s.role}@{s.home}"] = (
                f"cut ({when:.1f} s)" if gone and when is not None else
                "cut" if gone else "connected")
    return out


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


__all__ = [
    "HonestObjects",
    "ObligationPoll",
    "Taken",
    "across",
    "arrival",
    "ask",
    "blocking",
    "connect_sybils",
    "cpu_busy",
    "cut_offs",
    "first_seen",
    "held_everywhere",
    "honest_claims",
    "honest_clicks",
    "percentile",
    "rejections",
    "set_clocks",
    "settled_at",
    "stamp",
    "taken",
    "third_party_objects",
]
