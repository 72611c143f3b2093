#!/usr/bin/env python3
"""`make bench`: measure Rill and write docs/BENCHMARKS.md.

Each benchmark returns rows (what, figure, unit, note).  Figures are medians
over several repetitions measured in this one run; ratios compare numbers
measured in the same run.  The machine is small and noisy: read trends, not
digits.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nacl.bindings
import nacl.signing

from rill.protocol import keys
from rill.protocol import messages as m
from rill.protocol.months import month_end, month_start
from rill.protocol.verify import verify_files
from rill.wallet import store
from rill.wallet.portable import export_home, import_home
from rill.wallet.wallet import Wallet

Row = tuple[str, str, str, str]
BENCHES: list[Callable[[], list[Row]]] = []


def bench(fn: Callable[[], list[Row]]) -> Callable[[], list[Row]]:
    BENCHES.append(fn)
    return fn


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _objects(n: int) -> list[m.Signed[m.Receipt]]:
    """n receipts from 20 creators to 50 donors (typical small objects, ~330 bytes)."""
    creators = [nacl.signing.SigningKey(hashlib.sha256(b"c%d" % i).digest()) for i in range(20)]
    donors = [keys.public_key(nacl.signing.SigningKey(hashlib.sha256(b"d%d" % i).digest()))
              for i in range(50)]
    t = month_end("2026-10") + 3600
    return [m.sign(m.Receipt(hashlib.sha256(b"%d" % i).digest(), donors[i % 50], "2026-10",
                             "EUR", 100 + i, f"ref {i}", t), creators[i % 20])
            for i in range(n)]


@bench
def verify_throughput() -> list[Row]:
    n = 10_000
    objs = _objects(n)
    raws = [o.raw for o in objs]
    triples = [(o.signer, m.signing_input(o.type, m.cbor.encode(o.body.to_map())), o.signature)
               for o in objs]

    def raw_nacl() -> None:
        for key, msg, sig in triples:
            nacl.bindings.crypto_sign_open(sig + msg, key)

    def decode_all() -> None:
        for raw in raws:
            m.decode(raw)

    def verify_batch() -> None:
        verify_files([(str(i), raw) for i, raw in enumerate(raws)], None)

    # Rounds interleave the four measurements, so that a change in the machine's load
    # hits them alike; each ratio is taken within one round, then the median of rounds.
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "all.txt"
        from rill.protocol.armour import armour
        bundle.write_text("".join(armour(r, "receipt") for r in raws))
        rill = str(Path(sys.executable).parent / "rill")

        def cli() -> None:
            subprocess.run([rill, "verify", "--json", str(bundle)], check=True,
                           capture_output=True)

        for _ in range(5):
            rounds.append({k: n / median_time(fn, repeat=1) for k, fn in
                           (("raw", raw_nacl), ("decode", decode_all),
                            ("batch", verify_batch), ("cli", cli))})
    rate = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    pct = {k: 100 * statistics.median(r[k] / r["raw"] for r in rounds) for k in rounds[0]}
    return [
        ("raw PyNaCl Ed25519 verify (crypto_sign_open), 10k receipts", f"{rate['raw']:,.0f}",
         "objects/s", "the baseline"),
        ("protocol.decode: strict CBOR + schema + key admission + signature",
         f"{rate['decode']:,.0f}", "objects/s", f"{pct['decode']:.0f}% of raw"),
        ("verify_files: decode + time rules + cross-checks (what `rill verify` runs)",
         f"{rate['batch']:,.0f}", "objects/s", f"{pct['batch']:.0f}% of raw"),
        ("`rill verify --json` on one armoured file of 10k objects (process start included;"
         " worker processes on both cores)", f"{rate['cli']:,.0f}", "objects/s",
         f"{pct['cli']:.0f}% of raw (target ≥ 70%); median of 5 interleaved rounds, ratios "
         "within each round"),
    ]


# -- wallet ------------------------------------------------------------------------------

MONTH = "2026-10"
T0 = month_start(MONTH) + 100
SETTLE_AT = month_end(MONTH) + 3600
DONOR_SEED = hashlib.sha256(b"rill bench donor").digest()
_HOMES: dict[int, Path] = {}   # n -> a built home (kept for the run, copied before use)
_BUILD_TIME: dict[int, float] = {}
_WORK = Path(tempfile.mkdtemp(prefix="rill-bench-"))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def secs(seconds: float) -> str:
    return f"{seconds:,.2f}"


def build_home(n: int) -> Path:
    """A home whose log is one budget entry and ``n`` clicks in MONTH.

    The clicks spread over n/5 distinct things (each clicked about 5 times) made by
    n/100 creators (20 things each), all with ``creator`` given.  Entries are signed
    with ``messages.sign`` like ``Wallet._append`` does, and inserted with its SQL in
    one transaction, instead of n durable clicks (n fsyncs).
    """
    if n in _HOMES:
        return _HOMES[n]
    t = time.perf_counter()
    path = _WORK / f"home-{n}"
    w = Wallet.create(path, "bench", DONOR_SEED)
    n_creators, n_things = max(1, n // 100), max(1, n // 5)
    creators = [keys.public_key(nacl.signing.SigningKey(
        hashlib.sha256(b"rill bench creator %d" % c).digest())) for c in range(n_creators)]
    rows = []
    prev = m.ZERO_HASH
    entry = m.sign(m.ClickEntry(0, prev, T0, "budget", amount=100_000, currency="EUR"), w.key)
    rows.append((0, entry.id, T0, "budget", entry.body.target, entry.raw))
    prev = entry.id
    for k in range(n):
        j = k % n_things
        c = j % n_creators
        seq, when = k + 1, T0 + 1 + k
        entry = m.sign(m.ClickEntry(seq, prev, when, "click",
                                    thing=f"https://c{c}.example.org/post/{j}",
                                    creator=creators[c]), w.key)
        rows.append((seq, entry.id, when, "click", entry.body.target, entry.raw))
        prev = entry.id
    with store.transaction(w.db):
        w.db.executemany("INSERT INTO log (seq, id, time, kind, target, raw) "
                         "VALUES (?,?,?,?,?,?)", rows)
    w.close()  # the last connection closed: WAL checkpointed, rill.db holds everything
    _HOMES[n] = path
    _BUILD_TIME[n] = time.perf_counter() - t
    return path


def fresh_copy(n: int) -> Path:
    src = build_home(n)
    dst = Path(tempfile.mkdtemp(prefix=f"copy-{n}-", dir=_WORK)) / "home"
    shutil.copytree(src, dst)
    return dst


@bench
def click_latency() -> list[Row]:
    def clicks(w: Wallet, first: int, n: int = 300) -> list[float]:
        times = []
        for i in range(first, first + n):
            t = time.perf_counter()
            r = w.click(f"https://example.org/latency/{i}", now=T0 + i)
            times.append(time.perf_counter() - t)
            assert r.new
        return times

    def p95(xs: list[float]) -> float:
        return statistics.quantiles(xs, n=20)[-1]

    with Wallet.create(_WORK / "latency-home", "bench", DONOR_SEED) as w:
        w.set_budget(1000, "EUR", T0)
        fresh = clicks(w, 0)
    n_big = 10_000
    with Wallet.open(fresh_copy(n_big)) as w:
        big = clicks(w, n_big + 10)
    note = "WAL, synchronous=FULL: returns after the commit reached the disk"
    return [
        ("Wallet.click, durable, 300 clicks on a new home: median", ms(statistics.median(fresh)),
         "ms", note),
        ("Wallet.click, durable, 300 clicks on a new home: p95", ms(p95(fresh)), "ms", ""),
        (f"Wallet.click, 300 clicks into a month already holding {n_big:,} clicks: median",
         ms(statistics.median(big)), "ms", "on a copy of the 10k-click home of settlement time"),
        (f"Wallet.click, 300 clicks into a month already holding {n_big:,} clicks: p95",
         ms(p95(big)), "ms", ""),
    ]


@bench
def settlement_time() -> list[Row]:
    rows: list[Row] = []
    for n in (1_000, 10_000, 100_000):
        build_home(n)
        times = []
        for _ in range(3):
            with Wallet.open(fresh_copy(n)) as w:
                t = time.perf_counter()
                result, new = w.settle(MONTH, SETTLE_AT)
                times.append(time.perf_counter() - t)
            assert new and result.settlement.body.things == max(1, n // 5)
        note = (f"{max(1, n // 5):,} things, {max(1, n // 100):,} creators; median of 3 on "
                f"fresh copies (building the log took {secs(_BUILD_TIME[n])} s)")
        t_settle = statistics.median(times)
        if n == 100_000:
            note += f"; target < 2 s: {'met' if t_settle < 2 else 'NOT met'}"
        rows.append((f"Wallet.settle, {n:,} clicks in the month", secs(t_settle), "s", note))
    with Wallet.open(build_home(100_000)) as w:
        t_verify = median_time(w.verify_log, repeat=3)
        t_view = median_time(lambda: w.month_view(MONTH), repeat=3)
    rows.append(("Wallet.verify_log, 100,000 entries", secs(t_verify), "s",
                 "median of 3; settle runs it first"))
    rows.append(("Wallet.month_view, 100,000 clicks in the month", secs(t_view), "s",
                 "median of 3; what a month's projection costs (`rill status`)"))
    return rows


@bench
def import_100k() -> list[Row]:
    n = 100_000
    with Wallet.open(build_home(n)) as w:
        t = time.perf_counter()
        data = export_home(w, with_key=True)
        t_export = time.perf_counter() - t
    times = []
    for k in range(3):
        dst = _WORK / f"import-{k}"
        t = time.perf_counter()
        w = import_home(dst, data, SETTLE_AT)
        times.append(time.perf_counter() - t)
        entries = w._log_size()
        w.close()
        assert entries == n + 1
        shutil.rmtree(dst)
    return [
        (f"portable.import_home of an export holding {n + 1:,} log entries, into a new home",
         secs(statistics.median(times)), "s",
         f"median of 3; export {len(data) / 1e6:,.1f} MB"),
        ("portable.export_home (with_key) of the same home", secs(t_export), "s", "one run"),
    ]


# -- node daemon ---------------------------------------------------------------------------
# Helpers in node_bench.py.  Everything listens on 127.0.0.1; homes live under _WORK.

def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _other(pct: float) -> str:
    return f"other processes used {pct:.0f}% of the machine meanwhile"


@bench
def node_propagation() -> list[Row]:
    import node_bench as nb
    import trio
    rows: list[Row] = []
    trials, warmup = 20, 2
    for n in (10, 25):
        r = nb.proc_propagation(_WORK / f"prop-{n}", n, trials, warmup)
        med, p95 = statistics.median(r["times"]), nb.p95(r["times"])
        note = (f"{len(r['times'])} trials (+{warmup} warm-up), each a new settlement published "
                "from a random node through its control socket (`publish`, what `rill publish` "
                "sends); sparse: each node dialled 2 random earlier ones (mean degree "
                f"{r['degree']:.1f}); arrival = each node's own INFO log line `gossip: "
                "settlement <id> stored` (asctime, 1 ms), so nothing polls the nodes; then "
                f"every ID checked in every node's SQLite ({r['missing_in_db']} missing)")
        if n == 25:
            note += f"; target < 100 ms median: {_verdict(med < 0.1)}"
        extra = (f"daemons' CPU {r['cpu_per_trial'] * 1000:,.0f} ms per settlement summed over "
                 f"all nodes ({r['cpu_per_trial'] * 1000 / n:.1f} ms per node) on "
                 f"{os.cpu_count()} cores; {_other(r['other'])}; start {r['start']:.0f} s")
        if r["problems"] or r["drops"] or set(r["exit"].values()) != {0}:
            extra += (f"; PROBLEMS: {r['problems'][:3]}, {r['drops']} dropped deliveries, "
                      f"exit codes {sorted(set(r['exit'].values()))}")
        rows.append((f"one settlement to 100% of {n} `rill node run` processes: median",
                     ms(med), "ms", note))
        rows.append((f"one settlement to 100% of {n} `rill node run` processes: p95",
                     ms(p95), "ms", extra))
    for n in (50, 100):
        r = trio.run(nb.inproc_propagation, _WORK / f"prop-in-{n}", n, 15, warmup)
        med, p95 = statistics.median(r["times"]), nb.p95(r["times"])
        note = (f"{len(r['times'])} trials (+{warmup} warm-up); {n} Daemons in one process and "
                "one trio thread (tests/nodes.py style), same topology (mean degree "
                f"{r['degree']:.1f}) and publish path; arrival = each Daemon's `_accept` "
                "returning True for it (wrapped, no polling)")
        extra = (f"one thread does every node's work: {r['cpu_per_trial'] * 1000:,.0f} ms CPU per "
                 f"settlement ({r['cpu_per_trial'] * 1000 / n:.1f} ms per node), so this grows "
                 f"with N; {_other(r['other'])}; start {r['start']:.0f} s, stop {r['stop']:.0f} s")
        if r["problems"]:
            extra += f"; PROBLEMS: {r['problems'][:3]}"
        if r["during"] != "no libp2p warnings":
            extra += f"; libp2p warnings (start-up and trials): {r['during']}"
            if "GRAFT flood" in r["during"]:
                extra += " (no effect on scores: host.score_params leaves the P5 weight at 0)"
        rows.append((f"one settlement to 100% of {n} in-process Daemons: median", ms(med), "ms",
                     note))
        rows.append((f"one settlement to 100% of {n} in-process Daemons: p95", ms(p95), "ms",
                     extra))
    return rows


@bench
def node_resources() -> list[Row]:
    import node_bench as nb
    r = nb.resources(_WORK / "resources", n=10, idle_s=20.0)
    n = r["n"]
    idle_rss, idle_cpu = r["idle_rss"], r["idle_cpu"]
    me_cpu, me_cpu_s = r["me_cpu"], r["me_cpu_s"]
    setup = (f"{n} `rill node run` processes, dashboards on (the default), sparse (mean degree "
             f"{r['degree']:.1f}); every node a donor with a budget and {r['clicks']} clicks on "
             f"the other {n - 1} nodes' things")
    rows: list[Row] = [
        (f"idle daemon RSS (VmRSS), median of {n}", f"{statistics.median(idle_rss):.1f}", "MB",
         f"max {max(idle_rss):.1f} MB; {setup}; `import libp2p` alone takes "
         f"{nb.import_rss('libp2p'):.0f} MB (the daemon leaves a few of its optional "
         f"imports out: node/footprint.py); target < 100 MB: "
         f"{_verdict(max(idle_rss) < 100)}"),
        (f"idle daemon CPU over {r['idle_s']:.0f} s, median of {n}",
         f"{statistics.median(idle_cpu):.2f}", "% of one core",
         f"max {max(idle_cpu):.2f}%; utime+stime from /proc/PID/stat; {_other(r['idle_other'])}; "
         f"target < 1%: {_verdict(max(idle_cpu) < 1)}"),
        ("month end: CPU per daemon while settling and gossiping, median",
         f"{statistics.median(me_cpu):.0f}", "% of one core",
         f"max {max(me_cpu):.0f}%; {statistics.median(me_cpu_s):.2f} CPU-s per daemon "
         f"(max {max(me_cpu_s):.2f}) over the period below; {_other(r['me_other'])}"),
        ("month end: from the clocks passing 2026-10 end + grace until the last object "
         "arrived", secs(r["me_s"]), "s",
         f"every node settles and publishes 1 settlement + {n - 1} sealed claims; complete = a "
         f"node's SQLite (read-only, polled every 50 ms) holds {r['want'][0]} settlements, "
         f"{r['want'][1]} sealed claims and its {r['want'][2]} incoming claims: "
         f"{r['me_done']}/{n} nodes complete by gossip"
         + (f"; INCOMPLETE (settlements, sealed, incoming): {r['me_counts']}; "
            f"{r['drops']} “fail to deliver message to subscription” lines in the logs"
            if r["me_counts"] else "")),
    ]
    if any(c[2] < n - 1 for c in r["me_counts"].values()):
        rows.append(("month end: claims gossip lost, recovered by the daemons' own sync one "
                     "grace period later", secs(r["sync_s"]) if r["sync_s"] else "never",
                     "s", "from the clocks passing end + 2 × grace until every node holds all "
                     "its incoming claims; copies of others' objects that gossip lost come back "
                     "by reconciliation in the same round (SPEC §11.4; not timed in this row): "
                     f"{r['after_sync']}"))
    elif r["me_counts"]:
        rows[-1] = (*rows[-1][:3], rows[-1][3] + "; no node lacked its own incoming claims; "
                    "the lost copies of others' objects come back by reconciliation "
                    "(SPEC §11.4; not timed in this row)")
    rows += [
        (f"peak RSS (VmHWM) after month end, max of {n}", f"{max(r['peak_rss']):.1f}", "MB",
         f"median {statistics.median(r['peak_rss']):.1f} MB; exit codes on SIGTERM "
         f"{sorted(set(r['exit'].values()))}"),
    ]
    return rows


@bench
def node_gossip_rate() -> list[Row]:
    import node_bench as nb
    import trio
    n = 2000
    raws = nb.settlements(n)
    raw_rate = nb.check_gossip_rate(raws)
    a = trio.run(nb.gossip_rate_inproc, _WORK / "rate-in", raws)
    b = trio.run(nb.gossip_rate_proc, _WORK / "rate-proc", raws)
    lost_a = a["validated"] - a["stored"]
    lost_b = n - b["stored"]
    return [
        (f"raw validator: rill.protocol.network.check_gossip over {n:,} settlements",
         f"{raw_rate:,.0f}", "messages/s",
         "decode, signature, topic, time and window rules; best of 3; the upper bound"),
        (f"in-process Daemon B, burst of {n:,} settlements (new donors, no lines) published by "
         "peer A (Daemon.publish): "
         "accepted by B's validator", f"{a['validated_rate']:,.0f}", "messages/s",
         f"{a['validated']:,} of {n:,} validated; A and B share one trio thread (and A stores "
         "its own publishes too); A's publisher paces 2 ms per message (at most 500/s)"),
        ("same burst: stored by B (counters['stored'])", f"{a['stored_rate']:,.0f}",
         "messages/s",
         f"{a['stored']:,} of {n:,} stored, {lost_a:,} validated but not stored, "
         f"{a['drops']:,} “fail to deliver message to subscription” warnings (py-libp2p's "
         "subscription channel holds 32; the daemon drains it into a 10,000-message inbox); "
         f"{n - a['validated']:,} never reached B's gate within the 5 s stall window"),
        ("`rill node run` B on its own core, the same burst from an in-process A: stored by B",
         f"{b['stored_rate']:,.0f}", "messages/s",
         f"{b['stored']:,} of {n:,} stored ({lost_b:,} lost, {b['drops']:,} “fail to deliver” "
         f"lines in B's log); B used {b['b_cpu'] / max(1, b['stored']) * 1000:.1f} ms CPU per "
         f"stored message; rate from B's log lines; {_other(b['other'])}"),
    ]


@bench
def node_catch_up() -> list[Row]:
    import node_bench as nb
    import trio
    n = 1000
    relay, creator, t_build = nb.build_catch_up(_WORK / "catch-up-src", n)
    runs = [trio.run(nb.catch_up_once, _WORK / f"catch-up-{k}", relay, creator, n)
            for k in range(3)]
    times = [r["time"] for r in runs]
    ok = all(r["got"] == n for r in runs)
    med = statistics.median(times)
    return [
        (f"creator catch-up: {n:,} claims by sync from a restarted relay, median of 3",
         secs(med), "s",
         f"runs {', '.join(secs(t) for t in times)} s; from `connect` to {n:,} incoming "
         f"obligations in the creator's wallet (polled read-only every 50 ms); the relay holds "
         f"{n:,} donors' settlements + sealed claims ({2 * n:,} objects, built and imported in "
         f"{t_build:.1f} s) and restarts with empty gossip caches, so only /rill/sync/1.0.0 "
         f"carries them; both daemons in one process; creator synced "
         f"{runs[0]['synced']:,} objects; CPU {statistics.median(r['cpu'] for r in runs):.1f} s; "
         f"{_other(max(r['other'] for r in runs))} (worst run)"
         f"{'' if ok else '; INCOMPLETE: ' + str([r['got'] for r in runs])}; "
         f"target < 5 s: {_verdict(ok and med < 5)}"),
    ]


@bench
def partition_heal() -> list[Row]:
    import node_bench  # noqa: F401  (puts tests/ on sys.path)
    import partition
    runs = [partition.run(_WORK / f"partition-{k}", 5) for k in range(3)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def each(key: str) -> str:
        return ", ".join(secs(r[key]) for r in runs)

    common = (f"10 `rill node run` processes on 127.0.0.1, split 5/5 by `rill peers block` on "
              f"every node (each node dials its 3 predecessors, groups interleaved), a month "
              f"end crossed on both sides (3 donors, 2 creators a side, "
              f"{runs[0]['objects']} settlements + sealed claims), split at least 6 real "
              "seconds after the settlements went out (past GossipSub's replay of its message "
              "cache to new peers), then `rill peers unblock`; median of 3 runs; clock starts "
              "at the first unblock")
    return [
        ("partition heal: every closed connection up again", secs(med("reconnect_s")), "s",
         f"runs {each('reconnect_s')} s; {common}; both ends redial the unblocked peer"),
        ("partition heal: every creator holds every claim to it", secs(med("claims_s")), "s",
         f"runs {each('claims_s')} s; by sync on reconnect, no clock moved; "
         "same runs"),
        ("partition heal: every node holds the same settlements and sealed claims (by ID)",
         secs(med("converge_s")), "s",
         f"runs {each('converge_s')} s; once every creator has its claims the daemons' manual "
         "clocks are moved to the donors' first republish (1 h after settling), which brings "
         "the other side's objects to everyone (sync brings only what concerns the asker); "
         f"target < 60 s: {_verdict(max(r['converge_s'] for r in runs) < 60)}; "
         f"no equivocation, no rejected message; start {med('start_s'):.0f} s"),
    ]


@bench
def power_cut_recovery() -> list[Row]:
    import node_bench  # noqa: F401  (puts tests/ on sys.path)
    from lazyfs import find_lazyfs, mounted
    from powernet import gossip_rounds
    binary, why = find_lazyfs()
    if binary is None:
        return [("power cut: `rill node run` restart to caught up, objects re-fetched",
                 "not measured", "", f"LazyFS unavailable: {why}")]
    donors = 40
    with mounted(binary, _WORK / "power-lazyfs") as fs:
        runs = gossip_rounds(fs, _WORK / "power", rounds=3, donors=donors, seed=20261206,
                             publisher_restarts=True)

    def each(key: str, fmt: Callable[[float], str] = secs) -> str:
        return ", ".join(fmt(r[key]) for r in runs)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    def n0(x: float) -> str:
        return f"{x:.0f}"

    setup = (f"a publisher (ordinary disk) floods {donors} donors' settlements + sealed claims "
             f"({runs[0]['objects']:.0f} objects, {runs[0]['ours']:.0f} of them concerning the "
             "store node) one by one through its control socket to a `rill node run` store node "
             "whose rill.db is on LazyFS (symlinked from its home); at a random point of the "
             "flood the store node is SIGKILLed and LazyFS drops every write not fsynced "
             "(clear-cache, then remount); the publisher restarts (so nothing it sent before the "
             "cut is re-offered by gossip) and publishes the rest; the store node restarts; "
             "median of 3 cuts")
    return [
        ("power cut: `rill node run` start to caught up (every object concerning it held "
         "again)", secs(med("caught_up_s")), "s",
         f"runs {each('caught_up_s')} s (started, socket up: {each('started_s')} s); "
         f"{setup}; held = its SQLite read-only, polled every 0.2 s"),
        ("power cut: published objects the cut lost", f"{med('lost_published'):.0f}",
         "objects",
         f"runs {each('lost_published', n0)} lost of {each('held_published', n0)} held at the "
         f"cut; {each('lost_ours', n0)} of them concerning the node, all back by sync (the "
         "publisher had restarted: nothing re-offered them by gossip); the others, relay "
         "copies, all back by reconciliation (/rill/reconcile/1.0.0) in "
         f"{each('relay_back_s')} s from the restart; rows of "
         f"its object store lost, with the claims it had opened from sealed ones: "
         f"{each('lost', n0)}; the gossip store commits with synchronous=NORMAL, so a cut "
         "loses what was stored since the WAL's last fsync, and every FULL commit (a claim "
         "adopted once its settlement came, any wallet write) fsyncs it: a node that kept up "
         "with the flood can lose nothing; same runs"),
        ("power cut: objects re-fetched by sync after the restart", f"{med('synced'):.0f}",
         "objects",
         f"runs {each('synced', n0)}: the lost objects concerning it + those published while "
         "it was down that sync brought before gossip did (the daemon's `synced` counter once "
         "its first sync ended); same runs"),
    ]


@bench
def nat_claim_latency() -> list[Row]:
    import nat_bench  # month end -> claim at a creator behind NAT, median of 3
    return nat_bench.nat_claim_latency(_WORK / "nat", runs=3)


@bench
def open_network_gate() -> list[Row]:
    import open_bench
    return open_bench.gate_costs()


@bench
def open_network_attacks() -> list[Row]:
    import open_bench
    return open_bench.attack_costs()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/BENCHMARKS.md")
    ap.add_argument("--only", default=None, help="run the benchmarks whose name contains this")
    args = ap.parse_args()
    rows: list[tuple[str, list[Row]]] = []
    for fn in BENCHES:
        if args.only and args.only not in fn.__name__:
            continue
        print(f"running {fn.__name__} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            rows.append((fn.__name__, fn()))
        except Exception as exc:  # one failed benchmark is a row, not the end of the run
            print(f"  {fn.__name__} FAILED: {exc!r}"[:2000], file=sys.stderr, flush=True)
            rows.append((fn.__name__, [("this benchmark failed in this run", "-", "",
                                        f"{type(exc).__name__}: {exc}"[:300])]))
        print(f"  {fn.__name__}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    shutil.rmtree(_WORK, ignore_errors=True)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {now}: Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}. Medians of repeated runs in one "
        "process run; ratios compare figures from this same run.",
        "",
    ]
    for name, table in rows:
        lines += [f"## {name.replace('_', ' ')}", "", "| what | figure | unit | note |",
                  "|---|---:|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table]
        lines.append("")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
