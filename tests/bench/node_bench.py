"""Helpers for the node benchmarks in run.py: process networks, in-process networks,
objects to gossip, arrival detection.  Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import datetime
import hashlib
import logging
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


#: The benchmark networks ask this much proof of work of settlements (the public network:
#: 20 bits, about a second per donor and month; the benchmarks make thousands of donors).
BENCH_WORK_BITS = 8


def bench_home(path: Path, name: str) -> Wallet:
    """A new home for a benchmark node, configured with BENCH_WORK_BITS."""
    w = Wallet.create(path, name, seed_of(name))
    config = w.home.config_path
    config.write_text(config.read_text().replace("work_bits = 20",
                                                 f"work_bits = {BENCH_WORK_BITS}"))
    return w


def fresh_settlement(rng: random.Random, creators: int = 3) -> SettlementResult:
    """A valid settlement for MONTH by a new random donor (so never a duplicate)."""
    donor = nacl.signing.SigningKey(rng.randbytes(32))
    things = {f"https://c{c}.example.org/{rng.getrandbits(32)}":
              keys.public_key(nacl.signing.SigningKey(rng.randbytes(32)))
              for c in range(creators)}
    return settle(donor, MONTH, 500, "EUR", bytes(32), things, work_bits=BENCH_WORK_BITS)


# -- /proc ---------------------------------------------------------------------------------

def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


class Machine:
    """Busy CPU ticks of the whole machine (/proc/stat) against those of the processes we
    know, so a note can say how much other processes loaded the machine meanwhile."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = [os.getpid(), *pids]
        self.t0 = self._busy()
        self.own0 = sum(cpu_ticks(p) for p in self.pids)
        self.w0 = time.monotonic()

    @staticmethod
    def _busy() -> int:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        return sum(f[:3]) + sum(f[5:8])  # user nice system (idle iowait) irq softirq steal

    def other_load(self) -> float:
        """Percent of the machine's cores used by other processes since construction."""
        busy = self._busy() - self.t0
        own = sum(cpu_ticks(p) for p in self.pids) - self.own0
        wall = time.monotonic() - self.w0
        cores = os.cpu_count() or 1
        return max(0.0, 100.0 * (busy - own) / CLK_TCK / wall / cores)


def wait_quiet(pids: list[int], max_wait: float = 30.0, below: float = 10.0) -> float:
    """Wait (at most max_wait s) for a 1 s window in which other processes use less than
    ``below`` percent of the machine; return that last window's figure."""
    deadline = time.monotonic() + max_wait
    while True:
        mach = Machine(pids)
        time.sleep(1.0)
        load = mach.other_load()
        if load < below or time.monotonic() > deadline:
            return load


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
            w = bench_home(base / name, name)
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
                seed: int = 7, gap: float = 0.3
                ) -> tuple[list[float], list[str], list[bytes]]:
    """Publish fresh settlements from random origins; per trial, the seconds until the
    last node logged it stored.  Returns (times of the measured trials, problems)."""
    rng = random.Random(seed)
    tails = {name: LogTail(net.nodes[name].log) for name in net.names}
    times: list[float] = []
    problems: list[str] = []
    ids: list[bytes] = []
    for k in range(warmup + trials):
        res = fresh_settlement(rng)
        raw = res.settlement.raw
        ids.append(res.settlement.id)
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
    return times, problems, ids


def db_has(home: Path, oid: bytes) -> bool:
    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM objects WHERE id = ?", (oid,)).fetchone() is not None
    finally:
        db.close()


# -- in-process networks (tests/nodes.py) ----------------------------------------------------

def bench_config(port: int, **kw: Any) -> Any:
    """tests/nodes.config, with the daemon's default housekeeping period (5 s)."""
    from nodes import config
    kw.setdefault("work_bits", BENCH_WORK_BITS)
    return config(port, housekeeping=5.0, **kw)


