"""Fewer frames per stream opened (SPEC §11.5 "Stream opening", docs/NETWORK.md).

py-libp2p 0.8.1 opens a stream in six frames before its first byte of payload: a Yamux
window update carrying SYN, the answering one carrying ACK, each end's multistream-select
header (`/multistream/1.0.0`), the protocol proposed and its echo, each frame a 12-byte
Yamux header in its own Noise frame (2-byte length, 16-byte tag).  252 bytes on the wire
per stream, 180 of them framing: four streams on a new connection (identify and
GossipSub, each way) and one per DHT request.  Here, on the wire the same bytes in fewer
frames, every step allowed by the specifications and understood by py-libp2p 0.8.1 itself:

* **SYN and ACK ride on the stream's first data frame** (the Yamux specification: "may be
  sent with a data or window update message").  The bare window update is held back and
  its flag set on the next frame of that stream if that is a plain data frame (the
  multistream-select header, which both ends send at once); before any other frame of
  the stream (a FIN, a RST, a window update) it is written as it was, in the same write.
* **The dialler sends the multistream-select header and its first proposal in one
  write** (as rust-libp2p's `V1Lazy` and js-libp2p do); a listener reads them in turn as
  from any byte stream.  When the first proposal is refused, the others are tried one by
  one as before.
* **A listener whose dialler did so answers header and echo in one write**: only when
  the proposal is already buffered as the stream arrives (it came in the SYN frame),
  so a dialler that waits for the header before proposing still gets it at once.

A stream opened between two such nodes: 132 bytes before payload, was 252; each end
sends one frame where it sent three.  With a peer of another implementation each step
falls back to what that peer sends.  One difference a dialler may see: a stream its peer
answers and resets at once (over a limit of streams, node/host.py) arrives as one burst,
and py-libp2p drops a reset stream's unread bytes, so the dialler's negotiation fails
where before it mostly succeeded and its first read failed.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Sequence
from typing import Any

from libp2p.io.exceptions import IOException
from libp2p.protocol_muxer import multiselect as libp2p_multiselect
from libp2p.protocol_muxer import multiselect_client as libp2p_client
from libp2p.protocol_muxer.exceptions import MultiselectCommunicatorError
from libp2p.stream_muxer.yamux import yamux as libp2p_yamux
from libp2p.utils import encode_delim

HEADER = libp2p_yamux.YAMUX_HEADER_FORMAT
HEADER_SIZE = struct.calcsize(HEADER)
MULTISTREAM = libp2p_client.MULTISELECT_PROTOCOL_ID
#: SYNs and ACKs held back per connection at most (a stream opened and then dropped
#: without a frame leaves one behind): beyond it they are written at once.
MAX_HELD = 256

#: Per Yamux connection: stream ID -> the SYN or ACK flag held back for its next frame.
_held: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()
_originals: dict[str, Any] = {}


async def _write_frame(self: Any, data: bytes) -> None:
    """Yamux._write_frame: a bare SYN or ACK is held back for the stream's next frame."""
    if len(data) >= HEADER_SIZE:
        version, typ, flags, sid, length = struct.unpack(HEADER, data[:HEADER_SIZE])
        if sid:
            held = _held.setdefault(self, {})
            if (typ == libp2p_yamux.TYPE_WINDOW_UPDATE and length == 0 and
                    len(data) == HEADER_SIZE and flags in (libp2p_yamux.FLAG_SYN,
                                                           libp2p_yamux.FLAG_ACK) and
                    sid not in held):
                if len(held) >= MAX_HELD:  # streams gone without a frame: forgotten
                    for gone in [x for x in held if x not in self.streams]:
                        del held[gone]
                if len(held) < MAX_HELD:
                    held[sid] = flags
                    return
            extra = held.pop(sid, 0)
            if extra and typ == libp2p_yamux.TYPE_DATA and flags == 0:
                data = struct.pack(HEADER, version, typ, extra, sid, length) + \
                    data[HEADER_SIZE:]
            elif extra:
                data = struct.pack(HEADER, 0, libp2p_yamux.TYPE_WINDOW_UPDATE, extra, sid,
                                   0) + data
    await _originals["write_frame"](self, data)


