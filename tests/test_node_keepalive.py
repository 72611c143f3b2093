"""Yamux keepalive (node/keepalive.py, SPEC §11.1 "Keepalive"): the dialling end pings a
connection it heard nothing on for an interval, the accepting end never pings.  The
loop runs against a stand-in connection on trio's virtual clock (hours in no time),
then once on two real hosts."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from libp2p.stream_muxer.yamux import yamux as libp2p_yamux
from test_node_libp2p_patches import gossip, two_hosts

from rill.node import keepalive

HOUR = 3600.0


class Reader:
    """A secured connection's read side: whatever it is asked for."""

    async def read(self, n: int | None = None) -> bytes:
        return bytes(n or 1)


class Conn:
    """What `keepalive._keepalive` uses of a py-libp2p Yamux connection."""

    def __init__(self, initiator: bool) -> None:
        self.is_initiator_value = initiator
        self.secured_conn = Reader()
        self.event_shutting_down = trio.Event()
        self.peer_id = "peer"
        self._ping_id = 0
        self._ping_event = trio.Event()
        self._ping_sent_time = 0.0
        self.pings: list[float] = []
        self.t0 = trio.current_time()

    def rel(self) -> list[float]:
        return [round(t - self.t0, 1) for t in self.pings]

    async def _write_frame(self, data: bytes) -> None:
        _, typ, flags, _, _ = struct.unpack(libp2p_yamux.YAMUX_HEADER_FORMAT, data[:12])
        assert (typ, flags) == (libp2p_yamux.TYPE_PING, libp2p_yamux.FLAG_SYN)
        self.pings.append(trio.current_time())

    async def hear(self) -> None:
        """A frame arrives (read the way Yamux's reader reads, through the patch)."""
        await keepalive._read_exactly_heard(self.secured_conn, 12)


@pytest.fixture
def public() -> Iterator[None]:
    keepalive.set_private_pings(False)
    yield
    keepalive.set_private_pings(False)


async def run_for(conn: Conn, seconds: float, during: Any = None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keepalive._keepalive, conn)
        if during is not None:
            await during()
        await trio.sleep_until(conn.t0 + seconds)
        conn.event_shutting_down.set()


async def test_idle_dialler_pings_once_an_interval_and_listener_never(
        autojump_clock: Any, public: None) -> None:
    dialler, listener = Conn(True), Conn(False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_for, dialler, 3 * HOUR)
        nursery.start_soon(run_for, listener, 3 * HOUR)
    # the first ping for the round trip, then one each 20 minutes of silence
    assert dialler.rel() == [0.5] + [0.5 + 1200 * i for i in range(1, 9)]
    assert listener.pings == []


async def test_a_connection_that_carries_traffic_is_not_pinged(
        autojump_clock: Any, public: None) -> None:
    conn = Conn(True)

    async def traffic() -> None:
        for _ in range(12):  # a frame every 15 minutes for 3 hours
            await trio.sleep(900)
            await conn.hear()

    await run_for(conn, 3 * HOUR + 1, traffic)
    assert conn.rel() == [0.5]
    # the peer's own ping counts as heard: its answer went out, the mapping is fresh


async def test_private_interval_takes_effect_on_open_connections(
        autojump_clock: Any, public: None) -> None:
    conn = Conn(True)

    async def go_private() -> None:
        await trio.sleep(1300)  # one 20-minute ping done (at 1200.5), then found private
        keepalive.set_private_pings(True)

    await run_for(conn, 2000, go_private)
    rel = conn.rel()
    assert rel[:2] == [0.5, 1200.5]
    # after 1300 s: due 4 minutes after the last ping, seen within one 4-minute wake
    assert 1440.5 <= rel[2] <= 1300 + 240 + 1 and len(rel) >= 3
    gaps = [b - a for a, b in itertools.pairwise(rel[2:])]
    assert gaps and all(abs(g - 240) < 1 for g in gaps)


async def test_a_failed_ping_ends_the_loop_quietly(autojump_clock: Any, public: None) -> None:
    conn = Conn(True)

    async def broken(data: bytes) -> None:
        raise trio.BrokenResourceError

    conn._write_frame = broken  # type: ignore[method-assign]
    with trio.fail_after(10):
        await keepalive._keepalive(conn)  # type: ignore[arg-type]


async def test_real_connection_only_the_dialler_pings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[bool, int]] = []
    original = libp2p_yamux.Yamux._write_frame

    async def counting(self: libp2p_yamux.Yamux, data: bytes) -> None:
        _, typ, flags, _, _ = struct.unpack(libp2p_yamux.YAMUX_HEADER_FORMAT, data[:12])
        if typ == libp2p_yamux.TYPE_PING:
            sent.append((self.is_initiator_value, flags))
        await original(self, data)

    monkeypatch.setattr(libp2p_yamux.Yamux, "_write_frame", counting)
    async with two_hosts() as (a, b):  # a dialled b
        await gossip(a, b, 5)
        with trio.fail_after(10):
            while (True, libp2p_yamux.FLAG_SYN) not in sent or (
                    False, libp2p_yamux.FLAG_ACK) not in sent:
                await trio.sleep(0.05)
        conn = a.host.get_network().get_connections(b.peer_id)[0]
        assert keepalive.heard_at(conn.muxed_conn.secured_conn) is not None
    # the dialler's first ping, answered; the listener sent no ping of its own
    assert (False, libp2p_yamux.FLAG_SYN) not in sent
    assert sent.count((True, libp2p_yamux.FLAG_SYN)) == 1
