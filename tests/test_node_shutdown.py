"""A node's libp2p host closes its connections together, within a bound
(node/host.py ``close_host``): py-libp2p 0.8.1 closed them one after another, 0.2 s each,
so a node with 50 connections took 10 s to stop."""

from __future__ import annotations

import hashlib
import logging
from contextlib import AsyncExitStack

import pytest
import trio
from libp2p.network.connection.swarm_connection import SwarmConn
from nodes import free_port

from rill.node import host as h


async def _hub_and_spokes(stack: AsyncExitStack, spokes: int) -> tuple[h.P2P, list[h.P2P]]:
    hub = await stack.enter_async_context(
        h.running(hashlib.sha256(b"hub").digest(), [f"/ip4/127.0.0.1/tcp/{free_port()}"]))
    others = []
    for i in range(spokes):
        p = await stack.enter_async_context(
            h.running(hashlib.sha256(b"spoke %d" % i).digest(),
                      [f"/ip4/127.0.0.1/tcp/{free_port()}"]))
        await p.connect(hub.addrs()[0])
        others.append(p)
    with trio.fail_after(10):
        while len(hub.host.get_network().connections) < spokes:
            await trio.sleep(0.05)
    return hub, others


async def test_a_hosts_connections_close_together(monkeypatch: pytest.MonkeyPatch) -> None:
    closing, most = [0], [0]
    original = SwarmConn.close

    async def counted(self: SwarmConn) -> None:
        closing[0] += 1
        most[0] = max(most[0], closing[0])
        try:
            await original(self)
        finally:
            closing[0] -= 1

    monkeypatch.setattr(SwarmConn, "close", counted)
    async with AsyncExitStack() as stack:
        hub, _ = await _hub_and_spokes(stack, 5)
        await h.close_host(hub.host)
        assert hub.host.get_network().connections == {}
        assert most[0] >= 5  # all five at once, not one after another (0.2 s each)


async def test_a_close_that_hangs_does_not_hold_the_nodes_stop(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def hangs(self: SwarmConn) -> None:  # a write to a peer that no longer reads
        await trio.sleep_forever()

    async with AsyncExitStack() as stack:
        hub, _ = await _hub_and_spokes(stack, 2)
        monkeypatch.setattr(SwarmConn, "close", hangs)
        monkeypatch.setattr(h, "CLOSE_S", 0.5)
        with caplog.at_level(logging.WARNING, logger="rill.node.host"):
            with trio.fail_after(5):
                await h.close_host(hub.host)
        assert "closing the libp2p host took over 0.5 s" in caplog.text
        monkeypatch.undo()  # the rest of the stack closes as usual
