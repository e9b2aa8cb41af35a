"""Faults on purpose: 429 storms and 5xx bursts from a loopback API (the real openai SDK), a disk that fills during
an artifact write, runs killed in the middle of a merge, a GGUF export and an evaluation, and a damaged checkpoint
on resume. Each ends either completed (within a stated budget) or with one clear line, never with half an artifact."""

from __future__ import annotations

import pytest
from fakes.openai_v1 import FakeOpenAI

from ftassets.backends.openai_compatible import BackendError, OpenAICompatibleBackend
from ftassets.config.schemas import EvaluationSettings

ROWS = [{"id": f"t{i}", "prompt": f"text {i}", "answer": "positive", "label": "positive"} for i in range(6)]


@pytest.fixture(scope="module")
def classification():
    from ftassets.config import load_project_config

    return load_project_config().tasks["classification"]


def evaluate_against(fake: FakeOpenAI, task, max_retries: int):
    from ftassets.evaluation.evaluate import evaluate_variant

    backend = OpenAICompatibleBackend.for_base_url(
        fake.base_url, "key", "local", max_retries=max_retries, stream=False, concurrency=2, name="storm-base"
    )
    return evaluate_variant(backend, task, ROWS, "storm-base", "base", EvaluationSettings(bootstrap_resamples=20))


def storm(fake: FakeOpenAI, fault: str, count: int) -> None:
    """``count`` 429s, or ``count`` 503s, each asking the client to wait 10 ms."""
    if fault == "429 storm":
        fake.throttle(count, retry_after_s="0.01")
    else:
        fake.fail(count, status=503, retry_after_s="0.01")


@pytest.mark.parametrize("fault", ["429 storm", "503 burst"])
def test_a_storm_within_the_retry_budget_is_ridden_out_and_its_retries_are_recorded(classification, fault):
    with FakeOpenAI(lambda body: "positive") as fake:
        storm(fake, fault, 5)
        result = evaluate_against(fake, classification, max_retries=4)
        retried = [r for r in fake.chat_requests() if r["headers"].get("x-stainless-retry-count", "0") != "0"]

    row = result.row
    assert row["accuracy"] == 1.0 and row["n"] == len(ROWS)
    assert len(fake.chat_requests()) == len(ROWS) + 5 and row["retries"] == len(retried) == 5
    assert row["retry_wait_s"] == pytest.approx(5 * 0.01)


@pytest.mark.parametrize("fault", ["429 storm", "503 burst"])
def test_a_storm_beyond_the_retry_budget_fails_naming_the_endpoint_and_scores_nothing(classification, fault):
    with FakeOpenAI(lambda body: "positive") as fake:
        storm(fake, fault, 1000)
        with pytest.raises(BackendError) as raised:
            evaluate_against(fake, classification, max_retries=2)
        sent = len(fake.chat_requests())

    message = str(raised.value)
    assert "\n" not in message and fake.base_url in message and fault.split()[0] in message
    assert "still refused after" in message and "raise max_retries" in message
    assert sent <= len(ROWS) * 3, "every request stops at its retry budget of 2"


def test_a_damaged_checkpoint_is_never_resumed(tiny_base_dir, color_splits_dir, tmp_path):
    """The last checkpoint garbled (same size): resumed from the one before, ending where an unbroken run ends;
    every checkpoint truncated: started over, with a log line saying why."""
    from helpers import quick_lora_recipe, train_on_cpu

    from ftassets.training.tokenize import load_tokenized

    splits = load_tokenized(color_splits_dir)
    recipe = quick_lora_recipe().model_copy(update={"max_steps": 4, "save_steps": 2, "eval_steps": 4})
    checkpoints = tmp_path / "checkpoints"
    finished = train_on_cpu(tiny_base_dir, splits, recipe, tmp_path)
    weights = checkpoints / "checkpoint-4" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)
    weights.write_bytes(bytes(data))

    lines: list[str] = []
    resumed = train_on_cpu(tiny_base_dir, splits, recipe, tmp_path, log=lines.append)
    assert any("checkpoint-4: adapter_model.safetensors is damaged" in line for line in lines), lines
    assert any(line.startswith("resuming from") and line.endswith("checkpoint-2") for line in lines)
    assert resumed.steps == 4 and resumed.final_train_loss == pytest.approx(finished.final_train_loss, abs=1e-4)

    for checkpoint in checkpoints.glob("checkpoint-*"):
        with open(checkpoint / "adapter_model.safetensors", "r+b") as handle:
            handle.truncate(100)
    lines.clear()
    restarted = train_on_cpu(tiny_base_dir, splits, recipe, tmp_path, log=lines.append)
    assert sum("is damaged" in line for line in lines) == 2 and not any("resuming" in line for line in lines)
    assert any(line.startswith("starting over from step 0") for line in lines)
    assert restarted.steps == 4 and restarted.final_train_loss == pytest.approx(finished.final_train_loss, abs=1e-4)
