"""Any OpenAI-compatible chat endpoint: OpenAI, Azure OpenAI (its v1 API or deployment routes), vLLM, Ollama
and llama.cpp's server all answer ``POST /chat/completions`` the same way, so one backend serves them all.

Each conversation is one request; requests run concurrently up to ``concurrency`` and come back in input
order. Streaming (on by default) measures time to first token and reads usage from the final chunk
(``stream_options.include_usage``). Reasoning models (the GPT-5 family, o-series) reject ``temperature`` and
``max_tokens``: they get ``max_completion_tokens`` (answer plus thinking budget), ``reasoning_effort`` and
``verbosity`` instead. Retries with backoff (honouring ``retry-after``) and timeouts are the openai client's. Once
one request could not connect at all, the requests still waiting fail at once with the same message.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ftassets.backends.base import Generation, ModelBackend
from ftassets.config.schemas import TokenPricing


class BackendError(RuntimeError):
    """A request the endpoint refused or could not answer, after the client's retries."""


class OpenAICompatibleBackend(ModelBackend):
    device = "api"

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        name: str,
        reasoning_model: bool = False,
        reasoning_effort: str | None = None,
        verbosity: str | None = None,
        reasoning_budget_tokens: int = 1024,
        stream: bool = True,
        concurrency: int = 8,
        pricing: TokenPricing | None = None,
        extra_body: dict[str, Any] | None = None,
        url_from: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.client, self.model, self.name, self.url_from = client, model, name, url_from
        self.unreachable: str | None = None
        self.reasoning_model, self.reasoning_effort, self.verbosity = reasoning_model, reasoning_effort, verbosity
        self.reasoning_budget_tokens, self.stream, self.concurrency = reasoning_budget_tokens, stream, concurrency
        self.pricing, self.extra_body = pricing, extra_body
        self.peak_memory_mb = float("nan")

    @classmethod
    def for_base_url(
        cls, base_url: str, api_key: str, model: str, *, timeout: float = 120.0, max_retries: int = 4, **kwargs: Any
    ) -> OpenAICompatibleBackend:
        from openai import OpenAI

        client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        return cls(client, model, name=kwargs.pop("name", model), **kwargs)

    def request_params(self, max_new_tokens: int) -> dict[str, Any]:
        """The sampling parameters of one request: greedy where the model allows it, the GPT-5 rules where not."""
        if self.reasoning_model:
            params: dict[str, Any] = {"max_completion_tokens": max_new_tokens + self.reasoning_budget_tokens}
            if self.reasoning_effort:
                params["reasoning_effort"] = self.reasoning_effort
            if self.verbosity:
                params["verbosity"] = self.verbosity
        else:
            params = {"temperature": 0.0, "max_tokens": max_new_tokens}
        if self.extra_body:
            params["extra_body"] = self.extra_body
        return params

    def generate(self, conversations: list[list[dict[str, str]]], max_new_tokens: int) -> list[Generation]:
        params = self.request_params(max_new_tokens)
        with ThreadPoolExecutor(min(self.concurrency, max(len(conversations), 1))) as pool:
            return list(pool.map(lambda messages: self._complete(messages, params), conversations))

    def _complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Generation:
        from openai import APIConnectionError, APITimeoutError, OpenAIError

        if self.unreachable:
            raise BackendError(self.unreachable)
        started = time.perf_counter()
        try:
            if self.stream:
                text, usage, first_token_s = self._streamed(messages, params, started)
            else:
                response = self.client.chat.completions.create(model=self.model, messages=messages, **params)
                text, usage, first_token_s = response.choices[0].message.content or "", response.usage, None
        except OpenAIError as error:
            if isinstance(error, APIConnectionError) and not isinstance(error, APITimeoutError):
                where = f" in {self.url_from}" if self.url_from else ""
                self.unreachable = (
                    f"model backend {self.name!r} (model {self.model!r} at {self.client.base_url}): {error}; check "
                    f"that the server is up and reachable from here and its URL{where}, then run again"
                )
                raise BackendError(self.unreachable) from None
            raise BackendError(
                f"model backend {self.name!r} (model {self.model!r} at {self.client.base_url}): {error}"
            ) from None
        return self.generation(text, time.perf_counter() - started, usage, first_token_s)

    def _streamed(
        self, messages: list[dict[str, str]], params: dict[str, Any], started: float
    ) -> tuple[str, Any, float | None]:
        parts, usage, first_token_s = [], None, None
        stream = self.client.chat.completions.create(
            model=self.model, messages=messages, stream=True, stream_options={"include_usage": True}, **params
        )
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    if first_token_s is None:
                        first_token_s = time.perf_counter() - started
                    parts.append(choice.delta.content)
        return "".join(parts), usage, first_token_s

    def generation(self, text: str, latency_s: float, usage: Any, first_token_s: float | None) -> Generation:
        prompt = getattr(usage, "prompt_tokens", None) or 0
        completion = getattr(usage, "completion_tokens", None) or 0
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None) or 0
        reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None) or 0
        cost = self.pricing.cost(prompt, cached, completion) if self.pricing and usage is not None else None
        return Generation(
            text,
            latency_s,
            prompt,
            completion,
            first_token_s=first_token_s,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            cost_usd=cost,
        )

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()
