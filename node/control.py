"""The daemon's local control channel: a Unix socket of mode 0600 in the home.

Only the home's owner can connect (file permissions); web pages cannot reach a
Unix socket at all.  Protocol: one JSON request per line, one JSON reply per
line: ``{"cmd": "status"}`` -> ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("rill.node.control")

SOCKET_NAME = "node.sock"
MAX_REQUEST = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


async def serve(path: Path, handler: Handler, *,
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the control socket at ``path`` until cancelled; removes it afterwards."""
    with contextlib.suppress(FileNotFoundError):
        if _is_live(path):
            raise RuntimeError(f"a node is already running on this home ({path})")
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket file is created 0600: no window for others
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    try:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(_client, stream, handler)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def _client(stream: trio.SocketStream, handler: Handler) -> None:
    """One request, one reply.  This is the control socket's trust boundary: whatever a
    command raises becomes an error reply (logged), never an exception in the daemon."""
    async with stream:
        try:
            request = await _read_request(stream)
        except (trio.TooSlowError, trio.BrokenResourceError, ConnectionError):
            return
        except ValueError as exc:
            reply: dict[str, Any] = {"ok": False, "error": str(exc)}
        else:
            if request is None:
                return
            try:
                reply = {"ok": True, "result": await handler(request)}
            except (ValueError, KeyError, TypeError, LookupError) as exc:
                reply = {"ok": False, "error": str(exc)}
            except trio.TooSlowError:
                reply = {"ok": False, "error": "timed out"}
            except Exception as exc:  # the boundary: a command's failure is an answer
                log.warning("control command %r failed: %s: %s", request.get("cmd"),
                            type(exc).__name__, exc)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(json.dumps(reply, default=str).encode() + b"\n")


async def _read_request(stream: trio.SocketStream) -> dict[str, Any] | None:
    """One JSON line (None if the client left); ValueError for anything else."""
    buf = b""
    with trio.fail_after(30):
        while b"\n" not in buf:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return None
            buf += chunk
            if len(buf) > MAX_REQUEST:
                raise ValueError("request too large")
    try:
        request = json.loads(buf.split(b"\n", 1)[0])
    except (ValueError, RecursionError):
        raise ValueError("not a JSON line") from None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise ValueError("expected a JSON object with 'cmd'")
    return request


def _is_live(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def call(path: Path, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
    """Blocking client for the CLI: send one request, return its result or raise."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ConnectionError("no node is running on this home (start one with "
                                  "`rill node run`)") from None
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise ConnectionError(reply.get("error", "the node refused the request"))
    return reply["result"]
