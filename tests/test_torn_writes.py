"""Torn writes under LazyFS (its ``torn-op`` and ``torn-seq`` faults), with the wallet
process of tests/test_power_loss.py (tests/powerdriver.py) and the same checks after
every reboot (every acknowledged entry, settlement, payment, receipt, export, import,
new home and name; the chain verifies; ``integrity_check`` ok; nothing goes back).

* ``torn-op``: the next write to a file is split in parts, only some of them reach the
  disk, and LazyFS dies (a power cut in the middle of one write): on the donor's WAL
  (a frame half written), on its database file (a page half written by a checkpoint),
  on the creator's ``config.toml.tmp`` (``rill id --name``: half a new config);
* ``torn-seq``: of the next run of writes to the WAL with no fsync between them (one
  transaction's frames), only some reach the disk, and LazyFS dies (frames missing from
  the middle of a commit).

A fault that has not fired when the trial's time is up is disarmed by a kill + cut (the
reboot starts a fresh LazyFS) and counted.  ``RILL_POWER_SEED`` overrides the seed.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lazyfs import LazyFS, mounted
from test_power_loss import SEED, Driver, Ledger, check_all, lazyfs_binary, setup_homes

__all__ = ["lazyfs_binary"]  # the fixture, shared


@pytest.fixture
def fs(lazyfs_binary: Path) -> Iterator[LazyFS]:
    """A LazyFS mounted under a short path: a torn-write command names its file in full
    and LazyFS reads commands 100 bytes at a time."""
    base = Path(tempfile.mkdtemp(prefix="lz", dir="/tmp"))
    try:
        with mounted(lazyfs_binary, base) as lz:
            yield lz
    finally:
        shutil.rmtree(base, ignore_errors=True)

#: (fault, file under the mount, LazyFS attributes besides file=)
TORN = [  # the first FAST are the fast slice's
    ("torn-op", "donor/rill.db-wal", ["parts=3", "persist=1,3"]),
    ("torn-seq", "donor/rill.db-wal", ["op=write", "persist=2"]),
    ("torn-op", "creator/config.toml.tmp", ["parts=2", "persist=1"]),
    ("torn-seq", "creator/rill.db-wal", ["op=write", "persist=1,3"]),
    ("torn-op", "donor/rill.db-wal", ["parts=3", "persist=1"]),
    ("torn-op", "donor/rill.db-wal", ["parts=2", "persist=2"]),
    ("torn-op", "creator/rill.db-wal", ["parts=4", "persist=1,2"]),
    ("torn-op", "donor/rill.db", ["parts=2", "persist=1"]),
    ("torn-seq", "donor/rill.db-wal", ["op=write", "persist=1"]),
]
FAST = 3


def torn_trials(fs: LazyFS, trials: int, seed: int, max_run: float) -> dict[str, int]:
    rng = random.Random(seed)
    ledger = Ledger()
    setup_homes(fs)
    start = 0
    fired: dict[str, int] = {}
    unfired = 0
    crashed = False
    for trial in range(trials):
        kind, rel, attrs = TORN[trial % len(TORN)] if trial < len(TORN) else rng.choice(TORN)
        driver = Driver(fs, rng.randrange(2**32), start)
        delay = rng.uniform(0.0, max_run)
        label = f"{kind} {rel} {','.join(attrs)}"
        context = f"seed {seed}, trial {trial} ({label}, armed after {delay:.2f} s)"
        try:
            driver.wait_open()
            time.sleep(delay)  # when the fault is armed
            # the path LazyFS sees (modules=subdir): the underlying file's
            fs.command("::".join(["lazyfs", kind, f"file={fs.root / rel}", *attrs]))
            deadline = time.monotonic() + max_run
            while not fs.crashed() and driver.proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.002)  # polling for the torn write (LazyFS exits)
            driver.kill()
            crashed = fs.crashed()
            if crashed:
                fired[label] = fired.get(label, 0) + 1
            else:
                unfired += 1
                fs.cut()
            fs.reboot()
            lines = driver.drain()
        finally:
            driver.kill()
        errors = [line for line in lines if line.startswith("error")]
        if errors and not crashed:
            raise AssertionError(f"{context}: the driver failed: {errors[0]}")
        new_homes, new_imports = ledger.take(lines)
        check_all(fs, ledger, new_homes, new_imports, context)
        start += 1 + sum(1 for line in lines if line.startswith("begin"))
    print(f"\n{trials} torn-write trials (seed {seed}): fired {dict(sorted(fired.items()))}, "
          f"{unfired} not reached in time (kill + cut instead); "
          f"{len(ledger.entries)} acknowledged entries, {len(ledger.settled)} months "
          f"settled, {len(ledger.homes)} homes created or renamed; 0 acknowledged writes "
          "lost")
    fired["_unfired"] = unfired
    return fired


def test_torn_writes_lose_nothing_acknowledged(fs: LazyFS) -> None:
    """The fast slice, 3 trials: the donor's WAL torn inside a frame and inside a
    commit, half a new config.toml."""
    fired = torn_trials(fs, FAST, SEED, max_run=1.0)
    assert sum(v for k, v in fired.items() if k.startswith("torn")) >= 2, fired


@pytest.mark.soak
def test_torn_writes_soak(fs: LazyFS) -> None:
    """100 trials: each fault of TORN once, then drawn at random (a database page torn by
    a checkpoint fires only when a checkpoint comes in time)."""
    fired = torn_trials(fs, 100, SEED + 3, max_run=2.0)
    assert sum(v for k, v in fired.items() if k.startswith("torn")) >= 60, fired
