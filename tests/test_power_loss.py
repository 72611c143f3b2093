"""Power loss under LazyFS: homes on a file system that loses every write not fsynced.

A SIGKILL (tests/test_crash.py) leaves the OS page cache alone; a power cut does not.
Here the homes live on LazyFS (tests/lazyfs.py), and each trial ends in a real cut:

* **kill + cut**: the wallet process is SIGKILLed at a random moment, then LazyFS drops
  every write not fsynced (``lazyfs::clear-cache``) and is mounted again (the reboot);
* **crash at an operation**: at a random moment LazyFS is armed to die just before the
  next fsync / write / rename of a chosen file (the WAL, a temporary file, a config),
  so the cut lands exactly where durability is decided.

The wallet process (tests/powerdriver.py) clicks, changes budgets, settles, pays, takes
claims in as the creator, signs and takes in receipts, exports, imports, creates homes
and renames, printing each operation once it returned (the acknowledgement).  After
each reboot the test re-opens everything and checks:

* every acknowledged click and budget change is in the log, the chain verifies, ``seq``
  has no gap, and ``PRAGMA integrity_check`` says ok (donor and creator);
* every acknowledged settlement re-settles to the same bytes (nothing to equivocate);
* no obligation goes backwards (owed < paid < receipted) and none vanishes, and every
  acknowledged payment, incoming claim and receipt is there;
* every acknowledged export file holds the bytes written, every acknowledged import,
  new home and rename opens with its config (name, work bits) intact.

The daemon test (tests/powernet.py, shared with tests/bench/run.py) stores gossip on
LazyFS (``synchronous=NORMAL`` there on purpose), cuts the power, and measures what was
lost and how long sync took to bring back what concerns the node after the restart; its
soak makes 100 such cuts (``RILL_POWER_DAEMON_TRIALS``), half of them LazyFS crashes
armed at a write or fsync of the store's WAL or database.  Torn writes (LazyFS's
``torn-op`` and ``torn-seq``) are in tests/test_torn_writes.py, with the checks below.

The checks have teeth: with the wallet at ``synchronous=NORMAL`` the first trial loses
acknowledged clicks, and with ``config.toml`` renamed before its bytes were fsynced (as
``rill id --name`` did) a name is lost.

``RILL_POWER_SEED`` overrides the RNG seed (printed with every failure).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lazyfs import LazyFS, find_lazyfs, mounted
from powernet import gossip_rounds

from rill.protocol.months import month_end
from rill.wallet.wallet import Wallet

SEED = int(os.environ.get("RILL_POWER_SEED", "20261203"))
DRIVER = Path(__file__).parent / "powerdriver.py"
LINE_TIMEOUT = 60.0
STATE_RANK = {"owed": 0, "paid": 1, "receipted": 2}


#: Where a crash is armed: (operation, from regex, to regex).  The WAL's fsync is where
#: every wallet commit becomes durable; the others are the exports, renames and configs.
CRASH_POINTS = [
    ("fsync", r"rill\.db-wal$", ""),
    ("fsync", r"rill\.db-wal$", ""),
    ("write", r"rill\.db-wal$", ""),
    ("fsync", r"\.tmp$", ""),
    ("rename", "", r"(config\.toml|\.rill)$"),
    ("write", r"config\.toml", ""),
    ("create", r"rill\.db", ""),
]


@pytest.fixture(scope="session")
def lazyfs_binary() -> Path:
    binary, why = find_lazyfs()
    if binary is None:
        pytest.skip(why)
    return binary


@pytest.fixture
def fs(lazyfs_binary: Path, tmp_path: Path) -> Iterator[LazyFS]:
    """A mounted LazyFS; ``fs.cut()`` is the power cut, ``fs.reboot()`` the restart."""
    with mounted(lazyfs_binary, tmp_path / "lazyfs") as lz:
        yield lz


def write_durably(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


# -- the wallet process -------------------------------------------------------------------


class Driver:
    """One powerdriver.py process and the lines it printed."""

    def __init__(self, fs: LazyFS, seed: int, start: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(fs.mnt / "donor"), str(fs.mnt / "creator"),
             str(fs.mnt / "spare"), str(seed), str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            cwd=fs.base)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_open(self) -> None:
        line = self.lines.get(timeout=LINE_TIMEOUT)
        if line != "open":
            assert self.proc.stderr is not None
            raise AssertionError(f"the driver did not start: {line} {self.proc.stderr.read()}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=LINE_TIMEOUT)

    def drain(self) -> list[str]:
        """Every line, once the process is dead."""
        while True:
            line = self.lines.get(timeout=LINE_TIMEOUT)
            if line is None:
                return self.all
            self.all.append(line)


@dataclass
class Ledger:
    """What the wallet process acknowledged, over all trials."""

    entries: set[str] = field(default_factory=set)
    settled: dict[str, str] = field(default_factory=dict)
    paid: set[str] = field(default_factory=set)
    incoming: set[str] = field(default_factory=set)
    receipts: set[str] = field(default_factory=set)
    receipted: set[str] = field(default_factory=set)
    exports: dict[str, str] = field(default_factory=dict)
    imports: dict[str, int] = field(default_factory=dict)
    homes: dict[str, str] = field(default_factory=dict)  # home -> acknowledged name
    log_size: int = 0
    states: dict[bytes, str] = field(default_factory=dict)  # obligations at the last check
    ops: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)  # op the cut landed inside

    def take(self, lines: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        """File one trial's lines; return the homes and imports acknowledged in it."""
        new_homes: dict[str, str] = {}
        new_imports: dict[str, int] = {}
        current = None
        for line in lines:
            word, _, rest = line.partition(" ")
            if word == "begin":
                current = rest
                self.ops[rest] = self.ops.get(rest, 0) + 1
                continue
            if word == "entry":
                self.entries.add(rest)
            elif word == "settle":
                month, digest = rest.split()
                assert self.settled.setdefault(month, digest) == digest, (
                    f"{month} was acknowledged settled twice with different objects")
            elif word in ("paid", "in", "receipt", "receipted"):
                {"paid": self.paid, "in": self.incoming, "receipt": self.receipts,
                 "receipted": self.receipted}[word].add(rest)
            elif word == "export":
                path, digest = rest.split()
                self.exports[path] = digest
            elif word == "import":
                home, n = rest.split()
                new_imports[home] = int(n)
            elif word in ("init", "name"):
                home, name = rest.split(" ", 1)
                new_homes[home] = name
            elif word != "error":
                raise AssertionError(f"unexpected driver line {line!r}")
            current = None if word != "error" else current
        if current is not None:
            self.in_flight[current] = self.in_flight.get(current, 0) + 1
            if current == "name":  # a later name may have landed: not acknowledged
                new_homes = {h: n for h, n in new_homes.items()
                             if not n.startswith("creator ")}
        self.homes.update(new_homes)
        self.imports.update(new_imports)
        return new_homes, new_imports