async def start_inproc(net: Any, n: int, seed: int = 1, fanout: int = 2) -> dict[str, list[str]]:
    """Start n Daemons; each dials ``fanout`` random earlier ones (net.connect waits until
    both see each other as gossip peers)."""
    from nodes import free_port
    rng = random.Random(seed)
    names = [f"d{i:03d}" for i in range(n)]
    boot: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        home = net.base / name
        if not home.exists():
            bench_home(home, name).close()
        port = net.ports.setdefault(name, free_port())
        cfg = bench_config(port)
        await _start_daemon(net, name, cfg)
        boot[name] = rng.sample(names[:i], min(fanout, i))
        for b in boot[name]:
            await net.connect(name, b)
    return boot


async def _start_daemon(net: Any, name: str, cfg: Any) -> Any:
    import trio

    from rill.node.daemon import Daemon
    daemon = Daemon(net.base / name, cfg, net.clock)
    scope = trio.CancelScope()

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await daemon.run(task_status=task_status)

    await net.nursery.start(run)
    net.nodes[name], net.scopes[name] = daemon, scope
    return daemon


async def wait_mesh_inproc(net: Any, timeout: float = 60.0) -> float:
    import trio
    t = time.perf_counter()
    with trio.fail_after(timeout):
        while not all(d.p2p is not None and len(d.p2p.gossipsub.mesh.get(SETTLEMENTS, ())) >= 1
                      for d in net.nodes.values()):
            await trio.sleep(0.05)
    return time.perf_counter() - t


class Arrivals:
    """Wraps each Daemon's _after_import (instance attribute, no polling; every object a
    daemon takes in, by gossip, sync or the CLI, passes through it): the perf_counter
    time at which each node stored the object being watched."""

    def __init__(self, daemons: dict[str, Any]) -> None:
        import trio
        self.target: bytes | None = None
        self.times: dict[str, float] = {}
        self.first_seen: dict[str, float] = {}
        self.vias: dict[str, str] = {}
        self.done = trio.Event()
        self.n = len(daemons)
        for name, d in daemons.items():
            d._after_import = self._wrap(name, d._after_import)

    def _wrap(self, name: str, orig: Callable[..., Any]) -> Callable[..., Any]:
        async def accept(raw: bytes, result: Any, via: str) -> bool:
            ok = await orig(raw, result, via)
            if ok and raw == self.target:
                self.times[name] = time.perf_counter()
                self.vias[name] = via
                if len(self.times) == self.n:
                    self.done.set()
            return bool(ok)
        return accept

    def watch(self, raw: bytes) -> None:
        import trio
        self.target = raw
        self.times = {}
        self.vias = {}
        self.done = trio.Event()


async def inproc_trials(net: Any, trials: int, warmup: int = 2, timeout: float = 30.0,
                        seed: int = 7, gap: float = 0.3) -> tuple[list[float], list[str]]:
    """Like proc_trials, in one process: publish through the origin's control handler
    (what `rill publish` asks of the daemon) and time until every Daemon stored it."""
    import trio
    rng = random.Random(seed)
    arrivals = Arrivals(net.nodes)
    names = sorted(net.nodes)
    times: list[float] = []
    problems: list[str] = []
    for k in range(warmup + trials):
        res = fresh_settlement(rng)
        raw = res.settlement.raw
        origin = rng.choice(names)
        arrivals.watch(raw)
        t0 = time.perf_counter()
        await net.nodes[origin]._control({"cmd": "publish", "objects": [raw.hex()]})
        with trio.move_on_after(timeout):
            await arrivals.done.wait()
        if not arrivals.done.is_set():
            problems.append(f"trial {k}: {len(names) - len(arrivals.times)} node(s) never "
                            "stored it")
            continue
        if set(v for n, v in arrivals.vias.items() if n != origin) - {"gossip"}:
            problems.append(f"trial {k}: arrived by {sorted(set(arrivals.vias.values()))}")
        if k >= warmup:
            times.append(max(arrivals.times.values()) - t0)
        await trio.sleep(gap)
    return times, problems


async def stop_all(net: Any, timeout: float = 120.0) -> float:
    """Cancel every Daemon at once (Net.stop goes one by one) and wait until all closed."""
    import trio
    t = time.perf_counter()
    for name in list(net.scopes):
        net.scopes.pop(name).cancel()
    with trio.fail_after(timeout):
        while any(d.p2p is not None for d in net.nodes.values()):
            await trio.sleep(0.05)
    net.nodes.clear()
    return time.perf_counter() - t


