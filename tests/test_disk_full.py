"""A full disk, for real: homes on a small tmpfs mounted by the test (root only), filled
with a filler file to a chosen number of free bytes.

Every command that writes -- click, budget, import-object, import, export, settle -- is
run at rising amounts of free space, from none (the home cannot even be opened: SQLite's
WAL index needs room) through room to open but not to commit, until it succeeds.  Each
failure must be one clear error (exit 1, ``disk-full`` with --json, no traceback) that
changed nothing (same rows, the chain verifies, ``PRAGMA integrity_check`` ok, no partial
file); once there is room the same command succeeds.  Then a running daemon whose disk
fills: it keeps running, drops and counts what it cannot store, says so in
``rill node status``, and once room is back syncs what it dropped.  Also: ``settle
--out`` / ``receipt --out`` to a full disk (what was signed stays recorded, the error
says so, no partial file), and the daemon's ``--log-file`` on a full disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clitools import AFTER, OCT, fast_home, js, month_with_claims, rill
from procnet import RILL, ProcNode, wait_for

from rill.node import control
from rill.protocol.months import month_end
from rill.wallet.wallet import Wallet

DISK_BYTES = 8 * 1024 * 1024


class SmallDisk:
    """A tmpfs of DISK_BYTES mounted at ``path``; ``fill(leave)`` leaves that many bytes
    free (a filler file allocated for real), ``free()`` removes the filler."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bfree * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        self.free()
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            want = self.available() - leave
            if want > 0:
                os.posix_fallocate(fd, 0, want)
        finally:
            os.close(fd)
        assert self.available() <= leave

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root (CI runs as root)")
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755",
                           "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield SmallDisk(where)
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


# -- what "nothing changed" means --------------------------------------------------------


def snapshot(home: Path) -> dict[str, Any]:
    """Everything a command could change half-way, read once there is room again; and
    the checks that the home is whole (integrity, the chain)."""
    db = sqlite3.connect(home / "rill.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        out = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
               for t in ("log", "objects", "obligations", "settled", "relations")}
    finally:
        db.close()
    with Wallet.open(home) as w:
        w.verify_log()
    return out


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Error:" not in text.replace("rill: error:", "")