def setup_homes(fs: LazyFS) -> None:
    for name in ("donor", "creator"):
        Wallet.create(fs.mnt / name, name, hashlib.sha256(name.encode()).digest()).close()
        config = fs.mnt / name / "config.toml"
        # a test network: settlements without proof of work
        write_durably(config, config.read_text().replace("work_bits = 20", "work_bits = 0"))
    (fs.mnt / "spare").mkdir()


def check_wallet(home: Path, context: str) -> tuple[Wallet, list[str]]:
    w = Wallet.open(home)
    try:
        w.verify_log()
        integrity = w.db.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)], f"{context}: {home.name}: integrity_check {integrity}"
        seqs = [r[0] for r in w.db.execute("SELECT seq FROM log ORDER BY seq")]
        assert seqs == list(range(len(seqs))), f"{context}: {home.name}: seq has a gap"
        ids = [r[0].hex() for r in w.db.execute("SELECT id FROM log")]
    except BaseException:
        w.close()
        raise
    return w, ids


def check_all(fs: LazyFS, ledger: Ledger, new_homes: dict[str, str],
              new_imports: dict[str, int], context: str) -> None:
    donor, ids = check_wallet(fs.mnt / "donor", context)
    with donor:
        lost = ledger.entries - set(ids)
        assert not lost, f"{context}: {len(lost)} acknowledged log entries lost"
        assert len(ids) >= ledger.log_size, f"{context}: the log shrank"
        ledger.log_size = len(ids)
        for month, digest in ledger.settled.items():
            res, new = donor.settle(month, month_end(month) + 60)
            assert not new, f"{context}: the acknowledged {month} settlement was lost"
            h = hashlib.sha256(res.settlement.raw)
            for c in (*res.claims, *res.sealed):
                h.update(c.raw)
            assert h.hexdigest() == digest, f"{context}: {month} re-settles to other bytes"
        out = {o.claim: o.state for o in donor.obligations(direction="out")}
    creator, _ = check_wallet(fs.mnt / "creator", context)
    with creator:
        inc = {o.claim: o.state for o in creator.obligations(direction="in")}
    states = {**{b"o" + k: v for k, v in out.items()}, **{b"i" + k: v for k, v in inc.items()}}
    for key, before in ledger.states.items():
        now = states.get(key)
        assert now is not None, f"{context}: obligation {key[1:].hex()[:16]} vanished"
        assert STATE_RANK[now] >= STATE_RANK[before], (
            f"{context}: obligation {key[1:].hex()[:16]} went back from {before} to {now}")
    ledger.states = states
    for claim in ledger.paid:
        assert out[bytes.fromhex(claim)] in ("paid", "receipted"), f"{context}: payment lost"
    for claim in ledger.receipted:
        assert out[bytes.fromhex(claim)] == "receipted", f"{context}: receipt lost (donor)"
    for claim in ledger.incoming:
        assert bytes.fromhex(claim) in inc, f"{context}: incoming claim lost"
    for claim in ledger.receipts:
        assert inc[bytes.fromhex(claim)] == "receipted", f"{context}: receipt lost (creator)"
    for path, digest in ledger.exports.items():
        data = Path(path).read_bytes() if Path(path).exists() else b""
        assert hashlib.sha256(data).hexdigest() == digest, (
            f"{context}: acknowledged export {Path(path).name} holds {len(data)} other bytes")
    for home, n in new_imports.items():
        with Wallet.open(home) as w:
            assert w.verify_log().size == n, f"{context}: import into {home} lost entries"
            assert w.config.work_bits == 0, f"{context}: import into {home} lost its config"
    for home, name in new_homes.items():
        with Wallet.open(home) as w:
            assert w.config.name == name, (
                f"{context}: {Path(home).name}: the name {name!r} was lost "
                f"(config.toml holds {w.home.config_path.read_bytes()[:60]!r})")


