"""A worker process driven by JSON lines, shared by the scale simulations
(tests/scale/sim.py, tests/scale/dhtsim.py)."""

from __future__ import annotations

import json
import subprocess
from typing import Any


class Pipe:
    """A worker process driven by JSON lines (tests/scale/worker.py ``serve``)."""

    p: subprocess.Popen[str]
    err: Any

    def do(self, cmd: dict[str, Any]) -> Any:
        self.send(cmd)
        return self.recv()

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()

    def recv(self) -> Any:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.p.pid} ended (see {self.err.name})")
        r = json.loads(line)
        if "error" in r:
            raise RuntimeError(f"worker {self.p.pid}: {r['error']}")
        return r["ok"]


def all_do(procs: list[Any], cmds: list[dict[str, Any]]) -> list[Any]:
    for p, c in zip(procs, cmds, strict=True):
        p.send(c)
    return [p.recv() for p in procs]
