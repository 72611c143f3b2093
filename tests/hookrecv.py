"""A webhook receiver for the notification tests: a real HTTP server on 127.0.0.1 (in a
thread) that records every POST, and can be stopped and started again on its port."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

from nodes import free_port


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self._server: http.server.ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.posts.append({"path": self.path, "headers": dict(self.headers),
                                        "body": body})
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies received (on ``path`` only, if given), in order."""
        with self._lock:
            return [json.loads(p["body"]) for p in self.posts
                    if path is None or p["path"] == path]
