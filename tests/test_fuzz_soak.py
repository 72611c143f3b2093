"""Structured fuzzing soak: a million validly signed inputs through every target.

`make soak` (or ``pytest -m soak tests/test_fuzz_soak.py -s``).  Two worker processes
take chunks of inputs spread over the targets of :mod:`fuzztargets`; progress is
printed after each chunk; a failure does not stop the run.  At the end every distinct
failure (target, exception type, innermost rill frame) is listed with a shrunk input,
saved under the test's tmp dir (``crashNNN-*.txt`` / ``.bin``), and the test fails.

``RILL_SOAK_INPUTS`` (default 1,000,000) and ``RILL_SOAK_SEED`` change the run.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fuzzcrash import Crash, dedupe, save, shrink
from fuzzgen import Gen, Sample, World, files_of, world
from fuzztargets import (
    NOWS,
    StubDaemon,
    cli_verify,
    dashboard,
    dashboard_queries,
    gossip,
    make_home,
    sync_client,
    sync_request,
    sync_serve,
    verify,
    wallet_import,
    wallet_views,
)

pytestmark = pytest.mark.soak

INPUTS = int(os.environ.get("RILL_SOAK_INPUTS", "1000000"))
SEED = int(os.environ.get("RILL_SOAK_SEED", "20261015"))
CHUNK = 5000
WORKERS = 2
#: Share of the inputs each target gets.
WEIGHTS = {"gossip": 60, "import": 15, "verify": 8, "sync": 15, "dashboard": 1}


def _shrunk(target: str, s: Sample, c: Crash, check: Any) -> Crash:
    """The crash again, on a smaller input that still gives the same crash."""
    small = shrink(s, lambda t: any(x.key == c.key for x in check(t)))
    if small is s:
        return c
    return Crash(c.target, c.exc_type, c.message, c.where, "shrunk: " + small.describe(),
                 small.raw)


def run_chunk(args: tuple[int, int, int, str]) -> tuple[int, int, Counter[str], list[Crash],
                                                         float]:
    """In a worker: ``n`` inputs from ``seed``; returns (index, inputs, per target, crashes,
    seconds)."""
    index, seed, n, tmp = args
    started = time.monotonic()
    w = world()
    home_dir = Path(tmp) / f"home{index}"
    home = make_home(home_dir, w)
    stub = StubDaemon(home, World.NOW)
    rnd = random.Random(seed)
    g = Gen(rnd, w)
    subjects = [w.home_pub] + [bytes(k.verify_key) for k in [*w.donors, *w.creators[:8]]]
    targets, weights = list(WEIGHTS), list(WEIGHTS.values())
    counts: Counter[str] = Counter()
    found: dict[tuple[str, str, str], Crash] = {}

    def note(crashes: list[Crash], s: Sample | None = None, check: Any = None) -> None:
        for c in crashes:
            if c.key not in found:
                found[c.key] = _shrunk(c.target, s, c, check) if s is not None else c

    done = 0
    try:
        while done < n:
            target = rnd.choices(targets, weights)[0]
            if target == "gossip":
                s = g.sample()
                note(gossip(s, thorough=False, rnd=rnd), s, gossip)
                k = 1
            elif target == "import":
                batch = g.batch() if rnd.random() < 0.5 else [g.sample()]
                for s in batch:
                    note(wallet_import(home, [s]), s, lambda t: wallet_import(home, [t]))
                k = len(batch)
                if rnd.random() < 0.02:
                    note(wallet_views(home))
            elif target == "verify":
                batch = g.batch()
                files = files_of(rnd, batch)
                note(verify(files, rnd.choice([None, *NOWS]),
                            "; ".join(s.describe(120) for s in batch), batch))
                k = len(batch)
            elif target == "sync":
                raw, what = sync_request(rnd, subjects)
                note(sync_serve(stub, raw, what))
                k = 1
                if rnd.random() < 0.2:
                    objs = [g.sample() for _ in range(rnd.randint(0, 3))]
                    note(sync_client(objs, rnd.choice([0, 1, 2**63, 2**64 - 1, -1]),
                                     rnd.choice([0, 1, 2]), World.NOW))
                    k += len(objs)
            else:
                s = g.sample()
                month = s.body.get("month", "") if isinstance(s.body, dict) else ""
                paths = dashboard_queries(rnd, [*World.RECENT, month])
                note(dashboard(stub, paths))
                k = len(paths)
            counts[target] += k
            done += k
        cli_dir = Path(tmp) / f"cli{index}"
        cli_dir.mkdir()
        note(cli_verify(cli_dir, files_of(rnd, g.batch()), World.NOW, f"chunk {index} batch"))
        shutil.rmtree(cli_dir)
    finally:
        home.close()
        shutil.rmtree(home_dir, ignore_errors=True)
    return index, done, counts, list(found.values()), time.monotonic() - started


def generator_rate(n: int = 3000) -> float:
    """Objects per second the generator alone makes (signed, encoded)."""
    g = Gen(random.Random(1), world())
    t0 = time.perf_counter()
    for _ in range(n):
        _ = g.sample().raw
    return n / (time.perf_counter() - t0)


def test_soak_structured_fuzz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def say(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)
        with open(tmp_path / "progress.log", "a") as log:
            log.write(text + "\n")

    world()  # made once in the parent, inherited by the forked workers
    say(f"\nsoak: {INPUTS:,} inputs, seed {SEED}, {WORKERS} workers; output in {tmp_path}")
    say(f"generator alone: {generator_rate():,.0f} objects/s (one core)")
    chunks = [(i, SEED * 100_003 + i, min(CHUNK, INPUTS - i * CHUNK), str(tmp_path))
              for i in range((INPUTS + CHUNK - 1) // CHUNK)]
    started = time.monotonic()
    total, per_target = 0, Counter[str]()
    crashes: list[Crash] = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(WORKERS, maxtasksperchild=20) as pool:
        for index, n, counts, found, secs in pool.imap_unordered(run_chunk, chunks):
            total += n
            per_target.update(counts)
            new = [c for c in found if c.key not in {x.key for x in crashes}]
            crashes += found
            rate = total / (time.monotonic() - started)
            say(f"  chunk {index:4d}: {n} inputs in {secs:5.1f}s; total {total:,} "
                f"({rate:,.0f}/s); distinct failures {len(dedupe(crashes))}"
                + "".join(f"\n    NEW {c.line()}" for c in new))
    elapsed = time.monotonic() - started
    distinct = dedupe(crashes)
    say(f"soak done: {total:,} inputs in {elapsed:,.0f}s ({total / elapsed:,.0f}/s); "
        f"per target {dict(per_target)}")
    report = []
    for n, c in enumerate(distinct.values()):
        stem = save(tmp_path / "crashes", c, n)
        count = sum(1 for x in crashes if x.key == c.key)
        report.append(f"{c.line()}\n    seen in {count} chunk(s); input: {c.input[:400]}\n"
                      f"    saved: {stem}.*")
    say("\n".join(report) or "no failures")
    assert total >= INPUTS
    assert not distinct, f"{len(distinct)} distinct failure(s):\n" + "\n".join(report)


if __name__ == "__main__":  # a quick look without pytest: python tests/test_fuzz_soak.py N
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    *_, found, secs = run_chunk((0, SEED, n, "/tmp"))
    print(f"{n} inputs in {secs:.1f}s")
    for c in dedupe(found).values():
        print(c.line(), "\n   ", c.input[:300])
