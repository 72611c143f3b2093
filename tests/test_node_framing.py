"""Fewer frames per stream opened (node/framing.py, SPEC §11.5 "Stream opening"): SYN and
ACK ride on the first data frame, the dialler proposes with its multistream header, a
listener that got both answers header and echo at once.  Against a stand-in connection,
between two real hosts, and with a plain py-libp2p host in another process (none of this
module's changes), both ways."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from libp2p.stream_muxer.yamux import yamux as libp2p_yamux
from libp2p.utils import encode_delim
from nodes import free_port

from rill.node import framing
from rill.node import host as h
from rill.node.upkeep import busy

SYN, ACK, FIN = libp2p_yamux.FLAG_SYN, libp2p_yamux.FLAG_ACK, libp2p_yamux.FLAG_FIN
DATA, WUPD = libp2p_yamux.TYPE_DATA, libp2p_yamux.TYPE_WINDOW_UPDATE
ECHO = "/rill-test/echo/1.0.0"


def frame(typ: int, flags: int, sid: int, payload: bytes = b"", length: int | None = None
          ) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(framing.HEADER, 0, typ, flags, sid, n) + payload


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The Yamux frames in one write: (type, flags, stream, payload)."""
    out = []
    while data:
        _, typ, flags, sid, n = struct.unpack(framing.HEADER, data[:framing.HEADER_SIZE])
        body = n if typ == DATA else 0
        out.append((typ, flags, sid, data[framing.HEADER_SIZE:framing.HEADER_SIZE + body]))
        data = data[framing.HEADER_SIZE + body:]
    return out


class Secured:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)


class Conn:
    """What py-libp2p's Yamux._write_frame uses of its connection."""

    def __init__(self) -> None:
        self._write_lock = trio.Lock()
        self.secured_conn = Secured()
        self.is_initiator_value = True
        self.streams: dict[int, object] = {}


async def test_syn_and_ack_ride_on_the_first_data_frame_or_go_just_before_another() -> None:
    c = Conn()
    await framing._write_frame(c, frame(WUPD, SYN, 1))
    await framing._write_frame(c, frame(WUPD, ACK, 2))
    assert c.secured_conn.writes == []  # held back
    await framing._write_frame(c, frame(DATA, 0, 1, b"hello"))
    await framing._write_frame(c, frame(WUPD, FIN, 2))  # not a plain data frame
    await framing._write_frame(c, frame(DATA, 0, 1, b"again"))
    await framing._write_frame(c, frame(libp2p_yamux.TYPE_PING, SYN, 0, length=7))
    assert [frames(w) for w in c.secured_conn.writes] == [
        [(DATA, SYN, 1, b"hello")],
        [(WUPD, ACK, 2, b""), (WUPD, FIN, 2, b"")],  # one write, the ACK first
        [(DATA, 0, 1, b"again")],
        [(libp2p_yamux.TYPE_PING, SYN, 0, b"")],
    ]
    # a window update with an increment, or a frame with other flags, is never held
    await framing._write_frame(c, frame(WUPD, SYN, 3, length=1000))
    await framing._write_frame(c, frame(DATA, FIN, 5, b"x"))
    assert len(c.secured_conn.writes) == 6


async def test_held_flags_are_bounded_and_streams_gone_are_forgotten() -> None:
    c = Conn()
    for sid in range(1, 2 * framing.MAX_HELD, 2):  # streams opened, never written to
        c.streams[sid] = object()
        await framing._write_frame(c, frame(WUPD, SYN, sid))
    assert c.secured_conn.writes == []
    await framing._write_frame(c, frame(WUPD, SYN, 9999))  # full: written at once
    assert [frames(w) for w in c.secured_conn.writes] == [[(WUPD, SYN, 9999, b"")]]
    c.streams.clear()  # those streams are gone: their flags are dropped, room again
    await framing._write_frame(c, frame(WUPD, SYN, 10001))
    assert len(c.secured_conn.writes) == 1
    assert framing._held[c] == {10001: SYN}


async def echo(stream: Any) -> None:
    data = await stream.read(100)
    await stream.write(b"echo:" + data)
    await stream.close()


async def test_a_stream_opens_in_one_frame_each_way(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[bool, bytes]] = []
    write = framing._originals["write_frame"]

    async def recording(self: Any, data: bytes) -> None:
        sent.append((self.is_initiator_value, data))
        await write(self, data)

    async with AsyncExitStack() as stack:
        a, b = [await stack.enter_async_context(h.running(
            hashlib.sha256(b"framing %d" % i).digest(), [f"/ip4/127.0.0.1/tcp/{free_port()}"]))
            for i in range(2)]
        b.host.set_stream_handler(ECHO, echo)
        await a.connect(b.addrs()[0])
        await a.pubsub.wait_for_peer(b.peer_id, timeout=10)
        monkeypatch.setitem(framing._originals, "write_frame", recording)
        with trio.fail_after(10):
            stream = await a.host.new_stream(b.peer_id, [ECHO])
            await stream.write(b"hi")
            assert await stream.read(100) == b"echo:hi"
            await stream.close()
            # nothing left open but GossipSub's streams (node/upkeep.py would keep a
            # connection with another stream open for ever)
            for x, y in ((a, b), (b, a)):
                conn = x.host.get_network().get_connections(y.peer_id)[0]
                while busy(conn):
                    await trio.sleep(0.05)
    sid = stream.muxed_stream.stream_id
    mine = [(dialler, f) for dialler, w in sent for f in frames(w) if f[2] == sid]
    hello = encode_delim(framing.MULTISTREAM.encode()) + encode_delim(ECHO.encode())
    assert mine[:2] == [(True, (DATA, SYN, sid, hello)), (False, (DATA, ACK, sid, hello))]
    assert not [f for _, f in mine if f[0] == WUPD and f[1] in (SYN, ACK)]