def _encode(msg: str | None) -> bytes:
    """A multistream-select message as py-libp2p's communicator writes it."""
    return encode_delim(b"" if msg is None else msg.encode())


async def _write_together(communicator: Any, held: str, msg: str | None) -> None:
    """Two messages in one write, failing as the communicator's own write fails."""
    try:
        await communicator.read_writer.write(_encode(held) + _encode(msg))
    except (IOException, AssertionError, ValueError) as error:
        raise MultiselectCommunicatorError("fail to write to multiselect communicator"
                                           ) from error


class _HeldHeader:
    """The communicator py-libp2p's multistream-select drives, its own header written
    together with the message after it (everything else is py-libp2p's):

    * a dialler's header goes with its first proposal: the read of the listener's header
      is answered at once, and that header is really read (and checked) before the
      answer to the proposal;
    * a listener's header goes with its first answer (only used when the proposal came
      with the dialler's header, so nothing waits for it)."""

    def __init__(self, inner: Any, dialler: bool) -> None:
        self.inner = inner
        self.dialler = dialler
        self.held: str | None = None
        self.started = False
        self.owed = 0  # listener headers answered here, still to be read

    async def write(self, msg: str | None) -> None:
        if not self.started and msg == MULTISTREAM:
            self.started, self.held = True, msg
            return
        self.started = True
        if self.held is not None:
            held, self.held = self.held, None
            await _write_together(self.inner, held, msg)
            return
        await self.inner.write(msg)

    async def read(self) -> str:
        if self.dialler and self.held is not None:  # the header is read after the answer
            self.owed += 1
            return MULTISTREAM
        while self.owed:
            self.owed -= 1
            header = await self.inner.read()
            if header != MULTISTREAM:
                raise MultiselectCommunicatorError(
                    f"multiselect protocol ID mismatch: expected {MULTISTREAM}, "
                    f"got {header!r}")
        return str(await self.inner.read())


async def select_one_of(self: Any, protocols: Sequence[Any], communicator: Any,
                        negotiate_timeout: int = libp2p_client.DEFAULT_NEGOTIATE_TIMEOUT
                        ) -> Any:
    """MultiselectClient.select_one_of: the header and the first proposal in one write."""
    if getattr(communicator, "read_writer", None) is not None:
        communicator = _HeldHeader(communicator, dialler=True)
    return await _originals["select_one_of"](self, protocols, communicator,
                                             negotiate_timeout)


def _proposed_with_header(communicator: Any) -> bool:
    """Whether a stream's dialler sent a proposal with its header: the header and at
    least one byte more are already buffered (Yamux streams only)."""
    stream = getattr(getattr(communicator, "read_writer", None), "muxed_stream", None)
    conn = getattr(stream, "conn", None)
    buffers = getattr(conn, "stream_buffers", None)
    if not isinstance(buffers, dict):
        return False
    buffered = buffers.get(getattr(stream, "stream_id", None))
    first = encode_delim(MULTISTREAM.encode())
    return (isinstance(buffered, bytearray) and len(buffered) > len(first) and
            buffered.startswith(first))


async def negotiate(self: Any, communicator: Any,
                    negotiate_timeout: int = libp2p_multiselect.DEFAULT_NEGOTIATE_TIMEOUT
                    ) -> Any:
    """Multiselect.negotiate: header and first answer in one write when the dialler
    proposed with its header; otherwise as py-libp2p's (its header first, at once)."""
    if _proposed_with_header(communicator):
        communicator = _HeldHeader(communicator, dialler=False)
    return await _originals["negotiate"](self, communicator, negotiate_timeout)


def install() -> None:
    """Replace the three py-libp2p methods (idempotent)."""
    if _originals:
        return
    _originals["write_frame"] = libp2p_yamux.Yamux._write_frame
    _originals["select_one_of"] = libp2p_client.MultiselectClient.select_one_of
    _originals["negotiate"] = libp2p_multiselect.Multiselect.negotiate
    libp2p_yamux.Yamux._write_frame = _write_frame  # type: ignore[method-assign]
    libp2p_client.MultiselectClient.select_one_of = select_one_of  # type: ignore
    libp2p_multiselect.Multiselect.negotiate = negotiate  # type: ignore[method-assign]
