"""Loopback OpenAI-compatible ``/v1/chat/completions`` endpoints for the real ``openai`` SDK: a model server that
streams server-sent events (``ChatEndpoint``) and an LLM judge that grades a candidate against its reference
(``JudgeEndpoint``). Each records the requests it gets in its class's ``requests``; ``serving`` runs one on a
free 127.0.0.1 port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONING_MODELS = ("gpt-5", "gpt-5-mini")


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """``handler`` served on a free loopback port until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


class ChatEndpoint(BaseHTTPRequestHandler):
    """Answers each prompt upper-cased, streamed in two chunks when asked, with usage that has cached and reasoning
    tokens; GPT-5 models refuse ``temperature`` and ``max_tokens`` with 400 ``unsupported_parameter``; a prompt in
    ``throttle_once`` gets one 429 with ``retry-after: 0`` first."""

    requests: list[dict] = []
    throttle_once: set[str] = set()

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        if prompt in type(self).throttle_once:
            type(self).throttle_once.discard(prompt)
            return self._json(429, {"error": {"message": "rate limited", "code": "429"}}, {"retry-after": "0"})
        if body["model"] in REASONING_MODELS and ({"temperature", "max_tokens"} & set(body)):
            bad = sorted({"temperature", "max_tokens"} & set(body))[0]
            return self._json(
                400,
                {
                    "error": {
                        "message": f"Unsupported parameter: '{bad}'",
                        "type": "invalid_request_error",
                        "param": bad,
                        "code": "unsupported_parameter",
                    }
                },
            )
        answer = prompt.upper()
        usage = {
            "prompt_tokens": 20,
            "completion_tokens": 8,
            "total_tokens": 28,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 5},
        }
        if not body.get("stream"):
            return self._json(
                200,
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "usage": usage,
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                    ],
                },
            )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        for piece in (answer[: len(answer) // 2], answer[len(answer) // 2 :]):
            self._event(chunk | {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            time.sleep(0.01)
        self._event(chunk | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if body.get("stream_options", {}).get("include_usage"):
            self._event(chunk | {"choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload):
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _json(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class JudgeEndpoint(BaseHTTPRequestHandler):
    """Grades the candidate in the judge's prompt 5 when it equals the reference, else 2 (JSON in a code fence);
    the candidate ``garbage`` gets a reply with no verdict."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        user = body["messages"][-1]["content"]
        reference = user.split("Reference answer:\n")[1].split("\n\nCandidate answer:")[0]
        candidate = user.split("Candidate answer:\n")[1]
        if candidate == "garbage":
            content = "I cannot decide."
        else:
            content = (
                "```json\n" + json.dumps({"score": 5 if candidate == reference else 2, "reason": "compared"}) + "\n```"
            )
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass
