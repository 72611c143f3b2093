"""A test network of `rill node run` processes on 127.0.0.1 (separate OS processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nodes import free_port

RILL = str(Path(sys.executable).parent / "rill")


class ProcNode:
    def __init__(self, base: Path, name: str, clock_start: int) -> None:
        self.name = name
        self.home = base / name
        self.port = free_port()
        self.clock_start = clock_start
        self.proc: subprocess.Popen[str] | None = None
        self.addr = ""
        self.id = ""
        self.log = base / f"{name}.log"

    def env(self, now: int | None = None) -> dict[str, str]:
        env = {**os.environ, "RILL_HOME": str(self.home)}
        if now is not None:
            env["RILL_NOW"] = str(now)
        return env

    def start(self, bootstrap: list[str], dashboard_port: int = 0) -> None:
        args = [RILL, "node", "run", "--json", "--listen", f"/ip4/127.0.0.1/tcp/{self.port}",
                "--clock", f"manual:{self.clock_start}", "--grace", "60",
                "--dashboard-port", str(dashboard_port),
                "--log-level", "info"]
        for b in bootstrap:
            args += ["--bootstrap", b]
        with open(self.log, "a") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, env=self.env(), stdout=subprocess.PIPE,
                                         stderr=log, text=True)

    def wait_started(self, timeout: float = 60) -> None:
        assert self.proc is not None
        event = read_started(self.proc, self.name, self.log, timeout)
        self.addr = event["addrs"][0]
        self.id = event["id"]

    def rill(self, *args: str, now: int | None = None, check: bool = True) -> Any:
        proc = subprocess.run([RILL, *args, "--json"], env=self.env(now), capture_output=True,
                              text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: rill {' '.join(args)}: {proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def stop(self) -> int:
        code = terminate(self.proc)
        self.proc = None
        return code


def read_started(proc: subprocess.Popen[str], name: str, log: Path,
                 timeout: float = 60) -> dict[str, Any]:
    """The "started" event `rill node run --json` prints first (its log's tail if the
    process ended before printing it)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
    event = json.loads(line)
    assert event["event"] == "started"
    return dict(event)


def terminate(proc: subprocess.Popen[str] | None) -> int:
    """SIGTERM, then SIGKILL after 30 s; the exit code (0 when there was no process)."""
    if proc is None:
        return 0
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