def power_trials(fs: LazyFS, trials: int, seed: int, max_run: float) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger()
    setup_homes(fs)
    start = 0
    cuts = crashes = unfired = 0
    t_begin = time.perf_counter()
    for trial in range(trials):
        driver = Driver(fs, rng.randrange(2**32), start)
        delay = rng.uniform(0.0, max_run)
        point = rng.choice(CRASH_POINTS) if rng.random() < 0.5 else None
        context = f"seed {seed}, trial {trial} ({point or 'kill + cut'}, {delay:.2f} s)"
        try:
            driver.wait_open()
            time.sleep(delay)  # the moment of the cut: the only sleep of this module
            fired = False
            if point is not None:
                fs.crash_at(point[0], from_rgx=point[1], to_rgx=point[2])
                deadline = time.monotonic() + max_run
                while not fs.crashed() and driver.proc.poll() is None \
                        and time.monotonic() < deadline:
                    time.sleep(0.002)  # polling for the crash (LazyFS exits)
                fired = fs.crashed()
            driver.kill()
            if fired:
                crashes += 1
            else:
                unfired += point is not None
                fs.cut()
                cuts += 1
            fs.reboot()
            lines = driver.drain()
        finally:
            driver.kill()
        errors = [line for line in lines if line.startswith("error")]
        if errors and not fired:
            assert driver.proc.stderr is not None
            raise AssertionError(f"{context}: the driver failed before the cut: {errors[0]}")
        new_homes, new_imports = ledger.take(lines)
        check_all(fs, ledger, new_homes, new_imports, context)
        start += 1 + sum(1 for line in lines if line.startswith("begin"))
    elapsed = time.perf_counter() - t_begin
    acked = len(ledger.entries)
    print(f"\n{trials} power-loss trials in {elapsed:.1f} s (seed {seed}): {cuts} kill + "
          f"clear-cache ({unfired} of them after an armed crash point did not fire), "
          f"{crashes} LazyFS crashes at an operation; {acked} acknowledged log entries, "
          f"{len(ledger.settled)} months settled, {len(ledger.paid)} payments, "
          f"{len(ledger.receipts)} receipts, {len(ledger.exports)} exports, "
          f"{len(ledger.imports)} imports, {len(ledger.homes)} homes created or renamed; "
          f"operations {dict(sorted(ledger.ops.items()))}; "
          f"cut inside {dict(sorted(ledger.in_flight.items()))}; 0 acknowledged writes lost")
    return ledger


