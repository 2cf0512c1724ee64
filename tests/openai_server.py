"""A real HTTP server on 127.0.0.1 that speaks OpenAI's streamed chat completions, with faults on
demand: each request takes the next behaviour from `script` (then `default`).

    ok        200, streams `words` as server-sent events, then a usage chunk and [DONE]
    slow      waits `first_byte_delay_s` before answering like ok
    hang      accepts the request and never answers (until the server stops)
    500 / 503 an error, whose body echoes the Authorization and x-api-key headers (as careless servers do)
    429       Too Many Requests with `Retry-After: retry_after`
    401       Unauthorized
    drop      streams two chunks, then closes the connection mid-body
    garbage   streams one chunk, then a data line that is not JSON
    json      200 with a JSON body instead of an event stream
  hostile ones (each stops after `endless_bytes`, so a client that reads it all still ends):
    keepalive     200, then only SSE comment lines (": keep-alive") every `keepalive_s`, forever
    endless_500   500 whose body never ends
    endless_line  200, then one `data:` line that never ends
    huge          200, an answer of `huge_chars` characters whatever max_tokens says
  `sent` holds the bytes of body written per request: what the client made the server send.
    [words]   a list: like ok, streaming these words instead of `words`
    {"tool": NAME, "arguments": JSON}   a dict: streams a tool call (in fragments) instead of text

Used by the tests and by bench/bench_router.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-answer is part of the tests, not news


class FakeOpenAI:
    def __init__(self, words: list[str] | None = None, model: str = "fake-model") -> None:
        self.words = words or ["Hello", " from", " the", " remote", " server", "."]
        self.model = model
        self.script: deque[str | list[str] | dict[str, str]] = deque()
        self.default = "ok"
        self.first_byte_delay_s = 2.0
        self.chunk_delay_s = 0.0
        self.retry_after = "1"
        self.keepalive_s = 0.2
        self.endless_bytes = 400 << 20
        self.huge_chars = 50 << 20
        self.sent: list[int] = []
        self.requests: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def then(self, *behaviours: str | list[str] | dict[str, str]) -> FakeOpenAI:
        self.script.extend(behaviours)
        return self

    def _next(self) -> str | list[str] | dict[str, str]:
        try:
            return self.script.popleft()
        except IndexError:
            return self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                      "at": time.monotonic()})
                behaviour = fake._next()
                words = fake.words
                if isinstance(behaviour, dict):
                    self._tool_call(behaviour)
                    return
                if isinstance(behaviour, list):
                    behaviour, words = "ok", behaviour
                if behaviour == "hang":
                    fake._stopping.wait(60)
                    self.close_connection = True
                    return
                if behaviour == "slow":
                    time.sleep(fake.first_byte_delay_s)
                    behaviour = "ok"
                if behaviour in ("500", "503", "401"):
                    echo = " ".join(v for v in (self.headers.get("Authorization"), self.headers.get("x-api-key"))
                                    if v)
                    self._json(int(behaviour), {"error": {"message": f"internal trouble (auth: {echo})"}})
                    return
                if behaviour == "429":
                    self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": fake.retry_after})
                    return
                if behaviour == "json":
                    self._json(200, {"choices": [{"message": {"content": "not streamed"}}]})
                    return
                if behaviour in ("keepalive", "endless_500", "endless_line", "huge"):
                    fake.sent.append(0)
                    try:
                        self._hostile(behaviour)
                    except OSError:  # the client hung up: what it was meant to do
                        self.close_connection = True
                    return
                self._stream(behaviour, body, words)

            def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, text: str) -> None:
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _event(self, payload: dict | str) -> None:
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self._chunk(f"data: {data}\n\n")

            def _counted(self, data: bytes) -> None:
                self._chunk_bytes(data)
                fake.sent[-1] += len(data)

            def _chunk_bytes(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _hostile(self, behaviour: str) -> None:
                self.send_response(500 if behaviour == "endless_500" else 200)
                self.send_header("Content-Type", "text/plain" if behaviour == "endless_500" else "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b"x" * 65536
                if behaviour == "keepalive":
                    while not fake._stopping.is_set() and fake.sent[-1] < fake.endless_bytes:
                        self._counted(b": keep-alive\n\n")
                        fake._stopping.wait(fake.keepalive_s)
                elif behaviour == "huge":
                    piece = "y" * 4000
                    for _ in range(fake.huge_chars // len(piece)):
                        chunk = {"id": "c1", "object": "chat.completion.chunk", "model": fake.model,
                                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                        self._counted(f"data: {json.dumps(chunk)}\n\n".encode())
                    self._counted(b"data: [DONE]\n\n")
                else:
                    if behaviour == "endless_line":
                        self._counted(b"data: ")
                    while not fake._stopping.is_set() and fake.sent[-1] < fake.endless_bytes:
                        self._counted(block)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _tool_call(self, call: dict[str, str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = len(call["arguments"]) // 2
                fragments = [{"index": 0, "id": "call_1", "type": "function",
                              "function": {"name": call["tool"], "arguments": call["arguments"][:half]}},
                             {"index": 0, "function": {"arguments": call["arguments"][half:]}}]
                for fragment in fragments:
                    self._event({"id": "c1", "object": "chat.completion.chunk", "model": fake.model,
                                 "choices": [{"index": 0, "delta": {"tool_calls": [fragment]},
                                              "finish_reason": None}]})
                self._event({"id": "c1", "object": "chat.completion.chunk", "model": fake.model,
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _stream(self, behaviour: str, body: dict, words: list[str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = words[: max(1, int(body.get("max_tokens", len(words))))]
                for i, word in enumerate(words):
                    if behaviour == "drop" and i == 2:
                        self.wfile.flush()
                        self.connection.close()  # mid-body: no terminating chunk
                        self.close_connection = True
                        return
                    if behaviour == "garbage" and i == 1:
                        self._chunk('data: {"choices": [{"delta": {"content": "unterminated\n\n')
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    self._event({"id": "c1", "object": "chat.completion.chunk", "model": fake.model,
                                 "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
                    if fake.chunk_delay_s:
                        time.sleep(fake.chunk_delay_s)
                self._event({"id": "c1", "object": "chat.completion.chunk", "model": fake.model,
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                prompt_chars = sum(len(m.get("content", "")) for m in body.get("messages", []))
                self._event({"id": "c1", "object": "chat.completion.chunk", "model": fake.model, "choices": [],
                             "usage": {"prompt_tokens": prompt_chars // 4 + 7, "completion_tokens": len(words),
                                       "total_tokens": prompt_chars // 4 + 7 + len(words)}})
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
