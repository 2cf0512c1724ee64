"""A real HTTP file server on 127.0.0.1 for `models pull`: Range and If-Range, ETags, and the
faults downloads meet (a connection dropped mid-file, a server that ignores Range, errors)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Served:
    body: bytes
    etag: str | None = None  # None: derived from the body
    linked_etag: str | None = None  # Hugging Face's X-Linked-Etag (the SHA-256 of an LFS file)
    status: int = 200
    drop_after: list[int] = field(default_factory=list)  # one entry per request to cut short
    ignore_range: bool = False
    pace_s: float = 0.0  # pause after each 64 KiB: a slow link, to interrupt a download mid-way

    def tag(self) -> str:
        return self.etag or '"' + hashlib.md5(self.body).hexdigest() + '"'


class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up, as downloaders do when they stop early

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append({"path": self.path, "headers": dict(self.headers)})
                served = server.files.get(self.path)
                if served is None:
                    self._send(404, b"Entry not found")
                    return
                if served.status != 200:
                    self._send(served.status, b"error")
                    return
                body, start = served.body, 0
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and not served.ignore_range and (if_range is None or if_range == served.tag()):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("ETag", served.tag())
                self.send_header("Accept-Ranges", "bytes")
                if served.linked_etag:
                    self.send_header("X-Linked-Etag", f'"{served.linked_etag}"')
                self.end_headers()
                try:
                    if served.drop_after:
                        cut = served.drop_after.pop(0)
                        self.wfile.write(chunk[:cut])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    step = 1 << 16 if served.pace_s else len(chunk) or 1
                    for at in range(0, len(chunk), step):
                        self.wfile.write(chunk[at : at + step])
                        if served.pace_s:
                            time.sleep(served.pace_s)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client stopped reading: fine

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]
