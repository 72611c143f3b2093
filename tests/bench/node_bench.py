"""Helpers for the node benchmarks in run.py: process networks, in-process networks,
objects to gossip, arrival detection.  Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import datetime
import hashlib
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from nodes import free_port  # noqa: E402
from procnet import RILL, ProcNode  # noqa: E402

from rill.node import control  # noqa: E402
from rill.node.host import peer_id_from_seed  # noqa: E402
from rill.protocol import keys  # noqa: E402
from rill.protocol.months import month_end, month_start  # noqa: E402
from rill.protocol.settle import SettlementResult, settle  # noqa: E402
from rill.wallet.wallet import Wallet  # noqa: E402

MONTH = "2026-10"
OCT = month_start(MONTH)
END = month_end(MONTH)
GRACE = 60                      # procnet.ProcNode runs `--grace 60`
AFTER = END + 3600              # a clock well past 2026-11-01 + grace
SETTLEMENTS = "rill/1/settlements"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"rill bench node " + name.encode()).digest()


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def fresh_settlement(rng: random.Random, creators: int = 3) -> SettlementResult:
    """A valid settlement for MONTH by a new random donor (so never a duplicate)."""
    donor = nacl.signing.SigningKey(rng.randbytes(32))
    things = {f"https://c{c}.example.org/{rng.getrandbits(32)}":
              keys.public_key(nacl.signing.SigningKey(rng.randbytes(32)))
              for c in range(creators)}
    return settle(donor, MONTH, 500, "EUR", bytes(32), things)


# -- /proc ---------------------------------------------------------------------------------

def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


# -- log parsing ---------------------------------------------------------------------------

STORED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO rill\.node: "
                    r"(gossip|sync|cli): (\S+) ([0-9a-f]{16}) stored")


def log_time(asctime: str) -> float:
    """logging's default asctime (local time, milliseconds truncated) -> Unix time."""
    return datetime.datetime.strptime(asctime, "%Y-%m-%d %H:%M:%S,%f").timestamp()


class LogTail:
    """Reads a node's log incrementally; remembers when each object ID was stored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.partial = ""
        self.stored: dict[str, tuple[float, str]] = {}  # id16 -> (time, via)

    def poll(self) -> None:
        with open(self.path) as fh:
            fh.seek(self.pos)
            data = fh.read()
            self.pos = fh.tell()
        lines = (self.partial + data).split("\n")
        self.partial = lines.pop()
        for line in lines:
            mt = STORED.match(line)
            if mt:
                self.stored.setdefault(mt.group(4), (log_time(mt.group(1)), mt.group(2)))


# -- a network of `rill node run` processes ------------------------------------------------

class BenchNode(ProcNode):
    """procnet.ProcNode, with the dashboard on (its own port) or off."""

    def __init__(self, base: Path, name: str, clock_start: int, dashboard: bool) -> None:
        super().__init__(base, name, clock_start)
        self.dashboard_port = free_port() if dashboard else 0

    def start(self, bootstrap: list[str]) -> None:
        args = [RILL, "node", "run", "--json", "--listen", f"/ip4/127.0.0.1/tcp/{self.port}",
                "--clock", f"manual:{self.clock_start}", "--grace", str(GRACE),
                "--dashboard-port", str(self.dashboard_port), "--log-level", "info"]
        for b in bootstrap:
            args += ["--bootstrap", b]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(args, env=self.env(), stdout=subprocess.PIPE,
                                         stderr=log, text=True)


class ProcNet:
    """N `rill node run` processes on 127.0.0.1, each bootstrapping to ``fanout`` random
    earlier nodes; homes made here with known seeds so peer IDs are known up front."""

    def __init__(self, base: Path, n: int, clock_start: int, seed: int = 1,
                 fanout: int = 2, dashboard: bool = False) -> None:
        self.base = base
        self.clock_start = clock_start
        self.rng = random.Random(seed)
        self.names = [f"n{i:03d}" for i in range(n)]
        self.nodes: dict[str, BenchNode] = {}
        self.addr: dict[str, str] = {}
        self.boot: dict[str, list[str]] = {}
        self.identity: dict[str, bytes] = {}
        base.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            w = Wallet.create(base / name, name, seed_of(name))
            self.identity[name] = w.identity
            w.close()
            node = BenchNode(base, name, clock_start, dashboard)
            self.nodes[name] = node
            self.addr[name] = (f"/ip4/127.0.0.1/tcp/{node.port}/p2p/"
                               f"{peer_id_from_seed(seed_of(name))}")
        self.fanout = fanout

    def sock(self, name: str) -> Path:
        return self.base / name / control.SOCKET_NAME

    def call(self, name: str, cmd: str, **args: Any) -> Any:
        return control.call(self.sock(name), cmd, 30.0, **args)

    def pid(self, name: str) -> int:
        proc = self.nodes[name].proc
        assert proc is not None
        return proc.pid

    def start(self, batch: int | None = None) -> float:
        """Start every node, ``batch`` at a time (default: one per core), each batch
        bootstrapping only to nodes already started.  Returns the seconds it took."""
        t = time.perf_counter()
        batch = batch or max(1, os.cpu_count() or 1)
        groups = [self.names[:1]] + [self.names[k:k + batch]
                                     for k in range(1, len(self.names), batch)]
        started: list[str] = []
        for group in groups:
            for name in group:
                # bootstrap to random nodes already running (never within one batch)
                self.boot[name] = self.rng.sample(started, min(self.fanout, len(started)))
                self.nodes[name].start([self.addr[b] for b in self.boot[name]])
            started += group
            for name in group:
                self.nodes[name].wait_started(timeout=120)
        return time.perf_counter() - t

    def wait_mesh(self, timeout: float = 60.0) -> float:
        """Until every node has all its bootstrap peers and a mesh on rill/1/settlements."""
        t = time.perf_counter()
        deadline = time.monotonic() + timeout
        want = {n: len(self.boot[n]) for n in self.names}
        while True:
            ok = True
            for name in self.names:
                s = self.call(name, "status")
                if s["peers"] < want[name] or s["mesh"][SETTLEMENTS] < 1:
                    ok = False
                    break
            if ok:
                return time.perf_counter() - t
            if time.monotonic() > deadline:
                raise RuntimeError(f"no mesh after {timeout} s: {name} {s['peers']} peers, "
                                   f"mesh {s['mesh']}")
            time.sleep(0.2)

    def set_clock(self, t: int) -> None:
        for name in self.names:
            self.call(name, "clock", set=t)

    def stop(self) -> dict[str, int]:
        return {name: node.stop() for name, node in self.nodes.items()}


def proc_trials(net: ProcNet, trials: int, warmup: int = 2, timeout: float = 30.0,
                seed: int = 7, gap: float = 0.3) -> tuple[list[float], list[str]]:
    """Publish fresh settlements from random origins; per trial, the seconds until the
    last node logged it stored.  Returns (times of the measured trials, problems)."""
    rng = random.Random(seed)
    tails = {name: LogTail(net.nodes[name].log) for name in net.names}
    times: list[float] = []
    problems: list[str] = []
    for k in range(warmup + trials):
        res = fresh_settlement(rng)
        raw = res.settlement.raw
        id16 = res.settlement.id_hex[:16]
        origin = rng.choice(net.names)
        t0 = time.time()
        net.call(origin, "publish", objects=[raw.hex()])
        deadline = time.monotonic() + timeout
        missing = set(net.names)
        while missing and time.monotonic() < deadline:
            time.sleep(0.02)
            for name in list(missing):
                tails[name].poll()
                if id16 in tails[name].stored:
                    missing.discard(name)
        if missing:
            problems.append(f"trial {k}: {len(missing)} node(s) never stored it")
            continue
        last = max(tails[n].stored[id16][0] for n in net.names)
        vias = {tails[n].stored[id16][1] for n in net.names if n != origin}
        if vias - {"gossip"}:
            problems.append(f"trial {k}: arrived by {sorted(vias)}")
        if k >= warmup:
            # asctime truncates to the millisecond: add half of one
            times.append(max(0.0, last + 0.0005 - t0))
        time.sleep(gap)  # let duplicates and IHAVE gossip die down
    return times, problems


def db_has(home: Path, oid: bytes) -> bool:
    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM objects WHERE id = ?", (oid,)).fetchone() is not None
    finally:
        db.close()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what}")
