"""A small real HTTP server on 127.0.0.1 for the creator-site tests (importable as ``sitesrv``).

Each :class:`Site` is its own ``ThreadingHTTPServer`` on an ephemeral port (so its own
origin, ``http://127.0.0.1:PORT``) with a table ``path -> Reply`` that the tests change
at will.  Slow replies wait on an event, so stopping a site never hangs on them.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

WELL_KNOWN = "/.well-known/rill.json"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Send the body with ``Transfer-Encoding: chunked`` (no Content-Length).
    chunked: bool = False
    chunk_size: int = 8192
    #: Seconds to wait before the status line.
    delay: float = 0.0
    #: Seconds between single body bytes (headers go out at once, no Content-Length).
    trickle: float = 0.0


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status=status, body=b"", content_type="text/plain",
                 headers={"Location": location})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        site = self.server.site
        site.requests.append(self.path)
        reply = site.routes.get(self.path.split("?", 1)[0])
        if reply is None:
            reply = Reply(404, b"not found\n", "text/plain")
        # the client may give up (too large, timeout): that is the point
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self._send(reply, site.stopping)
        self.close_connection = True

    def _send(self, r: Reply, stopping: threading.Event) -> None:
        if r.delay and stopping.wait(r.delay):
            return
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Connection", "close")
        for k, v in r.headers.items():
            self.send_header(k, v)
        if r.trickle:
            self.end_headers()  # no length: the body ends when the connection closes
            for i in range(len(r.body)):
                self.wfile.write(r.body[i:i + 1])
                self.wfile.flush()
                if stopping.wait(r.trickle):
                    return
            return
        if r.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(r.body), r.chunk_size):
                piece = r.body[i:i + r.chunk_size]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if "Content-Length" not in r.headers:  # a test may declare a (false) length
            self.send_header("Content-Length", str(len(r.body)))
        self.end_headers()
        self.wfile.write(r.body)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


class Site:
    """One origin.  ``with Site() as s: s.document(text); s.origin``."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.site = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"sitesrv-{self.port}", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, path: str, reply: Reply) -> Site:
        self.routes[path] = reply
        return self

    def document(self, text: str | bytes, **kw: object) -> Site:
        body = text.encode() if isinstance(text, str) else text
        return self.serve(WELL_KNOWN, Reply(body=body, **kw))  # type: ignore[arg-type]

    def start(self) -> Site:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
