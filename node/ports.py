"""Is a local TCP port free, and if not: a message naming the port and the flag to use.

The node checks its ports before it starts anything, so that a busy port is one clear
line ("port 4742 ... is already in use ...: choose another with --dashboard-port 4743")
instead of an ``[Errno 98]`` from deep inside the web server or libp2p.
"""

from __future__ import annotations

import errno
import socket


def listen_error(family: socket.AddressFamily, host: str, port: int) -> OSError | None:
    """Why a plain socket cannot listen on (host, port) now (SO_REUSEADDR, as servers
    set it, no SO_REUSEPORT), or None."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1)
        except OSError as exc:
            return exc
    return None


def free_port_near(family: socket.AddressFamily, host: str, port: int,
                   step: int = 1) -> int | None:
    """The first of the next 20 ports (``step`` apart) that is free now: a suggestion,
    not a promise.  libp2p ports are suggested 10 apart, so that 4741's suggestion is
    not 4742, the dashboard's default."""
    for candidate in range(port + step, min(port + 20 * step + 1, 65536), step):
        if listen_error(family, host, candidate) is None:
            return candidate
    return None


def dashboard_port_problem(port: int) -> str | None:
    """A message when the dashboard cannot listen on 127.0.0.1:``port``, else None."""
    exc = listen_error(socket.AF_INET, "127.0.0.1", port)
    if exc is None:
        return None
    if exc.errno == errno.EADDRINUSE:
        what = (f"the dashboard's port {port} (127.0.0.1:{port}) is already in use, perhaps "
                "by another Rill node")
    else:
        what = f"the dashboard cannot listen on 127.0.0.1:{port}: {exc.strerror}"
    other = free_port_near(socket.AF_INET, "127.0.0.1", port)
    example = f"--dashboard-port {other}" if other else "--dashboard-port PORT"
    return f"{what}: choose another with {example} (0: no dashboard)"
