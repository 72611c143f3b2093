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

import trio
from libp2p.io.exceptions import IOException
from libp2p.protocol_muxer import multiselect as libp2p_multiselect
from libp2p.protocol_muxer import multiselect_client as libp2p_client
from libp2p.protocol_muxer.exceptions import (
    MultiselectClientError,
    MultiselectCommunicatorError,
    MultiselectError,
    ProtocolNotSupportedError,
)
from libp2p.stream_muxer.yamux import yamux as libp2p_yamux
from libp2p.utils import encode_delim

HEADER = libp2p_yamux.YAMUX_HEADER_FORMAT
HEADER_SIZE = struct.calcsize(HEADER)
MULTISTREAM = libp2p_client.MULTISELECT_PROTOCOL_ID
NOT_FOUND = libp2p_client.PROTOCOL_NOT_FOUND_MSG
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


def _write_error(error: Exception) -> MultiselectClientError:
    return MultiselectClientError(f"handshake write failed: {error}")


async def select_one_of(self: Any, protocols: Sequence[Any], communicator: Any,
                        negotiate_timeout: int = libp2p_client.DEFAULT_NEGOTIATE_TIMEOUT
                        ) -> Any:
    """MultiselectClient.select_one_of: the header and the first proposal in one write."""
    protocols = list(protocols)
    writer = getattr(communicator, "read_writer", None)
    if not protocols or writer is None or protocols[0] is None:
        return await _originals["select_one_of"](self, protocols, communicator,
                                                 negotiate_timeout)
    first = protocols[0]
    with trio.move_on_after(negotiate_timeout):
        try:
            await writer.write(encode_delim(MULTISTREAM.encode()) +
                               encode_delim(str(first).encode()))
        except (IOException, AssertionError, ValueError) as error:
            raise _write_error(error) from error
        try:
            header = await communicator.read()
            answer = await communicator.read()
        except MultiselectCommunicatorError as error:
            raise MultiselectClientError(f"handshake read failed: {error}") from error
        if header != MULTISTREAM:
            raise MultiselectClientError(
                f"multiselect protocol ID mismatch: expected {MULTISTREAM}, "
                f"got {header!r}")
        if answer == str(first):
            return first
        if answer != NOT_FOUND:
            raise MultiselectClientError(
                f"unrecognized response: {answer!r}, expected {str(first)!r} or "
                f"{NOT_FOUND!r}, protocol={first}")
        refused = [f"protocol not supported: {first}"]
        for protocol in protocols[1:]:
            try:
                return await self.try_select(communicator, protocol)
            except ProtocolNotSupportedError as error:
                refused.append(str(error))
        raise MultiselectClientError(
            f"protocols not supported: tried {protocols}, timeout={negotiate_timeout}s. "
            f"Last error: {refused[-1]}")
    raise MultiselectClientError(f"response timed out after {negotiate_timeout}s, "
                                 f"protocols tried: {protocols}")


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


def _answer(self: Any, command: str) -> tuple[str, bool]:
    """What py-libp2p's listener answers a command, and whether it chose a protocol."""
    if command != "ls" and (command or None) in self.handlers:
        return command, True
    if command == "ls":
        return "\n".join(p for p in self.handlers if p is not None) + "\n", False
    return NOT_FOUND, False


async def negotiate(self: Any, communicator: Any,
                    negotiate_timeout: int = libp2p_multiselect.DEFAULT_NEGOTIATE_TIMEOUT
                    ) -> Any:
    """Multiselect.negotiate: header and first answer in one write when the dialler
    proposed with its header; otherwise py-libp2p's (its header first, at once)."""
    if not _proposed_with_header(communicator):
        return await _originals["negotiate"](self, communicator, negotiate_timeout)
    writer = communicator.read_writer
    prefix = encode_delim(MULTISTREAM.encode())
    try:
        with trio.fail_after(negotiate_timeout):
            try:
                await communicator.read()  # the header (_proposed_with_header saw it)
            except MultiselectCommunicatorError as error:
                raise MultiselectError() from error
            while True:  # after a refusal the dialler proposes the next one
                try:
                    command = await communicator.read()
                except MultiselectCommunicatorError as error:
                    raise MultiselectError() from error
                answer, chosen = _answer(self, command)
                try:
                    await writer.write(prefix + encode_delim(answer.encode()))
                except (IOException, AssertionError, ValueError) as error:
                    raise MultiselectError() from error
                prefix = b""
                if chosen:
                    protocol = command or None
                    return protocol, self.handlers[protocol]
    except trio.TooSlowError as error:
        raise MultiselectError("handshake read timeout") from error


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
