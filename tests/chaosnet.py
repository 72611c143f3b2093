"""The chaos run's network and its state (tests/chaos.py): the daemons (`rill node run`
processes, tests/partition.py Nodes), their roles and groups, the run's record (budgets,
states seen, receipts signed, restarts, the per-month rows), reading a home beside its
running daemon (read-only SQLite), and the runner's own moves: clocks, starts, the
partition's blocklist, restarts and kill -9."""

from __future__ import annotations

import random
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import chaospower
import partition
from clitools import fast_home
from partition import Node, addr, block_across, planned, set_clocks, wait_until
from procnet import ProcNode

from rill.protocol.keys import did_from_key, key_from_did, peer_id_from_key
from rill.protocol.months import month_start

GRACE = partition.GRACE
REPUBLISH_S = partition.REPUBLISH_S


@dataclass
class Row:
    month: str
    faults: list[str] = field(default_factory=list)
    settlements: int = 0
    claims: int = 0
    paid: int = 0
    receipted: int = 0
    relay_gaps: int = 0
    foreign: int = 0  # with shards: objects of the month held by a node that should not
    held_pct: int = 100  # of the month's objects, how many each node must hold (mean, %)
    late_receipts: int = 0
    converge_s: float = 0.0
    power_back_s: float = 0.0  # power cut: restart -> what it lost of its own back
    month_s: float = 0.0
    invariants: str = "?"


@dataclass
class Run:
    base: Path
    nodes: list[Node]
    rng: random.Random
    note: Callable[[str], None]
    budgets: dict[tuple[str, str], int] = field(default_factory=dict)  # (donor, month)
    states: dict[tuple[str, str], str] = field(default_factory=dict)   # (node, claim)
    receipts: dict[str, str] = field(default_factory=dict)  # claim -> month it was signed
    restarts: dict[str, int] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    shutdown_races: set[tuple[str, str]] = field(default_factory=set)  # (node, time)
    now: int = 0  # every daemon's clock (manual clocks never go back)
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (node, peer) split apart
    power: chaospower.Power = field(default_factory=chaospower.Power)
    shard_bits: int = 0  # every daemon's [network] shard_bits (SPEC §11.6); 0: no shards

    @property
    def donors(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "donor"]

    @property
    def creators(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "creator"]


# -- reading a home (read-only SQLite, while its daemon runs) ------------------------------

def _db(node: Node) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{node.proc.home / 'rill.db'}?mode=ro", uri=True, timeout=30)


def obligations(node: Node, direction: str) -> list[tuple[str, str, str, str, int, str]]:
    """(claim hex, month, donor did, creator did, amount, state)."""
    db = _db(node)
    try:
        return [(bytes(c).hex(), mo, did_from_key(bytes(d)), did_from_key(bytes(cr)), a, s)
                for c, mo, d, cr, a, s in db.execute(
                    "SELECT claim, month, donor, creator, amount, state FROM obligations "
                    "WHERE direction = ?", (direction,))]
    finally:
        db.close()


def month_objects(node: Node, month: str) -> set[str]:
    """Settlements and sealed claims a donor signed for ``month`` (its own, by ID)."""
    db = _db(node)
    try:
        rows = db.execute("SELECT DISTINCT settlement, sealed FROM obligations WHERE "
                          "direction = 'out' AND month = ?", (month,)).fetchall()
    finally:
        db.close()
    out: set[str] = set()
    for s, sealed in rows:
        out.add(bytes(s).hex())
        if sealed is not None:
            out.add(bytes(sealed).hex())
    return out


def raws(node: Node, ids: set[str]) -> dict[str, bytes]:
    """The stored bytes of those of ``ids`` (hex) the node holds."""
    db = _db(node)
    try:
        return {bytes(i).hex(): bytes(r) for i, r in db.execute(
            f"SELECT id, raw FROM objects WHERE id IN ({','.join('?' * len(ids))})",
            [bytes.fromhex(x) for x in ids])}
    finally:
        db.close()


# -- the network ----------------------------------------------------------------------------

def build(base: Path, n: int, first: str, seed: int,
          note: Callable[[str], None], shard_bits: int = 0) -> Run:
    """The homes (no proof of work; ``[network] shard_bits`` when asked), nothing running."""
    nodes: list[Node] = []
    t0 = month_start(first) + 3600
    for i in range(n):
        role = "donor" if i % 2 == 0 else "creator"
        group = "ab"[(i // 2) % 2] if n >= 4 else "ab"[i % 2]
        proc = ProcNode(base, f"n{i:02d}-{role}", t0)
        did = fast_home(proc.home, proc.name)
        if shard_bits:
            cfg = proc.home / "config.toml"
            text = cfg.read_text()
            assert "\nwork_bits = 0\n" in text, "config.toml: no [network] work_bits"
            cfg.write_text(text.replace("\nwork_bits = 0\n",
                                        f"\nwork_bits = 0\nshard_bits = {shard_bits}\n"))
        nodes.append(Node(proc, group, role, did, peer_id_from_key(key_from_did(did))))
    for i, node in enumerate(nodes):
        node.dials = [nodes[j].peer_id for j in range(max(0, i - 3), i)]
    return Run(base, nodes, random.Random(seed), note, shard_bits=shard_bits)


def clocks(run: Run, t: int) -> None:
    set_clocks(run.nodes, t)
    run.now = t


def start_node(run: Run, node: Node, now: int) -> None:
    by_peer = {n.peer_id: n for n in run.nodes}
    node.proc.clock_start = now
    node.proc.start([addr(by_peer[p]) for p in node.dials])
    node.proc.wait_started(60)


def wait_connected(run: Run, timeout: float = 60) -> None:
    want = planned(run.nodes)
    blocked = run.blocked
    def missing() -> dict[str, list[str]]:
        out = {}
        for n in run.nodes:
            lack = {p for p in want[n.name] if (n.name, p) not in blocked} - n.peers()
            if lack:
                out[n.name] = sorted(names[p] for p in lack)
        return out

    names = {n.peer_id: n.name for n in run.nodes}
    wait_until(lambda: not missing(), timeout, "every planned connection to be up", missing)


def set_blocked(run: Run, on: bool) -> None:
    block_across(run.nodes, on)
    pairs = {(n.name, m.peer_id) for n in run.nodes for m in run.nodes if m.group != n.group}
    run.blocked = pairs if on else set()


def bounce(run: Run, node: Node, now: int, hard: bool) -> None:
    """Stop a daemon (SIGKILL if ``hard``, else SIGTERM and a clean exit) and start it
    again on the same home, its clock at ``now``."""
    proc = node.proc.proc
    assert proc is not None and proc.poll() is None, f"{node.name} not running"
    if hard:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        node.proc.proc = None
    else:
        code = node.proc.stop()
        assert code == 0, f"{node.name} exited {code} on SIGTERM"
    run.restarts[node.name] = run.restarts.get(node.name, 0) + 1
    start_node(run, node, now)


__all__ = ["GRACE", "REPUBLISH_S", "Row", "Run", "bounce", "build", "clocks", "month_objects",
           "obligations", "raws", "set_blocked", "start_node", "wait_connected"]
