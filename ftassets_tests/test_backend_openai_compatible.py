"""The OpenAI-compatible backend through the real openai SDK against a loopback /v1/chat/completions server
that streams server-sent events, reports usage with cached and reasoning tokens, rejects GPT-5's unsupported
parameters and rate-limits once with retry-after."""

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ftassets.backends.openai_compatible import BackendError, OpenAICompatibleBackend
from ftassets.config.schemas import EvaluationSettings, TokenPricing

REASONING_MODELS = ("gpt-5", "gpt-5-mini")


class Endpoint(BaseHTTPRequestHandler):
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


@pytest.fixture()
def base_url():
    Endpoint.requests, Endpoint.throttle_once = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


PRICING = TokenPricing(input_per_1m=1.25, cached_input_per_1m=0.125, output_per_1m=10.0, as_of="2025-08-07")


def conversations(*prompts):
    return [[{"role": "system", "content": "be brief"}, {"role": "user", "content": p}] for p in prompts]


def test_streamed_generations_keep_order_and_carry_usage_ttft_and_cost(base_url):
    backend = OpenAICompatibleBackend.for_base_url(
        base_url,
        "key",
        "gpt-5-mini",
        reasoning_model=True,
        reasoning_effort="minimal",
        verbosity="low",
        pricing=PRICING,
        concurrency=4,
        name="gpt-5-mini",
    )
    prompts = [f"prompt {i}" for i in range(10)]
    generations = backend.generate(conversations(*prompts), max_new_tokens=16)
    assert [g.text for g in generations] == [p.upper() for p in prompts]
    first = generations[0]
    assert (first.prompt_tokens, first.cached_tokens, first.completion_tokens, first.reasoning_tokens) == (20, 4, 8, 5)
    assert first.cost_usd == pytest.approx((16 * 1.25 + 4 * 0.125 + 8 * 10.0) / 1e6)
    assert 0 < first.first_token_s <= first.latency_s
    body = Endpoint.requests[0]["body"]
    assert Endpoint.requests[0]["auth"] == "Bearer key" and Endpoint.requests[0]["path"] == "/v1/chat/completions"
    assert body["max_completion_tokens"] == 16 + backend.reasoning_budget_tokens
    assert (
        body["reasoning_effort"] == "minimal"
        and body["verbosity"] == "low"
        and body["stream_options"] == {"include_usage": True}
    )
    assert "temperature" not in body and "max_tokens" not in body


def test_other_models_decode_greedily_without_streaming(base_url):
    backend = OpenAICompatibleBackend.for_base_url(base_url, "key", "local-gguf", stream=False)
    [generation] = backend.generate(conversations("hello"), max_new_tokens=7)
    assert generation.text == "HELLO" and generation.first_token_s is None and generation.cost_usd is None
    body = Endpoint.requests[0]["body"]
    assert body["temperature"] == 0 and body["max_tokens"] == 7 and "stream" not in body


def test_a_rate_limited_request_is_retried_after_the_servers_delay(base_url):
    Endpoint.throttle_once = {"busy"}
    backend = OpenAICompatibleBackend.for_base_url(base_url, "key", "local", max_retries=2)
    assert [g.text for g in backend.generate(conversations("busy", "calm"), 4)] == ["BUSY", "CALM"]
    assert [r["body"]["messages"][-1]["content"] for r in Endpoint.requests].count("busy") == 2


def test_a_refused_parameter_fails_naming_the_backend_and_the_servers_reason(base_url):
    backend = OpenAICompatibleBackend.for_base_url(
        base_url, "key", "gpt-5", reasoning_model=False, name="misconfigured", max_retries=0
    )
    with pytest.raises(
        BackendError,
        match=r"'misconfigured' \(model 'gpt-5' at http://127\.0\.0\.1:\d+/v1/\).*400.*Unsupported parameter: 'max_tokens'",
    ):
        backend.generate(conversations("x"), 4)


def test_an_api_row_is_costed_from_usage_and_reports_time_to_first_token(base_url):
    from ftassets.config import load_project_config
    from ftassets.evaluation.evaluate import evaluate_variant

    task = load_project_config().tasks["classification"]
    rows = [{"id": f"t{i}", "prompt": f"text {i}", "answer": "positive", "label": "positive"} for i in range(5)]
    backend = OpenAICompatibleBackend.for_base_url(base_url, "key", "gpt-5-nano", reasoning_model=True, pricing=PRICING)
    result = evaluate_variant(backend, task, rows, "gpt-5-nano", "base", EvaluationSettings(bootstrap_resamples=50))
    row = result.row
    assert row["device"] == "api" and math.isnan(row["perplexity"])
    assert row["cost_usd"] == pytest.approx(5 * PRICING.cost(20, 4, 8))
    assert row["cost_per_1k_usd"] == pytest.approx(1000 * PRICING.cost(20, 4, 8))
    assert 0 < row["ttft_p50_s"] <= row["ttft_p95_s"] and row["reasoning_tokens"] == 25 and row["cached_tokens"] == 20
    assert result.predictions["cost_usd"].notna().all() and result.predictions["first_token_s"].notna().all()


def test_pricing_bills_cached_input_at_input_price_when_it_has_none():
    pricing = TokenPricing(input_per_1m=2.0, output_per_1m=8.0, as_of="2026-01-01")
    assert pricing.cost(prompt_tokens=1000, cached_tokens=400, completion_tokens=500) == pytest.approx(
        (1000 * 2.0 + 500 * 8.0) / 1e6
    )
