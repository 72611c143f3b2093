"""Yamux keepalive: the dialling end pings a connection it has heard nothing on for an
interval; the accepting end never pings (SPEC §11.1 "Keepalive", docs/NETWORK.md).

py-libp2p 0.8.1's Yamux pings every connection from both ends every 30 s to measure a
round trip (`Yamux._measure_rtt_loop`), whatever else crosses it.  The one use of a ping
here is keeping a NAT's mapping of an idle connection, and the NAT is on the side that
dialled (a node behind one cannot be dialled; its relayed connections ride on the one it
dialled to its relay).  One ping and its answer also refresh the mapping of the other
end, so pinging from both ends doubles the cost for nothing, and a connection that
carries traffic needs no ping at all.

The interval is 20 minutes for a node not known to be behind NAT (RFC 5382 asks NATs to
keep an established TCP mapping at least 2 h 4 min; Linux-based routers keep 5 days) and
4 minutes once the reachability probe finds the node private (`set_private_pings`): its
NAT dropped what others sent it, so its mappings, its relay's above all, are kept warm.
The first ping (0.5 s into a connection, for the round trip Yamux's receive window
tuning uses) is kept on the dialling end.  An idle connection then costs each end one
ping and one answer an interval (two 30-byte frames, `PING_FRAMES`), where it cost four.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import weakref
from typing import Any

import trio
from libp2p.io.exceptions import IOException
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable
from libp2p.stream_muxer.yamux import yamux as libp2p_yamux

log = logging.getLogger("rill.node")

#: Seconds without hearing anything on a connection before its dialling end pings.
YAMUX_PING_S = 1200
YAMUX_PING_PRIVATE_S = 240
#: Frames a node's end of an idle connection carries per interval: its ping (or the
#: peer's) and the answer.  Each is a 12-byte Yamux header in a Noise frame (2-byte
#: length, 16-byte tag): 30 bytes on the wire.
PING_FRAMES = 2
PING_FRAME_BYTES = 12 + 2 + 16
#: The first ping, for the round trip: as py-libp2p's.
FIRST_PING_S = 0.5

_interval = {"s": float(YAMUX_PING_S)}
#: When each secured connection last delivered a frame (trio clock).
_heard: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_read_exactly = libp2p_yamux.read_exactly


def set_private_pings(private: bool) -> None:
    """The ping interval of this process's node: shorter when it is private (one node per
    daemon process; in-process test networks share it).  Takes effect within
    YAMUX_PING_PRIVATE_S on every connection."""
    _interval["s"] = float(YAMUX_PING_PRIVATE_S if private else YAMUX_PING_S)


def ping_interval() -> float:
    return _interval["s"]


async def _read_exactly_heard(reader: Any, n: int, *args: Any, **kwargs: Any) -> bytes:
    """Yamux's frame reads, stamping the connection as heard."""
    data = await _read_exactly(reader, n, *args, **kwargs)
    with contextlib.suppress(TypeError):  # a reader no weak reference can name
        _heard[reader] = trio.current_time()
    return data


def heard_at(secured_conn: Any) -> float | None:
    return _heard.get(secured_conn)


async def _ping(self: libp2p_yamux.Yamux) -> bool:
    """One ping, its answer handled by Yamux's reader (which times the round trip).
    False if the connection is going (its reader sees that and closes it)."""
    self._ping_id += 1
    self._ping_event = trio.Event()
    try:
        await self._write_frame(struct.pack(libp2p_yamux.YAMUX_HEADER_FORMAT, 0,
                                            libp2p_yamux.TYPE_PING, libp2p_yamux.FLAG_SYN,
                                            0, self._ping_id & 0xFFFFFFFF))
    except (IOException, MuxedConnUnavailable, OSError, trio.BrokenResourceError,
            trio.ClosedResourceError):
        return False
    except Exception as exc:  # as py-libp2p's loop: a ping never takes a connection down
        log.warning("yamux keepalive to %s stopped: %r", self.peer_id, exc)
        return False
    self._ping_sent_time = trio.current_time()
    return True


async def _keepalive(self: libp2p_yamux.Yamux) -> None:
    """Replaces `Yamux._measure_rtt_loop`: on a connection this node dialled, a first
    ping, then one whenever nothing was heard for an interval since the last; on a
    connection it accepted, none."""
    if not self.is_initiator_value:
        return
    conn = self.secured_conn
    shutting = self.event_shutting_down
    with trio.move_on_after(FIRST_PING_S):
        await shutting.wait()
    while not shutting.is_set():
        if not await _ping(self):
            return
        pinged = trio.current_time()
        while not shutting.is_set():
            now = trio.current_time()
            due = max(_heard.get(conn, pinged), pinged) + ping_interval()
            if now >= due:
                break
            # wake at least every YAMUX_PING_PRIVATE_S: the interval may shorten meanwhile
            with trio.move_on_after(min(due - now, YAMUX_PING_PRIVATE_S)):
                await shutting.wait()


def install() -> None:
    libp2p_yamux.read_exactly = _read_exactly_heard
    libp2p_yamux.Yamux._measure_rtt_loop = _keepalive  # type: ignore[method-assign]
