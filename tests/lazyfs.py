"""LazyFS for power-loss tests: find or build it once, mount it, cut the power.

LazyFS (https://github.com/dsrhaslab/lazyfs, MIT) is a FUSE file system that keeps
every write in its own page cache until the writer fsyncs it.  ``lazyfs::clear-cache``
drops whatever was not fsynced: what a power cut does to the OS page cache (a SIGKILL
does not: the kernel still writes the dead process's data out).  ``lazyfs::crash``
kills LazyFS itself just before (or after) a chosen operation on a chosen file: a power
cut at an exact point, e.g. before the fsync that would have made a commit durable.

Where the sources come from, first found wins:

* ``$RILL_LAZYFS``: a LazyFS source tree with ``build.sh`` (the vendored copy's offline
  build) or a built ``lazyfs`` binary (its ``libpcache.so`` beside it);
* ``../shared/lazyfs`` beside the repository (the project's shared folder), or beside
  the main checkout when the repository is a git worktree.

A clean clone elsewhere (CI) has neither: the tests skip and say so.  They also skip
when not root or without ``/dev/fuse``.  The binary is built once per source version
into ``$XDG_CACHE_HOME/rill-tests/`` (``~/.cache`` by default; ``$RILL_TEST_CACHE``
overrides); the first build takes a minute or two (it installs the Debian build deps
as root when missing).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MOUNT_TIMEOUT = 20.0
CUT_TIMEOUT = 20.0


def _source_candidates() -> list[Path]:
    out = []
    env = os.environ.get("RILL_LAZYFS")
    if env:
        out.append(Path(env).expanduser())
    out.append(REPO.parent / "shared" / "lazyfs")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        common = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--git-common-dir"],
                                capture_output=True, text=True, timeout=10)
        if common.returncode == 0 and common.stdout.strip():
            main = (REPO / common.stdout.strip()).resolve().parent  # the main checkout
            out.append(main.parent / "shared" / "lazyfs")
    return list(dict.fromkeys(out))


def _tree_hash(src: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.is_file() and "build" not in p.relative_to(src).parts:
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    env = os.environ.get("RILL_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "rill-tests"


def find_lazyfs() -> tuple[Path | None, str]:
    """(the lazyfs binary, "") or (None, why the power-loss tests cannot run here)."""
    if not os.path.exists("/dev/fuse"):
        return None, "no /dev/fuse here: LazyFS (FUSE) cannot mount"
    if os.geteuid() != 0:
        return None, "not root: mounting LazyFS (FUSE, allow_other) needs root"
    if not shutil.which("fusermount3") and not shutil.which("umount"):
        return None, "neither fusermount3 nor umount is installed"
    tried = []
    for cand in _source_candidates():
        tried.append(str(cand))
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand, ""
        if (cand / "build.sh").is_file():
            return _build(cand)
    return None, ("LazyFS not found (set RILL_LAZYFS to its source tree or binary; looked in "
                  + ", ".join(tried) + ")")


def _build(src: Path) -> tuple[Path | None, str]:
    out = _cache_dir() / f"lazyfs-{_tree_hash(src)}"
    binary = out / "lazyfs"
    if binary.is_file():
        return binary, ""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "lazyfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it right now
        if binary.is_file():
            return binary, ""
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(["sh", str(src / "build.sh"), str(tmp)], capture_output=True,
                              text=True, timeout=1800)
        if proc.returncode != 0 or not (tmp / "lazyfs").is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"building LazyFS from {src} failed: {' / '.join(tail)}"
        tmp.rename(out)
    return binary, ""


CONFIG = """\
[faults]
fifo_path="{fifo}"
fifo_path_completed="{done}"
[cache]
apply_eviction=false
[cache.simple]
custom_size="{cache_mb}mb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile=""
"""


class LazyFS:
    """One LazyFS mount: files live in ``root`` (the "disk"), are used through ``mnt``."""

    def __init__(self, binary: Path, base: Path, cache_mb: int = 512) -> None:
        """``cache_mb``: LazyFS's page cache, allocated up front (what it can hold
        unsynced)."""
        self.binary = binary
        self.base = base
        self.root = base / "root"
        self.mnt = base / "mnt"
        self.fifo = base / "faults.fifo"
        self.done = base / "done.fifo"
        self.config = base / "lazyfs.toml"
        self.log = base / "lazyfs.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._done_fd: int | None = None
        self.mounts = 0
        for d in (self.root, self.mnt):
            d.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(fifo=self.fifo, done=self.done,
                                             cache_mb=cache_mb))

    def mount(self) -> None:
        assert self.proc is None
        for f in (self.fifo, self.done):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
            os.mkfifo(f)
        # a reader on the "completed" FIFO before LazyFS opens it for writing (it blocks)
        self._done_fd = os.open(self.done, os.O_RDONLY | os.O_NONBLOCK)
        env = {**os.environ, "LD_LIBRARY_PATH": str(self.binary.parent)}
        with open(self.log, "ab") as log:
            # the config path is relative: LazyFS ignores --config-path when the path
            # holds "-o" anywhere (as in /tmp/pytest-of-root/...)
            self.proc = subprocess.Popen(
                [str(self.binary), str(self.mnt), "--config-path", self.config.name,
                 "-o", "allow_other", "-o", "modules=subdir", "-o", f"subdir={self.root}",
                 "-f"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.base)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"LazyFS did not mount: {self.log.read_text()[-2000:]}")
            time.sleep(0.01)
        self.mounts += 1

    def command(self, text: str) -> None:
        # LazyFS reads its FIFO 100 bytes at a time and parses each read alone: a longer
        # command is cut short (a fault's attributes silently lost)
        if len(text) + 1 > 100:
            raise ValueError(f"a LazyFS command must be under 100 bytes: {text!r}")
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while True:
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                # ENXIO: nobody reads the FIFO yet (LazyFS opens it a moment after the
                # mount appears; a trial armed right after a reboot met that)
                if exc.errno != errno.ENXIO or self.crashed() \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        try:
            os.write(fd, (text + "\n").encode())  # one write per command (LazyFS reads so)
        finally:
            os.close(fd)

    def cut(self) -> None:
        """The power cut: every write not fsynced is gone (returns once LazyFS did it)."""
        assert self._done_fd is not None
        self.command("lazyfs::clear-cache")
        deadline = time.monotonic() + CUT_TIMEOUT
        got = b""
        while b"finished::clear-cache" not in got:
            with contextlib.suppress(BlockingIOError):
                got += os.read(self._done_fd, 256)
            if time.monotonic() > deadline:
                raise AssertionError("LazyFS did not confirm the clear-cache")
            time.sleep(0.005)

    def crash_at(self, op: str, from_rgx: str = "", to_rgx: str = "",
                 timing: str = "before") -> None:
        """Arm a crash: LazyFS dies at the next ``op`` on a matching path (unsynced data
        lost with it)."""
        cmd = f"lazyfs::crash::timing={timing}::op={op}"
        if from_rgx:
            cmd += f"::from_rgx={from_rgx}"
        if to_rgx:
            cmd += f"::to_rgx={to_rgx}"
        self.command(cmd)

    def crashed(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def unmount(self) -> None:
        """Unmount (after a cut or a crash: nothing unsynced is left to write)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # a crashed LazyFS leaves a dead mount ("transport endpoint is not connected")
        if os.path.ismount(self.mnt) or _dead_mount(self.mnt):
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        self.proc = None
        if self._done_fd is not None:
            os.close(self._done_fd)
            self._done_fd = None

    def reboot(self) -> None:
        """Unmount and mount again: LazyFS starts with what reached ``root`` only."""
        self.unmount()
        self.mount()


def _dead_mount(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == 107  # ENOTCONN
    return False


@contextlib.contextmanager
def mounted(binary: Path, base: Path) -> Iterator[LazyFS]:
    fs = LazyFS(binary, base)
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()
