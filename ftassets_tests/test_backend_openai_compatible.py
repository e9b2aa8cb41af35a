"""The OpenAI-compatible backend through the real openai SDK against a loopback /v1/chat/completions server
that streams server-sent events, reports usage with cached and reasoning tokens, rejects GPT-5's unsupported
parameters and rate-limits once with retry-after."""

import math

import pytest
from fakes.openai_chat import ChatEndpoint, serving

from ftassets.backends.openai_compatible import BackendError, OpenAICompatibleBackend
from ftassets.config.schemas import EvaluationSettings, TokenPricing


@pytest.fixture()
def base_url():
    ChatEndpoint.requests, ChatEndpoint.throttle_once = [], set()
    with serving(ChatEndpoint) as server:
        yield f"http://127.0.0.1:{server.server_port}/v1"


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
    body = ChatEndpoint.requests[0]["body"]
    assert (
        ChatEndpoint.requests[0]["auth"] == "Bearer key" and ChatEndpoint.requests[0]["path"] == "/v1/chat/completions"
    )
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
    body = ChatEndpoint.requests[0]["body"]
    assert body["temperature"] == 0 and body["max_tokens"] == 7 and "stream" not in body


def test_a_rate_limited_request_is_retried_after_the_servers_delay(base_url):
    ChatEndpoint.throttle_once = {"busy"}
    backend = OpenAICompatibleBackend.for_base_url(base_url, "key", "local", max_retries=2)
    assert [g.text for g in backend.generate(conversations("busy", "calm"), 4)] == ["BUSY", "CALM"]
    assert [r["body"]["messages"][-1]["content"] for r in ChatEndpoint.requests].count("busy") == 2


def test_a_refused_parameter_fails_naming_the_backend_and_the_servers_reason(base_url):
    backend = OpenAICompatibleBackend.for_base_url(
        base_url, "key", "gpt-5", reasoning_model=False, name="misconfigured", max_retries=0
    )
    with pytest.raises(
        BackendError,
        match=r"'misconfigured' \(model 'gpt-5' at http://127\.0\.0\.1:\d+/v1/\)"
        r".*400.*Unsupported parameter: 'max_tokens'",
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


def test_the_playground_streams_an_api_model_with_its_settings_usage_and_cost(base_url):
    from ftassets.serving.engines import ApiEngine, Completion, Sampling

    reasoning = ApiEngine(
        OpenAICompatibleBackend.for_base_url(
            base_url, "key", "gpt-5-mini", reasoning_model=True, pricing=PRICING, name="gpt-5-mini"
        ),
        "gpt-5-mini/base",
    )
    completion = Completion(prompt_tokens=0)
    sampling = Sampling(max_tokens=16, temperature=0.7, top_p=0.9, stop=("###",))
    pieces = list(reasoning.stream(conversations("hello there")[0], sampling, completion))
    assert "".join(pieces) == "HELLO THERE"
    assert (completion.prompt_tokens, completion.completion_tokens) == (20, 8)
    assert completion.cost_usd == pytest.approx((16 * 1.25 + 4 * 0.125 + 8 * 10.0) / 1e6)
    assert completion.finish_reason and completion.seconds >= completion.first_token_s > 0
    body = ChatEndpoint.requests[-1]["body"]
    assert "temperature" not in body and "top_p" not in body and body["stop"] == ["###"]

    plain = ApiEngine(OpenAICompatibleBackend.for_base_url(base_url, "key", "gpt-4.1-mini", name="m"), "m/base")
    completion = Completion(prompt_tokens=0)
    assert "".join(plain.stream(conversations("again")[0], sampling, completion)) == "AGAIN"
    body = ChatEndpoint.requests[-1]["body"]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.7, 0.9, 16, ["###"])
    assert completion.cost_usd is None