def test_power_cuts_lose_nothing_acknowledged(fs: LazyFS) -> None:
    ledger = power_trials(fs, 10, SEED, max_run=1.0)
    assert len(ledger.entries) >= 20 and ledger.settled


@pytest.mark.soak
def test_power_cuts_lose_nothing_acknowledged_soak(fs: LazyFS) -> None:
    ledger = power_trials(fs, 120, SEED + 1, max_run=2.5)
    assert len(ledger.settled) >= 5 and ledger.exports and ledger.imports and ledger.receipts
    assert sum(ledger.in_flight.values()) >= 60


# -- a daemon storing gossip (tests/powernet.py) -------------------------------------------


def test_gossip_lost_in_a_power_cut_comes_back_by_sync(fs: LazyFS, tmp_path: Path) -> None:
    figures = gossip_rounds(fs, tmp_path, rounds=1, donors=15, seed=SEED)
    # gossip_rounds waited for every object concerning the node to be back
    assert figures[0]["caught_up_s"] < 60


@pytest.mark.soak
def test_gossip_power_cuts_soak(fs: LazyFS, tmp_path: Path) -> None:
    """>= 100 daemon power cuts (RILL_POWER_DAEMON_TRIALS): half kill + clear-cache at a
    random object of a flood, half a LazyFS crash armed at a write or fsync of the
    store's WAL or database.  Each trial asserts integrity and that every object
    concerning the node is back by sync (gossip_rounds); the figures are printed."""
    trials = int(os.environ.get("RILL_POWER_DAEMON_TRIALS", "100"))
    figures = gossip_rounds(fs, tmp_path, rounds=trials, donors=15, seed=SEED + 2,
                            crash_share=0.5)
    print("\n" + daemon_summary(figures))
    assert len(figures) == trials
    assert sum(f["crash"] != "cut" for f in figures) >= trials // 5


def daemon_summary(figures: list[dict[str, float]]) -> str:
    """Median and max of what the cuts lost and how recovery went (also for the bench)."""
    import statistics

    def mm(key: str) -> str:
        xs = [float(f[key]) for f in figures]
        return f"median {statistics.median(xs):.2f}, max {max(xs):.2f}"

    kinds: dict[str, int] = {}
    for f in figures:
        kinds[str(f["crash"])] = kinds.get(str(f["crash"]), 0) + 1
    lost = sum(int(f["lost_published"]) for f in figures)
    held_ = sum(int(f["held_published"]) for f in figures)
    return (f"{len(figures)} daemon power cuts {dict(sorted(kinds.items()))}: objects lost "
            f"{lost} of {held_} held ({mm('lost_published')} per cut; concerning the node "
            f"{sum(int(f['lost_ours']) for f in figures)}, all back); re-fetched by sync "
            f"{mm('synced')}; recovery, start to caught up: {mm('caught_up_s')} s (process "
            f"start {mm('started_s')} s); every relay copy back by reconciliation: "
            f"{mm('relay_back_s')} s")
