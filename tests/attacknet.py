"""A ring of `rill node run` processes to attack, and ways to look inside them afterwards.

Homes get deterministic identities (so a test can sign as a daemon) and a config.toml
with ``[network] work_bits`` and ``[node] disk_cap_mb``.  Inspection goes through the
control socket (raw JSON lines, no rill.node import), the CLI and each home's rill.db.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import nacl.signing
from attacker import peer_id_of_seed
from procnet import RILL, ProcNode, wait_for

from rill.protocol import messages as m
from rill.wallet.home import Home


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"rill attack net " + name.encode()).digest()


def control(home: Path, request: dict[str, Any] | bytes, timeout: float = 10.0) -> Any:
    """One raw request on a daemon's control socket: the decoded reply line, or None
    when the daemon closed the connection without answering."""
    line = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(home / "node.sock"))
        s.sendall(line)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf) if buf.strip() else None


class AttackNet:
    """``n`` daemons in a ring (each dials the one before it) on 127.0.0.1."""

    def __init__(self, base: Path, n: int, clock_start: int, *, work_bits: int = 8,
                 disk_cap_mb: int = 1) -> None:
        self.base = base
        self.clock_start = clock_start
        self.names = [f"n{i}" for i in range(n)]
        self.nodes = {name: ProcNode(base, name, clock_start) for name in self.names}
        for name, node in self.nodes.items():
            Home(node.home).create(name, seed_of(name))
            config = node.home / "config.toml"
            text = config.read_text()
            if "work_bits = " in text:  # the default config has a [network] table
                text = text.replace("work_bits = 20", f"work_bits = {work_bits}")
            else:
                text += f"\n[network]\nwork_bits = {work_bits}\n"
            config.write_text(text + f"\n[node]\ndisk_cap_mb = {disk_cap_mb}\n")
            node.addr = (f"/ip4/127.0.0.1/tcp/{node.port}/p2p/"
                         f"{peer_id_of_seed(seed_of(name))}")

    # -- life cycle ---------------------------------------------------------------------

    def neighbours(self, name: str) -> list[str]:
        i = self.names.index(name)
        return sorted({self.names[i - 1], self.names[(i + 1) % len(self.names)]} - {name})

    def start(self, names: list[str] | None = None) -> None:
        """Start daemons in parallel, then have each dial its ring neighbours through
        the control socket (dialling peers that are not listening yet would land them
        in py-libp2p's negative dial cache for a while)."""
        names = names or self.names
        for name in names:
            self.nodes[name].start([])
        for name in names:
            self.nodes[name].wait_started()
        for name in names:
            for other in self.neighbours(name):
                if other not in names or self.names.index(other) < self.names.index(name):
                    self.ctl(name, "connect", timeout=30, addr=self.nodes[other].addr)
        self.wait_connected()

    def wait_connected(self, timeout: float = 60) -> None:
        want = min(2, len(self.names) - 1)
        for name in self.names:
            wait_for(lambda name=name: self.status(name)["peers"] >= want, timeout,
                     f"{name} to have {want} gossip peers")

    def dead(self) -> list[str]:
        return [n for n, node in self.nodes.items()
                if node.proc is None or node.proc.poll() is not None]

    def restart_dead(self) -> list[str]:
        """Bring back daemons an earlier test killed; return their names."""
        gone = self.dead()
        for name in gone:
            self.nodes[name].proc = None
        if gone:
            self.start(gone)
        return gone

    def revive(self, name: str) -> None:
        """Restart a daemon that died or stopped answering (wait for it to exit first)."""
        node = self.nodes[name]
        if node.proc is not None and node.proc.poll() is None:
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        self.restart_dead()

    def stop(self, timeout: float = 8.0) -> dict[str, int]:
        """SIGTERM every daemon at once; kill those still running after ``timeout``."""
        running = {n: node.proc for n, node in self.nodes.items() if node.proc is not None}
        for proc in running.values():
            proc.terminate()
        deadline = time.monotonic() + timeout
        codes = {}
        for name, proc in running.items():
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
            self.nodes[name].proc = None
        return codes

    # -- looking inside -----------------------------------------------------------------

    def signing_key(self, name: str) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(seed_of(name))

    def identity(self, name: str) -> bytes:
        return bytes(self.signing_key(name).verify_key)

    def peer_id(self, name: str) -> str:
        return self.nodes[name].addr.rsplit("/", 1)[1]

    def pid(self, name: str) -> int:
        proc = self.nodes[name].proc
        assert proc is not None
        return proc.pid

    def ctl(self, name: str, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        reply = control(self.nodes[name].home, {"cmd": cmd, **args}, timeout)
        if not reply or not reply.get("ok"):
            raise AssertionError(f"{name}: control {cmd} failed: {reply}")
        return reply["result"]

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.ctl(name, "status"))

    def counters(self) -> dict[str, dict[str, int]]:
        return {n: self.try_counters(n) for n in self.names}

    def cli(self, name: str, *args: str, now: int | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([RILL, *args], env=self.nodes[name].env(now),
                              capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{name}: rill {' '.join(args)} exited {proc.returncode}:"
                                 f" {proc.stderr[-2000:]}")
        return proc

    def cli_json(self, name: str, *args: str, now: int | None = None) -> Any:
        return json.loads(self.cli(name, *args, "--json", now=now).stdout)

    def alive_problems(self) -> list[str]:
        """Why any daemon is not healthy: exited, or `rill node status --json` fails."""
        out = []
        for name, node in self.nodes.items():
            if node.proc is None or node.proc.poll() is not None:
                out.append(f"{name} exited ({node.proc and node.proc.returncode}); log tail:\n"
                           + self.log_tail(name))
                continue
            proc = self.cli(name, "node", "status", "--json", check=False)
            if proc.returncode != 0:
                out.append(f"{name}: rill node status failed: {proc.stderr.strip()}")
        return out

    def log_tail(self, name: str, n: int = 1200) -> str:
        return self.nodes[name].log.read_text(errors="replace")[-n:]

    def log_mark(self) -> dict[str, int]:
        return {n: node.log.stat().st_size if node.log.exists() else 0
                for n, node in self.nodes.items()}

    def log_since(self, name: str, mark: dict[str, int]) -> str:
        with open(self.nodes[name].log, "rb") as fh:
            fh.seek(mark.get(name, 0))
            return fh.read().decode(errors="replace")

    def db(self, name: str) -> sqlite3.Connection:
        path = self.nodes[name].home / "rill.db"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)

    def object_ids(self, name: str) -> set[bytes]:
        db = self.db(name)
        try:
            return {bytes(r[0]) for r in db.execute("SELECT id FROM objects")}
        finally:
            db.close()

    def has(self, name: str, oid: bytes) -> bool:
        db = self.db(name)
        try:
            return db.execute("SELECT count(*) FROM objects WHERE id = ?",
                              (oid,)).fetchone()[0] == 1
        finally:
            db.close()

    def objects(self, name: str, type_: str) -> list[bytes]:
        db = self.db(name)
        try:
            return [bytes(r[0]) for r in db.execute("SELECT raw FROM objects WHERE type = ?",
                                                    (type_,))]
        finally:
            db.close()

    def months_stored(self, name: str) -> set[str]:
        db = self.db(name)
        try:
            return {r[0] for r in db.execute("SELECT DISTINCT month FROM objects "
                                             "WHERE month IS NOT NULL")}
        finally:
            db.close()

    def equivocation_proofs(self, name: str, donor: bytes, month: str) -> list[bytes]:
        out = []
        for raw in self.objects(name, "equivocation"):
            proof = m.decode(raw, m.Equivocation)
            if proof.body.donor == donor and proof.body.month == month:
                out.append(raw)
        return out

    def peer_row(self, name: str, peer_id: str) -> dict[str, Any] | None:
        rows = self.cli_json(name, "peers")
        return next((r for r in rows if r["peer_id"] == peer_id), None)

    def cut_off(self, name: str, peer_id: str) -> bool:
        """`rill peers --json` shows the peer blacklisted, or no longer lists it."""
        row = self.peer_row(name, peer_id)
        return row is None or bool(row.get("blacklisted"))

    def try_counters(self, name: str) -> dict[str, int]:
        """A daemon's counters, or {} when it does not answer (dead)."""
        try:
            return dict(self.status(name)["counters"])
        except (OSError, AssertionError, ValueError):
            return {}

    def wait_stable(self, names: list[str], keys: tuple[str, ...], quiet: float = 2.0,
                    timeout: float = 30.0) -> dict[str, dict[str, int]]:
        """Wait until the named counters stop moving for ``quiet`` seconds (a daemon
        that does not answer counts as stable, with no counters)."""
        deadline = time.monotonic() + timeout
        last: dict[str, dict[str, int]] = {}
        since = time.monotonic()
        while True:
            now = {}
            for n in names:
                c = self.try_counters(n)
                now[n] = {k: c[k] for k in keys if k in c}
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet or time.monotonic() > deadline:
                return now
            time.sleep(0.25)
