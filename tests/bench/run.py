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
from rill.protocol.months import month_end
from rill.protocol.verify import verify_files

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

    t_raw = median_time(raw_nacl)
    t_dec = median_time(decode_all)
    t_ver = median_time(verify_batch)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "all.txt"
        from rill.protocol.armour import armour
        bundle.write_text("".join(armour(r, "receipt") for r in raws))
        rill = str(Path(sys.executable).parent / "rill")
        t_cli = median_time(lambda: subprocess.run([rill, "verify", "--json", str(bundle)],
                                                   check=True, capture_output=True), repeat=3)
    rate = {k: n / t for k, t in
            {"raw": t_raw, "decode": t_dec, "batch": t_ver, "cli": t_cli}.items()}
    pct = {k: 100 * rate[k] / rate["raw"] for k in rate}
    return [
        ("raw PyNaCl Ed25519 verify (crypto_sign_open), 10k receipts", f"{rate['raw']:,.0f}",
         "objects/s", "the baseline"),
        ("protocol.decode: strict CBOR + schema + key admission + signature",
         f"{rate['decode']:,.0f}", "objects/s", f"{pct['decode']:.0f}% of raw"),
        ("verify_files: decode + time rules + cross-checks (what `rill verify` runs)",
         f"{rate['batch']:,.0f}", "objects/s", f"{pct['batch']:.0f}% of raw"),
        ("`rill verify --json` on one armoured file of 10k objects (process start included)",
         f"{rate['cli']:,.0f}", "objects/s", f"{pct['cli']:.0f}% of raw (target ≥ 70%)"),
    ]


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
        rows.append((fn.__name__, fn()))
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
