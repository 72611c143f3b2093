"""The scale simulation: N real Daemons in P worker processes (tests/scale/worker.py), one
synthetic month each, measured; then a model fitted on the points and extrapolated.

Each run: every node is a donor (budget 10.00 EUR, one click on each of ``k`` things of ``k``
different creators); the first N/5 nodes are also creators.  Each node dials ``fanout``
random earlier nodes.  The month ends on every worker's clock at once; the run measures
until every creator holds every claim to it and every node holds every object it should
(its shards' objects, or all of them without shards), by gossip, then by the daemons' own
sync and reconciliation one grace period later.

Usage: python tests/scale/sim.py N [N ...] [--procs P] [--shard-bits B] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))

from model import spec_bits  # noqa: E402
from pipe import Pipe, all_do  # noqa: E402
from report import report  # noqa: E402
from runrecord import Run, expected, key_of, node_bytes, per_node  # noqa: E402

from rill.protocol.months import month_end, month_start  # noqa: E402

MONTH = "2026-10"
OCT, END = month_start(MONTH), month_end(MONTH)
GRACE = 60
#: at month end the driver runs a round this often (real seconds)
ROUND_S = 30
#: the network is quiet once a node moves less than this (bytes/s, mean over 10 s); then
#: start-up is over one IDLE_S window after that, and the idle figures are taken over
#: IDLE_WINDOWS windows of IDLE_S after it (each window's rate kept, the first one's too)
QUIET_BPS, SETTLE_MAX_S, IDLE_S, IDLE_WINDOWS = 500.0, 600.0, 30, 3
#: after a DHT refresh on every node, its cost is counted this much longer (real seconds):
#: past TRIM_GRACE_S, so a sharded node's closing of the connections it made is in it
REFRESH_TAIL_S = 75
#: once every set is complete, what still crosses the network is measured until a 10-s
#: window is quiet (QUIET_BPS), at most this long (real seconds)
TAIL_MAX_S = 300


class Proc(Pipe):
    def __init__(self, base: Path, index: int) -> None:
        self.base = base / f"w{index}"
        self.base.mkdir(parents=True)
        self.err = open(base / f"w{index}.log", "w")  # noqa: SIM115
        self.p = subprocess.Popen([sys.executable, str(HERE / "worker.py"), str(self.base),
                                   str(OCT + 3600)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  cwd=ROOT)
        self.pid = self.p.pid


def simulate(n: int, procs: int = 4, shard_bits: int = 0, k: int = 8, fanout: int = 3,
             seed: int = 1, timeout: float = 900.0, base: Path | None = None) -> Run:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f"rill-scale-{n}-", dir=base))
    names = [f"n{i:05d}" for i in range(n)]
    ncreators = max(k + 1, n // 5)
    creators = names[:ncreators]
    plan = {d: rng.sample([c for c in creators if c != d], k) for d in names}
    run = Run(n, procs, shard_bits, k, ncreators, fanout, claims=n * k)
    workers = [Proc(tmp, i) for i in range(procs)]
    where = {name: i % procs for i, name in enumerate(names)}
    try:
        t = time.perf_counter()
        config = {"shard_bits": shard_bits} if shard_bits else {}
        info: dict[str, Any] = {}
        for r in all_do(workers, [{"op": "start", "config": config,
                                   "names": [x for x in names if where[x] == i]}
                                  for i in range(procs)]):
            info.update(r)
        run.start_s = time.perf_counter() - t
        t = time.perf_counter()
        pairs: list[list[list[str]]] = [[] for _ in range(procs)]
        for i, name in enumerate(names):
            for other in rng.sample(names[:i], min(fanout, i)):
                pairs[where[name]].append([name, info[other]["addr"]])
        for r in all_do(workers, [{"op": "connect", "pairs": p} for p in pairs]):
            run.dials_failed += len(r["failed"])
        # a loaded machine loses dials: whoever has fewer than 2 gossip peers dials again,
        # slower, to other random nodes, until everyone has 2 or the deadline passes
        deadline = time.monotonic() + 180
        while True:
            time.sleep(2)
            st = status(workers)
            lonely = [x for x, s in st["nodes"].items() if s["peers"] < min(2, n - 1)]
            if not lonely or time.monotonic() > deadline:
                run.lonely = len(lonely)
                break
            pairs = [[] for _ in range(procs)]
            for x in lonely:
                other = rng.choice([y for y in names if y != x])
                pairs[where[x]].append([x, info[other]["addr"]])
            run.redials += len(lonely)
            all_do(workers, [{"op": "connect", "pairs": p, "pace": 0.05} for p in pairs])
        run.mesh_s = time.perf_counter() - t
        say(n, shard_bits, f"connected in {run.mesh_s:.0f} s ({run.lonely} lonely)")
        donors = {d: {"budget": 1000, "clicks": [
            # things on a loopback origin nothing listens on: the site check each node
            # makes before settling (SPEC §6.2) fails at once, where a made-up domain's
            # DNS lookup stalls for seconds here and costs a real node nothing like it
            [key_of(c).hex(), f"https://127.0.0.1:9/{c}/thing/{d}"] for c in plan[d]]}
            for d in names}
        all_do(workers, [{"op": "clicks", "at": OCT + 100,
                          "donors": {d: v for d, v in donors.items() if where[d] == i}}
                         for i in range(procs)])
        # idle: IDLE_S with nothing to send (heartbeats, gossip control, pings), once the
        # connections' own start-up traffic (identify, subscriptions, the DHT's routing
        # tables and provider records, mesh grafts, shard peers found) is over: quiet is
        # a 10-s window under QUIET_BPS per node, looked for until SETTLE_MAX_S
        t_settle = time.perf_counter()
        first = status(workers)
        a = until_quiet(workers, names, first, SETTLE_MAX_S)
        # one window more is start-up's: quiet is a rate under QUIET_BPS, and the window
        # after it still carries the last of it (a sharded node closes the connections
        # outside its shards a minute after they open: the mesh changes that follow)
        w = a
        for i in range(1 + IDLE_WINDOWS):
            time.sleep(IDLE_S)
            b = status(workers)
            run.idle_windows.append(round(statistics.mean(
                node_bytes(b, x) - node_bytes(w, x) for x in names) / (b["t"] - w["t"]), 2))
            w = b
            if i == 0:  # start-up ends here; idle is measured from here
                a = b
                run.settle_s = time.perf_counter() - t_settle
                run.settle_bytes = statistics.mean(node_bytes(a, x) - node_bytes(first, x)
                                                   for x in names)
                say(n, shard_bits, f"quiet after {run.settle_s:.0f} s; idle for "
                    f"{IDLE_S * IDLE_WINDOWS} s")
        span = run.idle_span_s = b["t"] - a["t"]  # IDLE_S windows and the status calls
        run.idle_bytes_s = statistics.mean(node_bytes(b, x) - node_bytes(a, x)
                                           for x in names) / span
        run.idle_cpu_s = (b["cpu"] - a["cpu"]) / n / span
        run.idle_by_protocol = {
            p: round((v - a["protocols"].get(p, 0)) / n / span, 2)
            for p, v in b["protocols"].items() if v > a["protocols"].get(p, 0)}
        run.idle_peers = statistics.median(b["nodes"][x]["peers"] for x in names)
        run.idle_rpcs = {
            k: round((v - a["rpcs"].get(k, 0)) / n / span, 2)
            for k, v in b["rpcs"].items() if v > a["rpcs"].get(k, 0)}
        say(n, shard_bits, f"idle: {run.idle_bytes_s:.1f} B/s, {run.idle_peers:g} peers "
            f"per node over {span:.0f} s (windows of {IDLE_S} s and a status: "
            f"{run.idle_windows}), {100 * run.idle_cpu_s:.2f}% of a core per node "
            f"(payload B/s per node by protocol: {run.idle_by_protocol}; GossipSub RPCs "
            f"sent: {run.idle_rpcs}); the month ends")
        incoming, held = expected(names, plan, shard_bits)
        # the month ends everywhere at once; every ROUND_S the nodes run one sync and
        # reconciliation round (the daemons' periodic round, here on the driver's beat)
        before = status(workers)
        t0 = time.perf_counter()
        all_do(workers, [{"op": "clock", "t": END + GRACE + 1}] * procs)
        deadline = time.monotonic() + timeout
        next_round = t0 + ROUND_S
        while time.monotonic() < deadline:
            time.sleep(1)
            st = status(workers)
            claims_ok = sum(st["nodes"][x]["incoming"] >= incoming[x] for x in names)
            held_ok = sum(sum(st["nodes"][x]["types"].values()) >= held[x] for x in names)
            if run.gossip_s is None and claims_ok == n:
                run.gossip_s = time.perf_counter() - t0
            if claims_ok == n and held_ok == n:
                run.full_s = time.perf_counter() - t0
                break
            if time.perf_counter() >= next_round:
                say(n, shard_bits, f"{time.perf_counter() - t0:.0f} s after month end: "
                    f"{claims_ok}/{n} creators complete, {held_ok}/{n} full sets")
                if not run.gossip_complete:
                    run.gossip_complete = f"{claims_ok}/{n} creators, {held_ok}/{n} full sets"
                all_do(workers, [{"op": "round"}] * procs)
                run.rounds += 1
                next_round = time.perf_counter() + ROUND_S
        st = status(workers)
        run.month_end_s = time.perf_counter() - t0
        if run.full_s is None and all(  # complete between the last look and the deadline
                st["nodes"][x]["incoming"] >= incoming[x] and
                sum(st["nodes"][x]["types"].values()) >= held[x] for x in names):
            run.full_s = run.month_end_s
        run.full_complete = (
            f"{sum(st['nodes'][x]['incoming'] >= incoming[x] for x in names)}/{n} creators, "
            f"{sum(sum(st['nodes'][x]['types'].values()) >= held[x] for x in names)}/{n} "
            "full sets")
        if not run.gossip_complete:
            run.gossip_complete = run.full_complete
        run.month_end_bytes = [node_bytes(st, x) - node_bytes(before, x) for x in names]
        run.lacking = [
            {"node": x, "claims": [st["nodes"][x]["incoming"], incoming[x]],
             "held": [sum(st["nodes"][x]["types"].values()), held[x]],
             "peers": st["nodes"][x]["peers"], "bytes": node_bytes(st, x) - node_bytes(before, x)}
            for x in names if st["nodes"][x]["incoming"] < incoming[x] or
            sum(st["nodes"][x]["types"].values()) < held[x]][:20]
        if run.lacking:
            say(n, shard_bits, f"incomplete at the end: {run.lacking}")
        run.month_end_cpu_s = st["cpu"] - before["cpu"]
        run.month_end_by_protocol = per_node(st["protocols"], before["protocols"], n)
        run.month_end_rpcs = per_node(st["rpcs"], before["rpcs"], n)
        say(n, shard_bits, f"month end payload KB per node by protocol: "
            f"{run.month_end_by_protocol}; GossipSub RPCs sent: {run.month_end_rpcs}")
        run.stored = [st["nodes"][x]["stored_bytes"] for x in names]
        run.objects_held = [sum(st["nodes"][x]["types"].values()) for x in names]
        run.unattributed = st["unattributed"]
        for x in names:
            for c, v in st["nodes"][x]["counters"].items():
                run.counters[c] = run.counters.get(c, 0) + v
        # what still crosses the network once every node holds its set (copies GossipSub
        # forwards after the last one needed): until a 10-s window is under QUIET_BPS per
        # node, at most TAIL_MAX_S; kept apart, so the month end stays what it was
        tail_from = st
        st = until_quiet(workers, names, st, TAIL_MAX_S)
        run.tail_s = st["t"] - tail_from["t"]
        run.tail_bytes = statistics.mean(node_bytes(st, x) - node_bytes(tail_from, x)
                                         for x in names)
        say(n, shard_bits, f"after the month end: {run.tail_bytes / 1e3:.0f} KB per node "
            f"over {run.tail_s:.0f} s until quiet (GossipSub RPCs sent: "
            f"{per_node(st['rpcs'], tail_from['rpcs'], n)})")
        # two rounds more, on a network that agrees: the first moves every sync cursor past
        # the month's objects, the second costs what each periodic round costs
        all_do(workers, [{"op": "round"}] * procs)
        a = status(workers)
        all_do(workers, [{"op": "round"}] * procs)
        b = status(workers)
        run.full_round_bytes = statistics.mean(node_bytes(b, x) - node_bytes(a, x) for x in names)
        # and the periodic round the daemon runs by itself (a few peers each)
        all_do(workers, [{"op": "periodic"}] * procs)
        c = status(workers)
        run.round_bytes = statistics.mean(node_bytes(c, x) - node_bytes(b, x) for x in names)
        # and one refresh of the DHT's routing table on every node, with what follows it
        # for REFRESH_TAIL_S (the new connections' hellos; with shards, their trimming)
        t = time.perf_counter()
        all_do(workers, [{"op": "refresh"}] * procs)
        time.sleep(REFRESH_TAIL_S)
        d = status(workers)
        window = time.perf_counter() - t
        run.refresh_bytes = statistics.mean(node_bytes(d, x) - node_bytes(c, x) for x in names)
        run.refresh_cpu_s = max(0.0, (d["cpu"] - c["cpu"]) / n - run.idle_cpu_s * window)
        run.refresh_by_protocol = per_node(d["protocols"], c["protocols"], n)
        run.refresh_connections = (d["connections"] - c["connections"]) / n
        run.refresh_rpcs = per_node(d["rpcs"], c["rpcs"], n)
        say(n, shard_bits, f"a DHT refresh: {run.refresh_bytes / 1e3:.0f} KB, "
            f"{run.refresh_cpu_s:.2f} CPU-s, {run.refresh_connections:.1f} connections "
            f"opened per node; payload KB per node by protocol: {run.refresh_by_protocol}; "
            f"GossipSub RPCs sent: {run.refresh_rpcs}")
        # and one round of the announcements a node repeats every 24 h: the shards' keys
        # it announces and the rendezvous key, provided once.  First, unmeasured, the
        # choice of shards as a node makes it a round after its start (all nodes here
        # started together, so their first round's counts of a shard's own members were
        # taken before most members had announced themselves)
        warm = all_do(workers, [{"op": "provide", "provide": False}] * procs)
        say(n, shard_bits, "shards to provide chosen: "
            f"{sum(a.get('lookups', 0) for a in warm)} lookups of own members, "
            f"{sum(a.get('skipped', 0) for a in warm)} backbone shards not provided")
        if shard_bits:
            time.sleep(REFRESH_TAIL_S)  # its connections' hellos and trimming
        d = status(workers)
        t = time.perf_counter()
        answers = all_do(workers, [{"op": "provide"}] * procs)
        time.sleep(REFRESH_TAIL_S)
        e = status(workers)
        window = time.perf_counter() - t
        run.provide_bytes = statistics.mean(node_bytes(e, x) - node_bytes(d, x) for x in names)
        run.provide_cpu_s = max(0.0, (e["cpu"] - d["cpu"]) / n - run.idle_cpu_s * window)
        run.provide_keys = sum(a.get("provided", 0) for a in answers) / n
        run.provide_outcomes = {k: sum(a.get(k, 0) for a in answers)
                                for k in ("provided", "not_provided", "timed_out", "failed",
                                          "lookups", "skipped")}
        run.provide_by_protocol = per_node(e["protocols"], d["protocols"], n)
        run.provide_connections = (e["connections"] - d["connections"]) / n
        say(n, shard_bits, f"a round of provides ({run.provide_keys:.1f} keys provided per "
            f"node; {run.provide_outcomes}): {run.provide_bytes / 1e3:.0f} KB, "
            f"{run.provide_cpu_s:.2f} CPU-s, "
            f"{run.provide_connections:.1f} connections opened per node; payload KB per "
            f"node by protocol: {run.provide_by_protocol}")
        t = time.perf_counter()
        try:
            stops = all_do(workers, [{"op": "stop"}] * procs)
            took = sorted(x for r in stops for x in r["stop_s"])
            say(n, shard_bits, f"stopped in {time.perf_counter() - t:.0f} s: "
                f"{sum(len(r['slow_to_stop']) for r in stops)} nodes not within 10 s; "
                f"each node's stop median {statistics.median(took):.2f} s, slowest "
                f"{took[-3:]}")
        except RuntimeError as exc:  # a slow stop on a loaded machine: the figures stand
            print(f"stopping the workers: {exc}", file=sys.stderr)
        return run
    finally:
        for w in workers:
            try:
                w.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.p.kill()
                w.p.wait()
        if os.environ.get("RILL_SCALE_KEEP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def say(n: int, bits: int, text: str) -> None:
    """Progress, on standard error (a long run shows where it is)."""
    print(f"{time.strftime('%H:%M:%S')} N={n} b={bits}: {text}", file=sys.stderr, flush=True)


def until_quiet(workers: list[Proc], names: list[str], st: dict[str, Any],
                longest: float) -> dict[str, Any]:
    """Statuses 10 s apart from ``st`` until a window's mean per node is under QUIET_BPS,
    or ``longest`` seconds have passed; the last status."""
    t = time.perf_counter()
    while True:
        time.sleep(10)
        last, st = st, status(workers)
        rate = statistics.mean(node_bytes(st, x) - node_bytes(last, x)
                               for x in names) / (st["t"] - last["t"])
        if rate < QUIET_BPS or time.perf_counter() - t > longest:
            return st


def status(workers: list[Proc]) -> dict[str, Any]:
    """Every worker's nodes and counters; ``t`` is when the counters were read (the mean of
    the workers' readings, on the monotonic clock they share with the driver)."""
    out: dict[str, Any] = {"nodes": {}, "cpu": 0.0, "unattributed": 0, "protocols": {},
                           "rpcs": {}, "connections": 0}
    answers = all_do(workers, [{"op": "status", "month": MONTH}] * len(workers))
    out["t"] = statistics.mean(r["t"] for r in answers)
    for r in answers:
        out["nodes"].update(r["nodes"])
        out["cpu"] += r["cpu_s"]
        out["connections"] += r["connections"]
        for k, v in r["protocols"].items():
            out["protocols"][k] = out["protocols"].get(k, 0) + v
        for k, v in r.get("rpcs", {}).items():
            out["rpcs"][k] = out["rpcs"].get(k, 0) + v
        out["unattributed"] += r["unattributed"]["sent"] + r["unattributed"]["received"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--procs", type=int, default=min(4, os.cpu_count() or 2))
    ap.add_argument("--shard-bits", type=int, default=0,
                    help="-1: each size twice, without shards and with SPEC §11.6's bits "
                    "for it, max(0, floor(log2(N/16)))")
    ap.add_argument("--clicks", type=int, default=8,
                    help="things (of as many creators) each donor clicks")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds after month end before the run gives up")
    ap.add_argument("--json")
    ap.add_argument("--out", help="write the markdown report here")
    args = ap.parse_args()
    runs = []
    plan = [(n, b) for n in args.sizes
            for b in (sorted({0, spec_bits(n)}) if args.shard_bits < 0 else (args.shard_bits,))]
    for n, b in plan:
        r = simulate(n, args.procs, b, k=args.clicks, timeout=args.timeout)
        runs.append(r)
        print(json.dumps(r.__dict__, default=str)[:2000], flush=True)
        if args.json:  # after each run: a long series keeps what it measured
            Path(args.json).write_text(json.dumps([x.__dict__ for x in runs], default=str))
    text = report([r.__dict__ for r in runs])
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