def levels() -> Iterator[int]:
    """Free bytes to try: none, then a page at a time up to 128 KiB (open, but no room to
    commit), then coarser."""
    yield from range(0, 128 * 1024, 8 * 1024)
    yield from range(128 * 1024, DISK_BYTES // 2, 32 * 1024)


def sweep(disk: SmallDisk, home: Path, run: Callable[[int], Any],
          unchanged: Callable[[], None] | None = None) -> tuple[list[int], int]:
    """Run ``run(level)`` at rising free space until it succeeds.  Every failure must be
    the disk-full refusal and leave ``home`` as it was.  Returns (levels that failed,
    the level that worked); the last run is repeated with room to spare."""
    before = snapshot(home) if (home / "rill.db").exists() else None
    failed = []
    for leave in levels():
        disk.fill(leave)
        out = run(leave)
        disk.free()
        if out.code == 0:
            return failed, leave
        assert out.code == 1, out
        err = json.loads(out.stdout)
        assert err["code"] == "disk-full", err
        assert "is full (" in err["error"] and "free some space and try again" in err["error"]
        no_traceback(out.stdout + out.stderr)
        if before is not None:
            assert snapshot(home) == before, f"changed half-way at {leave} bytes free"
        if unchanged is not None:
            unchanged()
        failed.append(leave)
    raise AssertionError("never succeeded")


def opened(failed: list[int]) -> bool:
    """Some failure came after the home was open (SQLite's WAL index takes 32 KiB)."""
    return any(leave >= 48 * 1024 for leave in failed)


# -- the commands ------------------------------------------------------------------------


def test_init_click_and_budget_on_a_full_disk(disk: SmallDisk) -> None:
    home = disk.path / "dora"

    def no_home() -> None:  # no key without its config and database, nothing at all
        assert not home.exists() or not any(home.iterdir()), list(home.iterdir())

    failed, _ = sweep(disk, home, lambda leave: rill(
        "init", "--name", "Dora", "--json", home=home, code=None), unchanged=no_home)
    assert failed[0] == 0 and opened(failed), failed
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text().replace("work_bits = 20", "work_bits = 0"))
    js("budget", "set", "5", "EUR", home=home)
    size = len(snapshot(home)["log"])

    failed, _ = sweep(disk, home, lambda leave: rill(
        "click", f"https://a.example/{leave}", "--json", home=home, code=None))
    # a click needs the WAL index (32 KiB) only when no earlier process left it: in one
    # full-suite run of many the click went through from 16 KiB free; every failure is
    # the clean refusal all the same (sweep checks it), and the budget sweep below
    # fails after the home was open
    assert failed[0] == 0, failed
    assert len(snapshot(home)["log"]) == size + 1
    failed_b, _ = sweep(disk, home, lambda leave: rill(
        "budget", "set", "7", "EUR", "--json", home=home, code=None))
    assert failed_b[0] == 0 and opened(failed_b), failed_b
    assert js("budget", home=home)["amount"] == 700
    assert len(snapshot(home)["log"]) == size + 2

    # the text form is one line on stderr, in a real process, no traceback
    disk.fill(0)
    done = subprocess.run([RILL, "click", "https://a.example/real"], capture_output=True,
                          text=True, env={**os.environ, "RILL_HOME": str(home),
                                          "RILL_NOW": str(OCT + 3600)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"rill: error: the disk holding {home} is full (")
    assert done.stderr.strip().endswith("nothing was recorded; free some space and try again")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    disk.free()
    assert js("click", "https://a.example/real", home=home)["new"]


def test_import_object_and_settle_on_a_full_disk(disk: SmallDisk) -> None:
    m = month_with_claims(disk.path)  # homes on the small disk
    alice = m["alice"]
    files = sorted(str(p) for p in m["out"].iterdir())
    # import-object: all of them in one transaction, or none
    failed, _ = sweep(disk, alice, lambda leave: rill(
        "import-object", *files, "--json", home=alice, now=AFTER, code=None))
    assert failed[0] == 0 and opened(failed), failed
    assert [c["state"] for c in js("claims", "--incoming", home=alice, now=AFTER)] == ["owed"]

    # settle: a second donor on the same disk settles October
    eve = disk.path / "eve"
    fast_home(eve, "Eve")
    js("budget", "set", "3", "EUR", home=eve)
    for i in range(30):
        js("click", f"https://b.example/{i}", "--creator", m["a"], home=eve)
    failed, _ = sweep(disk, eve, lambda leave: rill(
        "settle", "--month", "2026-10", "--yes", "--json", home=eve, now=AFTER, code=None))
    assert failed[0] == 0
    assert opened(failed), failed
    assert js("claims", "--outgoing", home=eve, now=AFTER)[0]["amount"] == 300


def test_export_and_import_on_a_full_disk(disk: SmallDisk, tmp_path: Path) -> None:
    # a donor with a long log, on a normal disk
    big = tmp_path / "big"
    fast_home(big, "Big")
    with Wallet.open(big) as w:
        w.set_budget(500, "EUR", OCT + 10)
        for i in range(400):
            w.click(f"https://c.example/post/{i:04d}", OCT + 20 + i)
    export = tmp_path / "big.rill"
    js("export", "--out", str(export), "--with-key", home=big)
    entries = 401

    # import into a new home on the small disk: a failure leaves no home behind
    new = disk.path / "restored"

    def no_home() -> None:
        assert not new.exists() or not any(new.iterdir()), list(new.iterdir())

    failed, _ = sweep(disk, new, lambda leave: rill(
        "import", str(export), "--json", home=new, code=None), unchanged=no_home)
    assert failed[0] == 0 and opened(failed), failed
    assert len(snapshot(new)["log"]) == entries

    # export from the home on the small disk to the small disk: whole or not at all
    out = disk.path / "out.rill"

    def no_file() -> None:
        assert sorted(p.name for p in disk.path.iterdir()) == ["restored"]

    failed, _ = sweep(disk, new, lambda leave: rill(
        "export", "--out", str(out), "--json", home=new, code=None), unchanged=no_file)
    assert failed[0] == 0 and opened(failed), failed
    ref = tmp_path / "ref.rill"
    js("export", "--out", str(ref), home=new)
    assert out.read_bytes() == ref.read_bytes()


# -- a running daemon ------------------------------------------------------------------


def test_a_daemon_whose_disk_fills_keeps_running(disk: SmallDisk, tmp_path: Path) -> None:
    start = month_end("2026-10") + 7200
    relay = ProcNode(tmp_path, "relay", start)
    node = ProcNode(disk.path, "node", start)  # its home on the small disk
    node.log = tmp_path / "node.log"           # its log not
    fast_home(relay.home)
    node_id = fast_home(node.home)

    def status(n: ProcNode = node) -> Any:  # over the control socket, in this process
        return control.call(n.home / control.SOCKET_NAME, "status")

    # a donor (no daemon) settles October for things of the node's creator
    dora = tmp_path / "dora"
    fast_home(dora, "Dora")
    js("budget", "set", "6", "EUR", home=dora)
    others = []
    for i in range(3):
        other = tmp_path / f"other{i}"
        others.append(fast_home(other))
    js("click", "https://node.example/a", "--creator", node_id, home=dora)
    for i, o in enumerate(others):
        js("click", f"https://other{i}.example/a", "--creator", o, home=dora)
    out = tmp_path / "settled"
    js("settle", "--month", "2026-10", "--yes", "--out", str(out), home=dora, now=AFTER)
    files = sorted(out.iterdir(), key=lambda p: (not p.name.startswith("settlement"), p.name))
    try:
        relay.start([])
        relay.wait_started()
        node.start([relay.addr])
        node.wait_started()
        wait_for(lambda: all(status(n)["mesh"].get("rill/1/settlements", 0)
                             for n in (relay, node)), 30, "the two nodes to mesh")
        assert status()["disk"]["full"] is False

        disk.fill(0)
        full_at = time.time()
        relay.rill("publish", *map(str, files))
        wait_for(lambda: status()["disk"]["not_stored"] >= 1, 30,
                 "the node to drop what it cannot store")
        st = status()
        assert node.proc is not None and node.proc.poll() is None
        d = st["disk"]
        assert d["full"] and d["full_since"] >= int(full_at) - 1 and d["free_bytes"] < 64 * 1024
        assert st["counters"]["not_stored"] == d["not_stored"] == d["not_stored_total"]
        text = subprocess.run([RILL, "node", "status"], env=node.env(), capture_output=True,
                              text=True, timeout=60)
        assert text.returncode == 0, text.stderr
        assert "FULL since" in text.stdout and "object(s) not stored" in text.stdout
        no_traceback(text.stderr)
        dropped = d["not_stored"]

        disk.free()
        wait_for(lambda: not status()["disk"]["full"], 30, "the node to see room again")
        last = status()["disk"]["last_full"]
        assert last["not_stored"] >= dropped  # (a sync may have dropped more since)
        # what it dropped comes back by sync: the settlement naming it and its claim
        wait_for(lambda: len(js("claims", "--incoming", home=node.home, now=AFTER)) == 1, 30,
                 "the dropped settlement and claim to come back by sync")
        assert node.proc is not None and node.proc.poll() is None
        assert "Traceback" not in node.log.read_text()
        assert snapshot(node.home)["settled"] == []
    finally:
        disk.free()
        for n in (node, relay):
            n.stop()


def test_the_log_file_on_a_full_disk(disk: SmallDisk, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    import logging

    from rill.node.logfile import LogFile

    path = disk.path / "node.log"
    handler = LogFile(str(path))
    log = logging.getLogger("rill.test.diskfull")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("before")
        disk.fill(0)
        for i in range(200):  # more than any buffer: the writes really fail
            log.warning("line %d %s", i, "x" * 200)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is full: log lines are dropped" in err, err
        assert handler.dropped > 0
        disk.free()
        log.warning("after")
        text = path.read_text()
        assert "before" in text and text.rstrip().endswith("after")
        assert "log line(s) were dropped: the disk holding the log was full" in text
        assert "Traceback" not in capsys.readouterr().err
    finally:
        log.removeHandler(handler)
        handler.close()


def test_settle_out_and_receipt_out_to_a_full_disk(disk: SmallDisk, tmp_path: Path) -> None:
    """The home has room, the output directory not: what was signed stays recorded, the
    error says so, no partial file is left, and the same command writes it later."""
    m = month_with_claims(tmp_path)
    eve = tmp_path / "eve"
    fast_home(eve, "Eve")
    js("budget", "set", "3", "EUR", home=eve)
    js("click", "https://alice.example/z", "--creator", m["a"], home=eve)
    out = disk.path / "settled"
    disk.fill(0)
    bad = rill("settle", "--month", "2026-10", "--yes", "--out", str(out), "--json",
               home=eve, now=AFTER, code=1).json()
    assert bad["code"] == "disk-full"
    assert bad["error"].startswith("2026-10 is settled (")
    assert "run `rill settle --month 2026-10 --out" in bad["error"]
    assert not out.exists() or not list(out.iterdir())
    disk.free()
    again = js("settle", "--month", "2026-10", "--yes", "--out", str(out), home=eve, now=AFTER)
    assert not again["new"] and len(again["files"]) == 3  # settlement, claim, sealed claim
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f).name for f in again["files"])

    # a creator's receipt: signed and recorded, the file written when there is room
    alice = m["alice"]
    js("import-object", *map(str, m["out"].iterdir()), home=alice, now=AFTER)
    claim = m["claims"][m["a"]]
    target = disk.path / "receipt.rill"
    disk.fill(0)
    bad = rill("receipt", claim, "--out", str(target), "--json", home=alice, now=AFTER,
               code=1).json()
    assert bad["code"] == "disk-full" and "is signed and recorded" in bad["error"]
    assert sorted(p.name for p in disk.path.iterdir()) == ["filler", "settled"]
    disk.free()
    ok = js("receipt", claim, "--out", str(target), home=alice, now=AFTER)
    assert bad["error"].startswith(f"the receipt {ok['receipt']} ")
    assert target.read_text().startswith("-----BEGIN")
