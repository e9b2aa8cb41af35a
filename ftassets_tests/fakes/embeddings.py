"""A loopback embeddings endpoint: the OpenAI v1 route (``POST /v1/embeddings``) and Azure OpenAI's deployment route
(``POST /openai/deployments/{name}/embeddings?api-version=``, keyed by ``api-key``), with OpenAI's JSON shape, as
floats or as base64 (the ``encoding_format`` the openai SDK asks for by default).

A text's vector counts its lower-cased words in ``DIMENSIONS`` buckets (a stable hash), so texts with the same words
have a cosine of 1 and texts without a word in common one of 0. Built on ``loopback.py``, which records every request
in ``state.requests``.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from fakes.loopback import LoopbackServer, RecordingHandler

DIMENSIONS = 64
DEPLOYMENT_ROUTE = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/embeddings$")


def word_counts(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        vector[zlib.crc32(word.encode()) % DIMENSIONS] += 1.0
    return vector


@dataclass
class FakeEmbeddingsState:
    api_key: str | None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeEmbeddings(LoopbackServer):
    """``with FakeEmbeddings(api_key) as fake:`` serves ``fake.base_url`` (``.../v1``) and, for Azure, ``fake.url``
    until the block ends; a request without the key (when one is given) gets a 401."""

    thread_name = "fake-embeddings"

    def __init__(self, api_key: str | None = None) -> None:
        self.state = FakeEmbeddingsState(api_key=api_key)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def embedding_requests(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.state.requests if r["path"].endswith("/embeddings")]

    def __enter__(self) -> FakeEmbeddings:
        self.serve(_Handler)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Handler(RecordingHandler):
    fake: FakeEmbeddings
    request_id_header = "x-request-id"

    def route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        deployment = DEPLOYMENT_ROUTE.match(path)
        if method != "POST" or (path != "/v1/embeddings" and not deployment):
            return self._send(404, {"error": {"message": f"no route {method} {path}", "code": "not_found"}})
        if deployment and "api-version" not in query:
            return self._send(400, {"error": {"message": "api-version is required", "code": "missing_api_version"}})
        key = self.headers.get("api-key") or (self.headers.get("authorization") or "").removeprefix("Bearer ")
        if self.state.api_key is not None and key != self.state.api_key:
            return self._send(401, {"error": {"message": "invalid api key", "code": "invalid_api_key"}})
        request = json.loads(body)
        texts = [request["input"]] if isinstance(request["input"], str) else request["input"]
        as_base64 = request.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = word_counts(text)
            encoded = base64.b64encode(struct.pack(f"<{DIMENSIONS}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(text.split()) for text in texts)
        model = deployment.group("deployment") if deployment else request["model"]
        self._send(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )
