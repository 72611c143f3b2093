"""The scale simulation's report: the measured runs as a table (tests/scale/sim.py), the
DHT-only runs (tests/scale/dhtsim.py), then the model fitted on them and extrapolated
(tests/scale/model.py).

Usage: python tests/scale/report.py [RUNS.json ...] [--store docs/scale-runs.json]
[--dht docs/dht-runs.json] [--doc docs/SCALE.md]: the ``--json`` files sim.py writes,
merged into the store of every run so far (so sizes run apart are reported together);
the report replaces the measured section of the doc.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import (
    PING_BPS,
    Point,
    fill_defaults,
    fill_peers,
    fit_per_object,
    model,
    objects_per_node,
)


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.0f}"


def _refresh(p: Point) -> str:
    if p.refresh_kb is not None:
        return f"{p.refresh_kb:.0f}"
    if p.r.get("refresh_bytes") is not None:
        return (f"({p.refresh()[0]:.0f}; {p.r['refresh_bytes'] / 1e3:.0f} measured "
                f"{p.refresh_kind})")
    return f"({p.refresh()[0]:.0f}, not measured)"


def _provide(p: Point) -> str:
    if p.provide_kb is not None:
        return f"{p.provide_kb:.0f}"
    return f"({p.provide()[0]:.0f}, not measured)"


def table(points: list[Point]) -> list[str]:
    lines = [
        "| N | shard bits | clicks per donor | objects of the month | held per node "
        "(mean) | all claims at their creators (s) | every node's set complete (s) | "
        "after gossip alone (first 30 s) | traffic per node, month end, idle deducted (MB) | "
        "one periodic round (KB per node) | one DHT refresh (KB per node) | one round of "
        "provides (KB per node) | idle, measured + Yamux pings (B/s per "
        "node) | traffic per node and month (MB) | CPU per node, month end, idle deducted "
        "(s) | CPU per object held (ms) | idle CPU (% core) | CPU per node, month average "
        "(% core) | stored per node (KB, median) |",
        "|" + "---|" * 19,
    ]
    for p in points:
        r = p.r
        lines.append(
            f"| {p.n} | {p.bits} | {p.k} | {p.n * (1 + p.k):,} | {p.held:,.0f} | "
            f"{_s(r['gossip_s'])} | {_s(r['full_s'])} | {r['gossip_complete']} | "
            f"{p.month_end_mb:.2f} | {p.round_kb:.1f} | {_refresh(p)} | {_provide(p)} | "
            f"{p.idle_bps:.1f} + {p.ping_bps():.1f}{'' if p.peers is not None else '*'} | "
            f"{p.month_mb():.1f} | {p.month_end_cpu:.2f} | "
            f"{1e3 * p.month_end_cpu / p.held:.1f} | {100 * p.idle_cpu:.3f} | "
            f"{p.core_pct():.3f} | {p.stored_mb * 1e3:.0f} |")
    return lines


def dht_table(dht: list[dict[str, Any]]) -> list[str]:
    """The DHT-only simulation's runs (tests/scale/dhtsim.py), one row per size."""
    lines = ["", "**The DHT alone** (tests/scale/dhtsim.py: bare hosts with the daemon's "
             "host set-up and DHT patches, every lookup dialling anew; per operation, "
             "bytes summed over every host, so sent and received both count):", "",
             "| N | refresh (KB) | peers asked | connections opened | CPU (ms) | provide "
             "(KB) | peers asked | connections opened | CPU (ms) | a ping that dials (KB) | "
             "a lookup of providers (KB) | provider found |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(dht, key=lambda r: r["n"]):
        f, p = r["refresh"], r["provide"]
        ping = f"{r['ping']['kb']:.1f}" if "ping" in r else "-"
        find = (f"{r['find']['kb']:.0f} | {r['find']['ok']}/{r['find']['of']}" if "find" in r
                else "- | -")
        lines.append(f"| {r['n']:,} | {f['kb']:.0f} | {f['asked']:.1f} | "
                     f"{f['connections'] / 2:.1f} | {1e3 * f['cpu_s']:.0f} | {p['kb']:.0f} | "
                     f"{p['asked']:.1f} | {p['connections'] / 2:.1f} | "
                     f"{1e3 * p['cpu_s']:.0f} | {ping} | {find} |")
    return lines


def loaded_table(loaded: list[dict[str, Any]], points: list[Point]) -> list[str]:
    """Runs too large for this machine (more daemons a core than reach rest): their month
    end beside what the fit over the runs at rest says for as many objects held, so the
    larger sizes test the model instead of feeding it.  The last run of each size counts."""
    lines = ["", "**Runs too large for this machine** (tests/scale/sim.py like the rows "
             "above; not in the fit: their idle windows are not at rest, so the "
             "month end's idle cost cannot be taken out reliably). The month end beside "
             "the fit over the runs above, for the objects these runs held:", "",
             "| N | shard bits | daemons per worker process | objects held per node: mean, "
             "placement "
             "arithmetic | all claims at their creators (s) | every node's set complete "
             "(s) | complete at the end | traffic per node, month end (MB): measured, "
             "idle deducted, the fit | CPU per node, month end (s): measured, the fit | "
             "idle, not at rest (B/s per node) | start-up: quiet after (s), KB per node | "
             "stored per node (KB, median) |",
             "|" + "---|" * 12]
    latest = {(r["n"], r["shard_bits"], r["k"]): r for r in loaded}  # the last of each
    for r in sorted(latest.values(), key=lambda r: (r["shard_bits"] > 0, r["n"])):
        p = Point(r)
        basis = [q for q in points if bool(q.bits) == bool(p.bits)] or points
        fitted = ("–", "–")  # no fit without two sizes at rest
        if len({q.held for q in basis}) >= 2:
            (mb, cpu, _) = fit_per_object(basis)
            fitted = (f"{mb[0] + mb[1] * p.held:.2f}", f"{cpu[0] + cpu[1] * p.held:.1f}")
        raw = statistics.mean(r["month_end_bytes"]) / 1e6
        lines.append(
            f"| {p.n} | {p.bits} | {p.n / r['procs']:.0f} | {p.held:,.0f}, "
            f"{objects_per_node(p.n, p.bits, p.k):,.0f} | {_s(r['gossip_s'])} | "
            f"{_s(r['full_s'])} | {r['full_complete']} | {raw:.2f}, {p.month_end_mb:.2f}, "
            f"{fitted[0]} | {r['month_end_cpu_s'] / p.n:.1f}, {fitted[1]} | "
            f"{p.idle_bps:.0f} | "
            f"{r['settle_s']:.0f}, {r['settle_bytes'] / 1e3:.0f} | {p.stored_mb * 1e3:.0f} |")
    return lines


def report(runs: list[dict[str, Any]], dht: list[dict[str, Any]] | None = None,
           loaded: list[dict[str, Any]] | None = None) -> str:
    points = sorted((Point(r) for r in runs), key=lambda p: (p.bits > 0, p.n, p.k))
    fill_defaults(points, "refresh", across=True)
    fill_defaults(points, "provide", across=False)
    fill_peers(points)
    lines = table(points)
    lines += ["", f"Yamux pings: {PING_BPS:.2f} B/s per connection kept (a ping and its "
              "answer, 30 bytes a frame, when nothing crossed the connection for 20 minutes; "
              "node/keepalive.py), times the GossipSub peers a node had at rest (* not "
              "counted in that run: the median of the runs that did). No run's idle window "
              "comes 20 minutes after a connection's first ping."]
    if dht:
        lines += dht_table(dht)
    if len({p.held for p in points}) >= 2:
        lines += model(points, dht)
    if loaded:
        lines += loaded_table(loaded, points)
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- measured: begin (tests/scale/report.py) -->", "<!-- measured: end -->"


def merge(store: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored runs with the new ones; a new run replaces a stored one of the same N,
    shard bits and clicks."""
    key = lambda r: (r["n"], r["shard_bits"], r["k"])  # noqa: E731
    fresh = {key(r) for r in new}
    return [r for r in store if key(r) not in fresh] + new


def into_doc(doc: Path, text: str) -> None:
    """Replace what stands between the markers in ``doc`` with ``text``."""
    page = doc.read_text()
    head, sep, rest = page.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"{doc}: the markers {BEGIN!r} and {END!r} are missing")
    doc.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*", help="JSON files sim.py wrote (--json)")
    ap.add_argument("--store", help="a JSON file of every run so far: the new runs are "
                    "merged into it and the report covers all of them")
    ap.add_argument("--doc", help="a markdown file whose measured section (between the "
                    "markers) gets the report")
    ap.add_argument("--dht", help="a JSON file of the DHT-only simulation's runs "
                    "(tests/scale/dhtsim.py --json): how a lookup's cost grows with N")
    ap.add_argument("--loaded", help="a JSON file of runs too large for this machine "
                    "(more daemons a core than reach rest): reported beside the fit, not "
                    "in it")
    ap.add_argument("--as-loaded", action="store_true", help="the new runs go to the "
                    "--loaded file (runs too large for this machine), not to --store")
    args = ap.parse_args()
    if args.as_loaded and not args.loaded:
        ap.error("--as-loaded needs --loaded FILE")
    new = [r for f in args.runs for r in json.loads(Path(f).read_text())]
    runs = [] if args.as_loaded else new
    dht = (json.loads(Path(args.dht).read_text()) if args.dht and Path(args.dht).exists()
           else None)
    if args.store:
        store = Path(args.store)
        runs = merge(json.loads(store.read_text()) if store.exists() else [], runs)
        store.write_text(json.dumps(runs, indent=1, default=str) + "\n")
    loaded = (json.loads(Path(args.loaded).read_text())
              if args.loaded and Path(args.loaded).exists() else [])
    if args.as_loaded:  # kept in order: the table reports the last run of each size
        loaded += new
        Path(args.loaded).write_text(json.dumps(loaded, indent=1, default=str) + "\n")
    text = report(runs, dht, loaded)
    print(text)
    if args.doc:
        into_doc(Path(args.doc), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
