"""In-process test network: real Daemons (real libp2p hosts on 127.0.0.1) in one trio run."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from rill.node.clock import ManualClock
from rill.node.daemon import Daemon, NodeConfig
from rill.wallet.wallet import Wallet


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def listening(port: int) -> bool:
    with open("/proc/net/tcp") as fh:
        for line in fh.read().splitlines()[1:]:
            f = line.split()
            if int(f[1].split(":")[1], 16) == port and f[3] == "0A":
                return True
    return False


def make_home(base: Path, name: str) -> Path:
    path = base / name
    Wallet.create(path, name, hashlib.sha256(b"node " + name.encode()).digest()).close()
    return path


def config(port: int, **kw: Any) -> NodeConfig:
    # the DHT rendezvous off unless asked: tests build the topology they mean to test
    cfg = NodeConfig(listen=[f"/ip4/127.0.0.1/tcp/{port}"], grace=60, housekeeping=0.2,
                     sync_interval=3600.0, dashboard_port=0, rendezvous=False)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


class Net:
    def __init__(self, nursery: trio.Nursery, base: Path, clock: ManualClock) -> None:
        self.nursery = nursery
        self.base = base
        self.clock = clock
        self.nodes: dict[str, Daemon] = {}
        self.scopes: dict[str, trio.CancelScope] = {}
        self.ports: dict[str, int] = {}

    async def start(self, name: str, **kw: Any) -> Daemon:
        home = self.base / name
        if not home.exists():
            make_home(self.base, name)
        port = self.ports.setdefault(name, free_port())
        daemon = Daemon(home, config(port, **kw), self.clock)
        scope = trio.CancelScope()

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await daemon.run(task_status=task_status)

        await self.nursery.start(run)
        self.nodes[name], self.scopes[name] = daemon, scope
        return daemon

    async def stop(self, name: str) -> None:
        self.scopes.pop(name).cancel()
        daemon = self.nodes.pop(name)
        with trio.fail_after(10):
            while daemon.p2p is not None:
                await trio.sleep(0.01)

    async def connect(self, a: str, b: str) -> None:
        """a dials b and both see each other as gossip peers on every topic."""
        na, nb = self.nodes[a], self.nodes[b]
        assert na.p2p is not None and nb.p2p is not None
        await na.p2p.connect(nb.p2p.addrs()[0])
        with trio.fail_after(10):
            for x, y in ((na, nb), (nb, na)):
                assert x.p2p is not None and y.p2p is not None
                await x.p2p.pubsub.wait_for_peer(y.p2p.peer_id, timeout=10)

    def wallet(self, name: str) -> Wallet:
        """A second connection to a node's home (as the CLI would open it)."""
        return Wallet.open(self.base / name)


@asynccontextmanager
async def network(base: Path, start: int) -> AsyncIterator[Net]:
    clock = ManualClock(start)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, base, clock)
        try:
            yield net
        finally:
            for name in list(net.scopes):
                await net.stop(name)


async def eventually(pred: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    with trio.fail_after(timeout):
        while True:
            result = pred()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await trio.sleep(0.05)


def thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


__all__ = ["Net", "eventually", "free_port", "listening", "network", "os"]
