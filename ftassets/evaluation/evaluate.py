"""Run a model backend over a test split and score it; gather evaluations into a comparison."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ftassets.backends.base import ModelBackend
from ftassets.config import ResolvedTask
from ftassets.evaluation.significance import latency_summary
from ftassets.tasks import get_task_type
from ftassets.training.tokenize import chat_messages

IDENTITY_COLUMNS = ["model", "variant", "status"]
TIMING_COLUMNS = ["n", "latency_p50_s", "latency_p95_s", "generated_tokens_per_s", "seconds"]


@dataclass(frozen=True)
class VariantEvaluation:
    row: dict[str, Any]
    predictions: pd.DataFrame


def evaluate_variant(
    backend: ModelBackend, task: ResolvedTask, test_rows: list[dict[str, Any]], model: str, variant: str
) -> VariantEvaluation:
    """Generate an answer for every test row, parse and score it, and time it."""
    task_type = get_task_type(task.type)
    conversations = [chat_messages(row["prompt"], system_prompt=task.config.system_prompt) for row in test_rows]
    start = time.perf_counter()
    generations = backend.generate(conversations, task.max_new_tokens)
    seconds = time.perf_counter() - start
    scored = task_type.score(test_rows, [g.text for g in generations])
    latency = latency_summary([g.latency_s for g in generations] or [0.0])
    completion_tokens = sum(g.completion_tokens for g in generations)
    row = {
        "model": model,
        "variant": variant,
        "status": "ok",
        **{name: float(scored.metrics.get(name, math.nan)) for name in task_type.metric_names},
        "n": len(test_rows),
        "latency_p50_s": latency["p50"],
        "latency_p95_s": latency["p95"],
        "generated_tokens_per_s": completion_tokens / seconds if seconds else 0.0,
        "seconds": seconds,
    }
    predictions = pd.DataFrame(
        {
            "id": [r["id"] for r in test_rows],
            "model": model,
            "variant": variant,
            "prompt": [r["prompt"] for r in test_rows],
            "reference": [r["answer"] for r in test_rows],
            "prediction": [g.text for g in generations],
            "parsed": [json.dumps(e.get("parsed"), default=str) for e in scored.per_example],
            "correct": [float(e.get("correct", 0.0)) for e in scored.per_example],
            "latency_s": [g.latency_s for g in generations],
            "prompt_tokens": [g.prompt_tokens for g in generations],
            "completion_tokens": [g.completion_tokens for g in generations],
        }
    )
    return VariantEvaluation(row, predictions)


def comparison_table(task: ResolvedTask, model_names: list[str], evaluations: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (model, variant): every model entry appears, a missing evaluation as ``missing``.

    ``delta_<primary metric>`` is each fine-tuned row's gain over its own base row.
    """
    metric_names = list(get_task_type(task.type).metric_names)
    frames = []
    for model in model_names:
        frame = evaluations.get(model)
        if frame is None or frame.empty:
            frame = pd.DataFrame([{"model": model, "variant": variant, "status": "missing"} for variant in ("base", "finetuned")])
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True).reindex(columns=IDENTITY_COLUMNS + metric_names + TIMING_COLUMNS)
    primary = task.primary_metric
    base_scores = table[table.variant == "base"].set_index("model")[primary]
    table[f"delta_{primary}"] = (table[primary] - table["model"].map(base_scores)).where(table.variant != "base")
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3f")