class LibP2PWarnings(logging.Handler):
    """Counts libp2p's warnings (its logger has no handler of its own: without one they
    go raw to stderr) and keeps one example of each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = re.sub(r"12D3KooW\w+", "<peer>", record.getMessage())
        self.counts[key] = self.counts.get(key, 0) + 1

    def install(self) -> LibP2PWarnings:
        from rill.node.host import route_libp2p_logs
        route_libp2p_logs(self, logging.WARNING)
        return self

    def summary(self) -> str:
        if not self.counts:
            return "no libp2p warnings"
        return "; ".join(f"{n}× “{k[:70]}”" for k, n in
                         sorted(self.counts.items(), key=lambda kv: -kv[1])[:3])


async def inproc_propagation(base: Path, n: int, trials: int, warmup: int = 2
                             ) -> dict[str, Any]:
    import trio
    from nodes import network
    warnings = LibP2PWarnings().install()
    out: dict[str, Any] = {}
    async with network(base, AFTER) as net:
        t = time.perf_counter()
        boot = await start_inproc(net, n)
        out["start"] = time.perf_counter() - t
        out["mesh"] = await wait_mesh_inproc(net)
        await trio.sleep(1.0)
        degrees = [len(d.p2p.pubsub.peers) for d in net.nodes.values()]
        out["degree"] = statistics.mean(degrees)
        mach = Machine([])
        c0 = os.times()
        times, problems = await inproc_trials(net, trials, warmup)
        c1 = os.times()
        out["other"] = mach.other_load()
        out["cpu_per_trial"] = (c1.user + c1.system - c0.user - c0.system) / (trials + warmup)
        out["times"], out["problems"] = times, problems
        out["during"] = warnings.summary()
        out["stop"] = await stop_all(net)
        out["boot"] = boot
    out["warnings"] = warnings.summary()
    return out


# -- resources ---------------------------------------------------------------------------------

def vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def import_rss(module: str) -> float:
    """VmRSS in MB of a fresh Python process that has imported ``module`` and nothing
    else (what an import costs before any work)."""
    code = (f"import {module}\n"
            "print(next(line.split()[1] for line in open('/proc/self/status')\n"
            "           if line.startswith('VmRSS:')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    return int(out.stdout) / 1024


def object_counts(home: Path) -> tuple[int, int, int]:
    """(settlements, sealed claims, incoming obligations) in a home, read-only."""
    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True, timeout=5)
    try:
        types = dict(db.execute("SELECT type, count(*) FROM objects GROUP BY type").fetchall())
        incoming = db.execute("SELECT count(*) FROM obligations WHERE direction = 'in'"
                              ).fetchone()[0]
    finally:
        db.close()
    return types.get("settlement", 0), types.get("sealed-claim", 0), incoming


def resources(base: Path, n: int = 10, idle_s: float = 20.0, clicks_per_creator: int = 10
              ) -> dict[str, Any]:
    """A network of n processes (dashboards on, as by default), every node a donor with a
    budget and clicks on things of every other node.  Idle first, then the month end."""
    net = ProcNet(base, n, OCT + 3600, dashboard=True)
    for i, name in enumerate(net.names):
        with Wallet.open(base / name) as w:
            w.set_budget(1000 + 100 * i, "EUR", OCT + 60)
            t = OCT + 120
            for other in net.names:
                if other == name:
                    continue
                for k in range(clicks_per_creator):
                    t += 1
                    w.click(f"https://{other}.example.org/post/{k}", t,
                            creator=net.identity[other])
    out: dict[str, Any] = {"n": n, "clicks": (n - 1) * clicks_per_creator}
    try:
        out["start"] = net.start()
        out["mesh"] = net.wait_mesh()
        time.sleep(2.0)
        pids = {name: net.pid(name) for name in net.names}
        degrees = [net.call(x, "status")["peers"] for x in net.names]
        out["degree"] = statistics.mean(degrees)
        wait_quiet(list(pids.values()))
        mach = Machine(list(pids.values()))
        c0 = {x: cpu_ticks(p) for x, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(idle_s)
        wall = time.monotonic() - t0
        c1 = {x: cpu_ticks(p) for x, p in pids.items()}
        out["idle_other"] = mach.other_load()
        out["idle_s"] = wall
        out["idle_cpu"] = [100.0 * (c1[x] - c0[x]) / CLK_TCK / wall for x in net.names]
        out["idle_rss"] = [vm_kb(p, "VmRSS") / 1024 for p in pids.values()]
        # month end: every clock past the end first, then past the grace period
        mach = Machine(list(pids.values()))
        c0 = {x: cpu_ticks(p) for x, p in pids.items()}
        t0 = time.monotonic()
        net.set_clock(END + 1)
        net.set_clock(END + GRACE + 1)
        want = (n, n * (n - 1), n - 1)
        prev: dict[str, tuple[int, int, int]] = {}
        last_change = t0
        while time.monotonic() - t0 < 60:
            counts = {x: object_counts(base / x) for x in net.names}
            now = time.monotonic()
            if counts != prev:
                prev, last_change = counts, now
            if all(c == want for c in counts.values()) or now - last_change > 3.0:
                break
            time.sleep(0.05)
        c1 = {x: cpu_ticks(p) for x, p in pids.items()}
        out["me_other"] = mach.other_load()
        out["me_s"] = wall = last_change - t0
        out["me_done"] = sum(c == want for c in prev.values())
        out["me_counts"] = {x: c for x, c in prev.items() if c != want}
        out["me_cpu"] = [100.0 * (c1[x] - c0[x]) / CLK_TCK / wall for x in net.names]
        out["me_cpu_s"] = [(c1[x] - c0[x]) / CLK_TCK for x in net.names]
        out["drops"] = sum(net.nodes[x].log.read_text().count("fail to deliver message")
                           for x in net.names)
        out["want"] = want
        # whatever gossip lost: each daemon pulls from its peers one more grace later
        out["sync_s"] = None
        if out["me_counts"]:
            t1 = time.monotonic()
            net.set_clock(END + 2 * GRACE + 1)
            while time.monotonic() - t1 < 30:
                if all(object_counts(base / x)[2] == n - 1 for x in net.names):
                    out["sync_s"] = time.monotonic() - t1
                    break
                time.sleep(0.05)
            out["after_sync"] = {x: c for x in net.names
                                 if (c := object_counts(base / x)) != want}
        out["me_rss"] = [vm_kb(p, "VmRSS") / 1024 for p in pids.values()]
        out["peak_rss"] = [vm_kb(p, "VmHWM") / 1024 for p in pids.values()]
    finally:
        out["exit"] = net.stop()
    return out


# -- gossip validation rate ----------------------------------------------------------------

def settlements(n: int, seed: int = 5) -> list[bytes]:
    """n distinct valid settlements for MONTH by n new donors, each with no lines (about
    240 bytes), stamped at BENCH_WORK_BITS: objects a node admits from strangers (a
    receipt or a claim would be ignored without the claim or settlement it hangs off)."""
    rng = random.Random(seed)
    return [settle(nacl.signing.SigningKey(rng.randbytes(32)), MONTH, 100 + i, "EUR",
                   bytes(32), {}, work_bits=BENCH_WORK_BITS).settlement.raw
            for i in range(n)]


def _rate(ts: list[float]) -> float:
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0


async def gossip_rate_inproc(base: Path, raws: list[bytes], stall: float = 5.0
                             ) -> dict[str, Any]:
    """Two Daemons in one trio run; A publishes every object with Daemon.publish, B's
    validator acceptances and stores are timed."""
    import trio
    from nodes import network

    from rill.protocol.network import TOPIC_OF
    warnings = LibP2PWarnings().install()
    topic = TOPIC_OF["settlement"]
    out: dict[str, Any] = {"n": len(raws)}
    async with network(base, AFTER) as net:
        for name in ("a", "b"):
            bench_home(base / name, name).close()
            net.ports[name] = free_port()
            await _start_daemon(net, name, bench_config(net.ports[name]))
        await net.connect("a", "b")
        await wait_mesh_inproc(net)
        await trio.sleep(1.0)
        a, b = net.nodes["a"], net.nodes["b"]
        validated: list[float] = []
        stored: list[float] = []
        assert b.p2p is not None
        inner = b.p2p.pubsub.on_verdict

        def on_verdict(forwarder: Any, msg: Any, verdict: Any) -> None:
            if inner is not None:
                inner(forwarder, msg, verdict)
            if verdict.outcome.value == "accept" and topic in msg.topicIDs:
                validated.append(time.perf_counter())

        b.p2p.pubsub.on_verdict = on_verdict  # told every gate verdict
        after = b._after_import

        async def timed_after(raw: bytes, result: Any, via: str) -> bool:
            ok = bool(await after(raw, result, via))
            if ok:
                stored.append(time.perf_counter())
            return ok

        b._after_import = timed_after  # type: ignore[method-assign]
        c0 = os.times()
        t0 = time.perf_counter()
        for raw in raws:
            await a.publish(raw)
        last, seen = time.perf_counter(), 0
        while len(stored) < len(raws) and time.perf_counter() - last < stall:
            await trio.sleep(0.05)
            if len(stored) + len(validated) != seen:
                seen, last = len(stored) + len(validated), time.perf_counter()
        c1 = os.times()
        out["validated"], out["stored"] = len(validated), len(stored)
        out["validated_rate"], out["stored_rate"] = _rate(validated), _rate(stored)
        out["end_to_end"] = len(stored) / ((stored[-1] if stored else t0) - t0 or 1)
        out["published"] = a.counters["published"]
        out["cpu"] = c1.user + c1.system - c0.user - c0.system
        out["wall"] = (stored[-1] if stored else time.perf_counter()) - t0
        out["b_counters"] = dict(b.counters)
        out["a_received"] = a.counters["received"]
        await stop_all(net)
    out["drops"] = sum(v for k, v in warnings.counts.items() if "fail to deliver" in k)
    out["warnings"] = warnings.summary()
    return out


async def gossip_rate_proc(base: Path, raws: list[bytes], stall: float = 5.0
                           ) -> dict[str, Any]:
    """B is a `rill node run` process (its own core); A, in this process, publishes every
    object with Daemon.publish.  B's stores are timed from its log lines."""
    import trio
    from nodes import network
    warnings = LibP2PWarnings().install()
    out: dict[str, Any] = {"n": len(raws)}
    b = BenchNode(base, "b", AFTER, dashboard=False)
    bench_home(base / "b", "b").close()
    b.start([])
    b.wait_started()
    tail = LogTail(b.log)
    try:
        async with network(base, AFTER) as net:
            bench_home(base / "a", "a").close()
            net.ports["a"] = free_port()
            a = await _start_daemon(net, "a", bench_config(net.ports["a"]))
            assert a.p2p is not None
            peer = await a.p2p.connect(b.addr)
            await a.p2p.pubsub.wait_for_peer(peer, timeout=10)
            with trio.fail_after(30):
                while not a.p2p.gossipsub.mesh.get("rill/1/settlements"):
                    await trio.sleep(0.05)
            await trio.sleep(1.0)
            assert b.proc is not None
            mach = Machine([b.proc.pid])
            c0 = cpu_ticks(b.proc.pid)
            t0 = time.time()
            for raw in raws:
                await a.publish(raw)
            last, seen = time.monotonic(), 0
            while len(tail.stored) < len(raws) and time.monotonic() - last < stall:
                await trio.sleep(0.1)
                tail.poll()
                if len(tail.stored) != seen:
                    seen, last = len(tail.stored), time.monotonic()
            c1 = cpu_ticks(b.proc.pid)
            out["other"] = mach.other_load()
            status = control.call(base / "b" / control.SOCKET_NAME, "status")
            await stop_all(net)
    finally:
        b.stop()
    ts = sorted(t for t, _via in tail.stored.values())
    out["stored"] = len(ts)
    out["stored_rate"] = _rate(ts)
    out["end_to_end"] = len(ts) / ((ts[-1] if ts else t0) - t0 or 1)
    out["b_cpu"] = (c1 - c0) / CLK_TCK
    out["b_counters"] = status["counters"]
    out["drops"] = b.log.read_text().count("fail to deliver message")
    out["warnings"] = warnings.summary()
    return out


def check_gossip_rate(raws: list[bytes]) -> float:
    from rill.protocol.network import TOPIC_OF, check_gossip
    topic = TOPIC_OF["settlement"]
    now = AFTER
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for raw in raws:
            check_gossip(topic, raw, now, work_bits=BENCH_WORK_BITS)
        best = min(best, time.perf_counter() - t)
    return len(raws) / best


# -- catch-up ---------------------------------------------------------------------------------

def build_catch_up(base: Path, n: int) -> tuple[Path, Path, float]:
    """A relay home holding n donors' settlements and their sealed claims to one creator
    (imported with Wallet.import_object while no daemon runs), and the creator's empty
    home.  Returns (relay home, creator home, seconds it took)."""
    t = time.perf_counter()
    rng = random.Random(11)
    relay, creator = base / "relay", base / "creator"
    bench_home(relay, "relay").close()
    with bench_home(creator, "creator") as w:
        ckey = w.identity
    with Wallet.open(relay) as w:
        for i in range(n):
            donor = nacl.signing.SigningKey(rng.randbytes(32))
            res = settle(donor, MONTH, 500 + i, "EUR", bytes(32),
                         {f"https://creator.example.org/post/{i % 50}": ckey},
                         work_bits=BENCH_WORK_BITS)
            w.import_object(res.settlement.raw, AFTER)
            for sealed in res.sealed:
                w.import_object(sealed.raw, AFTER)
    return relay, creator, time.perf_counter() - t