PLAIN = r"""
import sys, trio, multiaddr
from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr

async def echo(stream):
    data = await stream.read(100)
    await stream.write(b"plain:" + data)
    await stream.close()

async def main():
    host = new_host()
    host.set_stream_handler("/plain/echo/1.0.0", echo)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        print(f"{host.get_addrs()[0]}", flush=True)
        stdin = trio.lowlevel.FdStream(0)
        line = b""
        while not line.endswith(b"\n"):
            line += await stdin.receive_some(1000)
        info = info_from_p2p_addr(multiaddr.Multiaddr(line.decode().strip()))
        await host.connect(info)
        for protocols in (["/rill-test/echo/1.0.0"],
                          ["/not/here/1.0.0", "/rill-test/echo/1.0.0"]):
            s = await host.new_stream(info.peer_id, protocols)
            await s.write(b"from plain")
            print((await s.read(100)).decode(), flush=True)
            await s.close()
        while await stdin.receive_some(1000):
            pass

trio.run(main)
"""


async def test_both_ways_with_a_plain_py_libp2p_host() -> None:
    """Its dialler sends the header alone and waits; its listener answers the header at
    once, then the proposal: each step falls back."""
    proc = await trio.lowlevel.open_process([sys.executable, "-c", PLAIN],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    buffered = b""

    async def line() -> str:
        nonlocal buffered
        while b"\n" not in buffered:
            chunk = await proc.stdout.receive_some(4096)  # type: ignore[union-attr]
            assert chunk, "the plain host ended"
            buffered += chunk
        text, buffered = buffered.split(b"\n", 1)
        return text.decode()

    try:
        with trio.fail_after(60):
            plain = await line()
            async with h.running(hashlib.sha256(b"framing plain").digest(),
                                 [f"/ip4/127.0.0.1/tcp/{free_port()}"]) as a:
                a.host.set_stream_handler(ECHO, echo)
                await a.connect(plain)  # our lazy proposals to its listener
                peer = a.host.get_network().connections
                assert len(peer) == 1
                (pid,) = peer
                for protocols in (["/plain/echo/1.0.0"],
                                  ["/not/here/1.0.0", "/plain/echo/1.0.0"]):
                    s = await a.host.new_stream(pid, protocols)
                    await s.write(b"from rill")
                    assert await s.read(100) == b"plain:from rill"
                    await s.close()
                # its dialler to our listener (over the same connection)
                await proc.stdin.send_all(f"{a.addrs()[0]}\n".encode())
                assert await line() == "echo:from plain"
                assert await line() == "echo:from plain"
    finally:
        await proc.stdin.aclose()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class Messages:
    """A multistream-select communicator stand-in: reads from a list, records writes."""

    def __init__(self, *incoming: str) -> None:
        self.incoming = list(incoming)
        self.read_writer = Secured()
        self.written: list[str | None] = []

    async def read(self) -> str:
        return self.incoming.pop(0)

    async def write(self, msg: str | None) -> None:
        self.written.append(msg)


async def test_a_held_header_goes_with_the_next_message_and_is_checked_late() -> None:
    header, echo = framing.MULTISTREAM, "/echo/1.0.0"
    together = encode_delim(header.encode()) + encode_delim(echo.encode())
    # the dialler: its header waits for its proposal; the listener's is checked before
    # the answer is taken
    inner = Messages(header, echo)
    c = framing._HeldHeader(inner, dialler=True)
    await c.write(header)
    assert await c.read() == header and inner.incoming == [header, echo]  # not read yet
    await c.write(echo)
    assert inner.read_writer.writes == [together]
    assert await c.read() == echo and inner.incoming == []
    await c.write("/next/1.0.0")  # later messages: the communicator's own writes
    assert inner.written == ["/next/1.0.0"]
    # a listener that answers something else than the header: refused at that read
    c = framing._HeldHeader(Messages("/not/multistream", echo), dialler=True)
    await c.write(header)
    await c.read()
    await c.write(echo)
    with pytest.raises(framing.MultiselectCommunicatorError):
        await c.read()
    # the listener: reads go through, its header waits for its answer
    inner = Messages(header, echo)
    c = framing._HeldHeader(inner, dialler=False)
    await c.write(header)
    assert await c.read() == header and await c.read() == echo
    await c.write(echo)
    assert inner.read_writer.writes == [together] and inner.written == []
