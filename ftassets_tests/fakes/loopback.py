"""The HTTP plumbing the loopback fakes of Azure share (``azure_openai.py``, ``azureml.py``): a threaded
server on a free 127.0.0.1 port, and a handler that records every request in the fake's state and hands it to
the fake's ``route``."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class LoopbackServer:
    """Base of a fake whose ``self.state`` has ``requests`` and ``lock``: ``serve(handler)`` (from the fake's
    ``__enter__``) serves its ``RecordingHandler`` subclass, ``stop()`` ends it."""

    thread_name = "loopback-http"
    state: Any
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.state.requests if r["path"].endswith("/chat/completions")]

    def serve(self, handler: type[RecordingHandler]) -> None:
        handler = type("Handler", (handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class RecordingHandler(BaseHTTPRequestHandler):
    """Records each request (method, path, query, lower-cased headers, body) in ``fake.state.requests``, then calls
    ``route(method, path, query, body)``; a client that hung up mid-answer is ignored."""

    fake: LoopbackServer
    protocol_version = "HTTP/1.1"
    request_id_header = "x-ms-request-id"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> Any:
        return self.fake.state

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        raise NotImplementedError

    def _dispatch(self, method: str) -> None:
        parsed = urlparse(self.path)
        path, query = parsed.path, {k: v[0] for k, v in parse_qs(parsed.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.state.lock:
            self.state.requests.append(
                {
                    "method": method,
                    "path": path,
                    "query": query,
                    "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
            )
        try:
            self.route(method, path, query, body)
        except BrokenPipeError:
            pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(
        self, status: int, content: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.send_header(self.request_id_header, uuid.uuid4().hex)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if content:
            self.wfile.write(content)