def incoming(home: Path) -> int:
    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM obligations WHERE direction = 'in'"
                              ).fetchone()[0])
    finally:
        db.close()


async def catch_up_once(base: Path, relay_src: Path, creator_src: Path, n: int,
                        timeout: float = 120.0) -> dict[str, Any]:
    """Fresh copies of both homes; start the relay (its gossip caches empty), start the
    creator, connect it to the relay only; time until the creator holds n incoming
    obligations (polled read-only every 50 ms in a worker thread)."""
    import shutil

    import trio
    from nodes import network
    base.mkdir(parents=True)
    shutil.copytree(relay_src, base / "relay")
    shutil.copytree(creator_src, base / "creator")
    out: dict[str, Any] = {}
    async with network(base, AFTER) as net:
        for name in ("relay", "creator"):
            net.ports[name] = free_port()
            await _start_daemon(net, name, bench_config(net.ports[name]))
        creator = net.nodes["creator"]
        mach = Machine([])
        c0 = os.times()
        t0 = time.perf_counter()
        await net.connect("creator", "relay")
        out["connect"] = time.perf_counter() - t0
        got = 0
        with trio.move_on_after(timeout):
            while got < n:
                await trio.sleep(0.05)
                got = await trio.to_thread.run_sync(incoming, base / "creator")
        out["time"] = time.perf_counter() - t0
        c1 = os.times()
        out["cpu"] = c1.user + c1.system - c0.user - c0.system
        out["got"] = got
        out["other"] = mach.other_load()
        out["synced"] = creator.counters["synced"]
        await stop_all(net)
    return out


def proc_propagation(base: Path, n: int, trials: int, warmup: int = 2) -> dict[str, Any]:
    net = ProcNet(base, n, AFTER)
    out: dict[str, Any] = {}
    try:
        out["start"] = net.start()
        out["mesh"] = net.wait_mesh()
        time.sleep(1.0)
        out["degree"] = statistics.mean(net.call(x, "status")["peers"] for x in net.names)
        pids = [net.pid(x) for x in net.names]
        wait_quiet(pids)
        mach = Machine(pids)
        c0 = sum(cpu_ticks(p) for p in pids)
        times, problems, ids = proc_trials(net, trials, warmup)
        out["cpu_per_trial"] = (sum(cpu_ticks(p) for p in pids) - c0) / CLK_TCK / len(ids)
        out["other"] = mach.other_load()
        out["times"], out["problems"] = times, problems
        # every node really holds every settlement (read-only SQLite, after the trials)
        out["missing_in_db"] = sum(not db_has(base / x, oid) for x in net.names for oid in ids)
        out["drops"] = sum(net.nodes[x].log.read_text().count("fail to deliver message")
                           for x in net.names)
    finally:
        out["exit"] = net.stop()
    return out
