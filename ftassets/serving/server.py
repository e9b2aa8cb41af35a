"""``ftassets serve``: one model behind an OpenAI-compatible HTTP API (Starlette on uvicorn).

Routes: ``GET /health``, ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions`` (streamed as
server-sent events when ``stream`` is true, with a final usage chunk when ``stream_options.include_usage``).

One generation runs at a time on one worker thread (an engine is not shared between concurrent generations); up to
``Limits.queue`` more requests wait for it, and a request beyond that is refused at once with 429 and
``Retry-After``. Every refusal is a 4xx in OpenAI's error shape (``{"error": {"message", "type", "param",
"code"}}``): a body that is not JSON or over ``max_body_bytes`` (400, 413), a field of the wrong type or out of
range (400, naming the field), a model name this server does not serve (404), ``max_tokens`` over the server's
limit or a prompt that does not fit the context (400), an unsupported option such as ``n > 1`` (400).

``temperature`` defaults to 0 (greedy decoding, as the evaluation generates), so a served answer to a test prompt is
the one the evaluation recorded. Each response carries the served artifact's data version as
``system_fingerprint``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ftassets.serving.engines import Completion, Engine, PromptTooLong, Sampling


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 512
    """The largest ``max_tokens`` a request may ask for (and the default when it asks for none: the smaller of
    this and what the context leaves)."""
    queue: int = 4
    """Requests that may wait while one generates; one more is refused with 429."""
    max_body_bytes: int = 1_000_000


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]

    def as_chat(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completions request this server honours; others are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four(cls, stop):
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return stops


class Admission:
    """One generation running and up to ``queue`` waiting; ``enter`` refuses the one after."""

    def __init__(self, queue: int) -> None:
        self.capacity, self.admitted = 1 + queue, 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.admitted >= self.capacity:
                return False
            self.admitted += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.admitted -= 1


def error(status: int, message: str, param: str | None = None, code: str | None = None, **headers) -> JSONResponse:
    kind = {
        400: "invalid_request_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers or None)


def create_app(engine: Engine, data_version: str, limits: Limits = Limits(), description: str = "") -> Starlette:
    """The HTTP app serving ``engine`` under its ``name``. ``app.state.admission`` is its queue."""
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftassets-serve")
    admission = Admission(limits.queue)
    created = int(time.time())

    def model_card() -> dict[str, Any]:
        return {
            "id": engine.name,
            "object": "model",
            "created": created,
            "owned_by": "ftassets",
            "data_version": data_version,
            "context_length": engine.context_length,
            "description": description,
        }

    async def health(request: Request) -> JSONResponse:
        waiting = max(0, admission.admitted - 1)
        return JSONResponse(
            {
                "status": "ok",
                "model": engine.name,
                "data_version": data_version,
                "running": min(1, admission.admitted),
                "waiting": waiting,
                "queue": limits.queue,
            }
        )

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def one_model(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name != engine.name:
            return _unknown_model(name)
        return JSONResponse(model_card())

    def _unknown_model(name: str) -> JSONResponse:
        return error(
            404,
            f"the model {name!r} does not exist here; this server serves {engine.name!r} (GET /v1/models)",
            param="model",
            code="model_not_found",
        )

    async def chat_completions(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return error(
                413, f"the request body is {declared} bytes; this server takes at most {limits.max_body_bytes}"
            )
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            return error(
                413, f"the request body is {len(body)} bytes; this server takes at most {limits.max_body_bytes}"
            )
        try:
            payload = json.loads(body)
        except ValueError as problem:
            return error(400, f"the request body is not valid JSON: {problem}")
        if not isinstance(payload, dict):
            return error(400, "the request body must be a JSON object")
        try:
            chat = ChatRequest.model_validate(payload)
        except ValidationError as problem:
            first = problem.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            return error(400, f"{field}: {first['msg']}", param=field)
        if chat.model != engine.name:
            return _unknown_model(chat.model)
        asked = chat.max_completion_tokens or chat.max_tokens
        if asked is not None and asked > limits.max_tokens:
            return error(
                400,
                f"max_tokens is {asked}; this server answers with at most {limits.max_tokens} tokens "
                "(ftassets serve --max-tokens)",
                param="max_tokens",
            )
        if not admission.enter():
            return error(
                429,
                f"the server is busy: one answer is being generated and {limits.queue} request(s) wait "
                f"(ftassets serve --queue {limits.queue}); retry shortly",
                code="queue_full",
                **{"Retry-After": "1"},
            )
        messages = [message.as_chat() for message in chat.messages]
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        worker.submit(_generate, engine, messages, chat, asked, limits, admission, loop, events)
        kind, value = await events.get()
        if kind == "error":
            return _failure(value)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return StreamingResponse(_sse(request_id, chat, events, include_usage), media_type="text/event-stream")
        pieces = []
        while True:
            kind, value = await events.get()
            if kind == "piece":
                pieces.append(value)
            elif kind == "error":
                return _failure(value)
            else:
                return JSONResponse(_completion(request_id, value, "".join(pieces)))

    def _failure(problem: BaseException) -> JSONResponse:
        if isinstance(problem, PromptTooLong):
            return error(400, str(problem), param="messages", code="context_length_exceeded")
        return error(500, f"generation failed: {type(problem).__name__}: {problem}")

    def _envelope(request_id: str, **fields) -> dict[str, Any]:
        return {
            "id": request_id,
            "created": int(time.time()),
            "model": engine.name,
            "system_fingerprint": data_version,
            **fields,
        }

    def _usage(done: Completion) -> dict[str, Any]:
        return {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        }

    def _completion(request_id: str, done: Completion, text: str) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": done.finish_reason}
        return _envelope(request_id, object="chat.completion", choices=[choice], usage=_usage(done))

    async def _sse(request_id: str, chat: ChatRequest, events: asyncio.Queue, include_usage: bool):
        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
            payload = _envelope(request_id, object="chat.completion.chunk", choices=choices, **extra)
            return f"data: {json.dumps(payload)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        while True:
            kind, value = await events.get()
            if kind == "piece":
                yield chunk({"content": value})
            elif kind == "error":
                body = {"error": {"message": f"generation failed: {value}", "type": "server_error"}}
                yield f"data: {json.dumps(body)}\n\n"
                return
            else:
                yield chunk({}, value.finish_reason)
                if include_usage:
                    payload = _envelope(request_id, object="chat.completion.chunk", choices=[], usage=_usage(value))
                    yield f"data: {json.dumps(payload)}\n\n"
                yield "data: [DONE]\n\n"
                return

    async def not_found(request: Request, problem: HTTPException) -> JSONResponse:
        return error(problem.status_code, f"{request.method} {request.url.path}: {problem.detail}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        worker.shutdown(wait=True, cancel_futures=True)

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/models/{name:path}", one_model),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
    )
    app.state.admission = admission
    return app


def _generate(engine, messages, chat: ChatRequest, asked, limits: Limits, admission: Admission, loop, events) -> None:
    """On the worker thread: check the prompt fits, then hand the answer's pieces to the request, piece by piece."""

    def send(kind: str, value) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    try:
        prompt_tokens = engine.check_fits(messages, asked or 1)
        max_tokens = asked or min(limits.max_tokens, engine.context_length - prompt_tokens)
        send("start", prompt_tokens)
        completion = Completion(prompt_tokens)
        sampling = Sampling(max_tokens, chat.temperature, chat.top_p, tuple(chat.stop or ()), chat.seed)
        for piece in engine.stream(messages, sampling, completion):
            send("piece", piece)
        send("end", completion)
    except Exception as problem:  # the request answers with it
        send("error", problem)
    finally:
        admission.leave()


class BackgroundServer:
    """``with BackgroundServer(app, port=0) as server: server.base_url``: uvicorn on a thread, for tests and the
    playground; stopped (and its engine's worker drained) when the block ends."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        from ftassets.backends.llama_cpp_server import free_port

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="ftassets-serve-http", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
