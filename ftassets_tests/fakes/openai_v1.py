"""A loopback OpenAI v1 server (``POST /v1/chat/completions``; JSON answers, or server-sent events when the
request streams) whose replies come from the test's ``responder(body) -> str``; usage counts words (prompt: every
message, completion: the reply); ``throttle(n)`` scripts n 429s with ``retry-after`` (a storm),
``fail(n, status, retry_after_s)`` n server errors (a 5xx burst). Built on ``loopback.py``, which records every
request in ``state.requests``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes.loopback import LoopbackServer, RecordingHandler


def words(text: str) -> int:
    return len(text.split())


@dataclass
class FakeOpenAIState:
    responder: Callable[[dict[str, Any]], str]
    throttled: int = 0
    retry_after_s: str = "0"
    failing: int = 0
    failure_status: int = 503
    failure_retry_after_s: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOpenAI(LoopbackServer):
    """``with FakeOpenAI(responder) as fake:`` serves ``fake.base_url`` (``.../v1``) until the block ends."""

    thread_name = "fake-openai-v1"

    def __init__(self, responder: Callable[[dict[str, Any]], str]) -> None:
        self.state = FakeOpenAIState(responder=responder)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def throttle(self, count: int, retry_after_s: str = "0") -> None:
        with self.state.lock:
            self.state.throttled, self.state.retry_after_s = count, retry_after_s

    def fail(self, count: int, status: int = 503, retry_after_s: str | None = None) -> None:
        with self.state.lock:
            self.state.failing, self.state.failure_status = count, status
            self.state.failure_retry_after_s = retry_after_s

    def __enter__(self) -> FakeOpenAI:
        self.serve(_Handler)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Handler(RecordingHandler):
    fake: FakeOpenAI
    request_id_header = "x-request-id"

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        if (method, path) != ("POST", "/v1/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {method} {path}", "code": "not_found"}})
        with self.state.lock:
            throttle = self.state.throttled > 0
            self.state.throttled -= throttle
            failure = self.state.failing > 0 and not throttle
            self.state.failing -= failure
        if failure:
            return self._send(
                self.state.failure_status,
                {"error": {"message": "The server had an error processing your request.", "code": "server_error"}},
                headers={"retry-after": self.state.failure_retry_after_s} if self.state.failure_retry_after_s else None,
            )
        if throttle:
            return self._send(
                429,
                {"error": {"message": "Rate limit reached; retry later.", "code": "rate_limit_exceeded"}},
                headers={"retry-after": self.state.retry_after_s},
            )
        payload = json.loads(body)
        content = self.state.responder(payload)
        prompt_tokens = sum(words(message["content"]) for message in payload["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": words(content),
            "total_tokens": prompt_tokens + words(content),
        }
        if payload.get("stream"):
            return self._stream(payload, content, usage)
        self._send(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": payload["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": usage,
            },
        )

    def _stream(self, payload: dict[str, Any], content: str, usage: dict[str, int]) -> None:
        """Server-sent events: the answer in one chunk, the finish, usage when asked for, ``[DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": payload["model"]}
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        if payload.get("stream_options", {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": usage})
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
