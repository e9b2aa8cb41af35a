"""Against real Azure OpenAI: run only when the AZURE_* variables are set (never on our machines, which
cannot reach Azure). They spend a little money: a few GPT-5 nano calls; fine-tuning only with
FTASSETS_LIVE_FINE_TUNING=1 (it bills training and an hour of hosting at most, torn down at the end)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftassets.config import load_project_config
from ftassets.config.schemas import EvaluationSettings

REPO = Path(__file__).resolve().parents[1]
DATA_PLANE = ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")
CONTROL_PLANE = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_ACCOUNT")


def _requires(names: tuple[str, ...]):
    missing = [name for name in names if not os.environ.get(name)]
    return pytest.mark.skipif(bool(missing), reason=f"live Azure test: {', '.join('$' + m for m in missing)} not set")


@_requires(DATA_PLANE)
def test_live_gpt5_nano_answers_with_usage_and_cost():
    from ftassets.backends.factory import backend_for_base

    project = load_project_config(REPO / "configs")
    with backend_for_base(project, "gpt-5-nano", Path("unused"), "cpu", EvaluationSettings()) as backend:
        [generation] = backend.generate(
            [[{"role": "user", "content": "Answer with one word: is the sky blue? yes or no"}]], 16
        )
    assert generation.text.strip() and generation.prompt_tokens > 0 and generation.completion_tokens > 0
    assert generation.cost_usd is not None and 0 < generation.cost_usd < 0.01


@_requires(DATA_PLANE + CONTROL_PLANE)
@pytest.mark.skipif(
    os.environ.get("FTASSETS_LIVE_FINE_TUNING") != "1",
    reason="live fine-tuning bills training and hosting: set FTASSETS_LIVE_FINE_TUNING=1 to run it",
)
def test_live_fine_tuning_lifecycle(tmp_path):
    from ftassets.azure.lifecycle import fine_tune_and_deploy, teardown_deployments
    from ftassets.backends.factory import backend_for_cloud_finetune
    from ftassets.training.recipes import parse_recipe

    project = load_project_config(REPO / "configs")
    rows = [
        {
            "prompt": f"Review: product {i} is {'great' if i % 2 else 'awful'}",
            "answer": "positive" if i % 2 else "negative",
        }
        for i in range(20)
    ]
    recipe = parse_recipe(
        {"method": "azure_sft", "epochs": 1, "training_type": "developerTier", "deployment_sku": "DeveloperTier"}
    )
    tuned = fine_tune_and_deploy(
        project,
        "gpt-4.1-mini-sft",
        "classification",
        recipe,
        {"train": rows, "validation": rows[:10]},
        tmp_path,
        "live0000",
        print,
    )
    try:
        with backend_for_cloud_finetune(project, "gpt-4.1-mini", tuned.manifest_facts(), "live") as backend:
            assert backend.generate([[{"role": "user", "content": rows[1]["prompt"]}]], 4)[0].text.strip()
    finally:
        teardown_deployments(project, [tuned.deployment.name], print)
