"""Power cuts inside the long run (tests/chaos.py): some daemons keep their database on
LazyFS (tests/lazyfs.py), one mount each, so that a cut drops what that daemon alone had
not fsynced; the fault is SIGKILL + ``lazyfs::clear-cache`` + remount, then the daemon
starts again on the same home.

Right after the cut, before the restart, the home is checked as tests/test_power_loss.py
checks a wallet: ``PRAGMA integrity_check`` ok, the click chain verifies.  After the
restart, every object of class 2 (it concerns the node) that the cut lost must be back
(sync with each peer at connect): the run waits for it (60 s at most, else the month
fails) and measures it ("back s").  Others' objects of a month that the cut lost come back
by reconciliation (SPEC §11.4) from peers that still hold them: the run waits for them too
(60 s at most) and counts what stays lost (key documents have no month and are not
reconciled; what every peer evicted or pruned cannot come back).

Only the database is on LazyFS: the control socket cannot live there (no mknod), and
``config.toml`` is written once, durably, before the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazyfs import LazyFS, find_lazyfs

from rill.wallet.wallet import Wallet


@dataclass
class Cut:
    node: str
    lost: int = 0          # objects (rows of `objects`) the cut dropped
    lost_own: int = 0      # of them, class 2: must come back
    relay_lost: int = 0    # of them, others' objects still missing after reconciliation
    relay_back_s: float = 0.0  # restart -> others' lost objects of a month back
    back_s: float = 0.0    # restart -> every lost class-2 object held again

    def label(self) -> str:
        return f"power-cut:{self.node[:3]}(-{self.lost})"


@dataclass
class Power:
    """The LazyFS mounts of the daemons that can lose power, by node name."""

    mounts: dict[str, LazyFS] = field(default_factory=dict)
    cuts: list[Cut] = field(default_factory=list)
    why_not: str = ""  # why there are none (LazyFS absent), "" when there are

    def unmount(self) -> None:
        for fs in self.mounts.values():
            fs.unmount()


def setup(base: Path, homes: dict[str, Path], want: int) -> Power:
    """Move the databases of ``want`` of ``homes`` (name -> home, not running) onto a
    LazyFS mount each; with no LazyFS here, a Power with none and the reason."""
    if want <= 0:
        return Power(why_not="no daemon asked to be on LazyFS")
    binary, why = find_lazyfs()
    if binary is None:
        return Power(why_not=why)
    power = Power()
    for name in list(homes)[:want]:
        fs = LazyFS(binary, base / f"lazyfs-{name}", cache_mb=64)  # a daemon's database
        fs.mount()
        power.mounts[name] = fs
        home = homes[name]
        target = fs.mnt / "rill.db"
        shutil.copyfile(home / "rill.db", target)
        durable(target)
        (home / "rill.db").unlink()
        for extra in ("rill.db-wal", "rill.db-shm"):
            (home / extra).unlink(missing_ok=True)
        (home / "rill.db").symlink_to(target)
    return power


def durable(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def months_of(home: Path) -> dict[str, str | None]:
    """Object ID (hex) -> its month (None for key documents), public objects only."""
    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {bytes(i).hex(): mo for i, mo in db.execute(
            "SELECT id, month FROM objects WHERE private = 0")}
    finally:
        db.close()


def monthly(months: dict[str, str | None]) -> set[str]:
    return {i for i, mo in months.items() if mo is not None}


def objects(home: Path) -> dict[str, int]:
    """Object ID (hex) -> protection class, read beside the running daemon."""
    db = sqlite3.connect(f"file:{home / 'rill.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {bytes(i).hex(): k for i, k in db.execute("SELECT id, keep FROM objects")}
    finally:
        db.close()


def check_home(home: Path, context: str) -> None:
    """What a power cut must never break (as in tests/test_power_loss.py)."""
    with Wallet.open(home) as w:
        w.verify_log()
        integrity = w.db.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)], f"{context}: integrity_check {integrity}"


def cut(power: Power, node: Any, restart: Any) -> Cut:
    """The fault on ``node`` (a tests/partition.py Node on LazyFS): SIGKILL, clear-cache,
    remount, check, ``restart()``, wait for every lost class-2 object to be back."""
    fs = power.mounts[node.name]
    home = node.proc.home
    proc = node.proc.proc
    assert proc is not None and proc.poll() is None, f"{node.name} not running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    node.proc.proc = None
    before = objects(home)  # committed, fsynced or not (LazyFS still has it cached)
    before_months = months_of(home)
    fs.cut()
    fs.reboot()
    after = objects(home)
    context = f"power cut of {node.name}"
    assert after.keys() <= before.keys(), f"{context}: objects from nowhere"
    check_home(home, context)
    lost = before.keys() - after.keys()
    own = {i for i in lost if before[i] == 2}
    result = Cut(node.name, lost=len(lost), lost_own=len(own))
    t0 = time.monotonic()
    restart()
    deadline = t0 + 60
    while own - objects(home).keys():
        if time.monotonic() > deadline:
            missing = sorted(own - objects(home).keys())
            raise AssertionError(f"{context}: {len(missing)} object(s) concerning it not "
                                 f"back 60 s after the restart: {missing[:4]}")
        time.sleep(0.1)
    result.back_s = time.monotonic() - t0
    # others' objects of a month come back by reconciliation (SPEC §11.4), from peers that
    # hold them; what no peer holds any more (evicted, pruned) cannot
    relay = {i for i in lost - own if i in monthly(before_months)}
    deadline = time.monotonic() + 60
    while relay - objects(home).keys() and time.monotonic() < deadline:
        time.sleep(0.1)
    result.relay_back_s = time.monotonic() - t0
    result.relay_lost = len(lost - objects(home).keys())
    power.cuts.append(result)
    return result


__all__ = ["Cut", "Power", "check_home", "cut", "setup"]
