"""Run a model backend over a test split and score it; gather evaluations into a comparison."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ftassets.backends.base import ModelBackend
from ftassets.backends.openai_compatible import BackendError
from ftassets.config import ResolvedTask
from ftassets.config.schemas import EvaluationSettings
from ftassets.evaluation.retries import counting_retries, exhausted_retry_budget
from ftassets.evaluation.seed_repeats import is_seed_summary, seed_columns, with_seed_summaries
from ftassets.evaluation.significance import compare_rows, latency_summary, metric_intervals
from ftassets.evaluation.similarity import COLUMNS as SIMILARITY_COLUMNS
from ftassets.evaluation.similarity import Embedder, compares_meaning, semantic_similarity, similarity_row
from ftassets.tasks import task_type_for
from ftassets.training.tokenize import prompt_messages

IDENTITY_COLUMNS = ["model", "variant", "status"]
TIMING_COLUMNS = [
    "n",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "ttft_p50_s",
    "ttft_p95_s",
    "generated_tokens_per_s",
    "seconds",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "peak_memory_mb",
    "device",
    "cost_usd",
    "cost_per_1k_usd",
]
SIGNIFICANCE_COLUMNS = ["delta_ci_low", "delta_ci_high", "significant", "mcnemar_p"]
JUDGE_COLUMNS = ["judge_score", "judge_parse_failures"]


@dataclass(frozen=True)
class VariantEvaluation:
    row: dict[str, Any]
    predictions: pd.DataFrame


def evaluate_variant(
    backend: ModelBackend,
    task: ResolvedTask,
    test_rows: list[dict[str, Any]],
    model: str,
    variant: str,
    settings: EvaluationSettings | None = None,
    log: Callable[[str], None] | None = None,
    labels: Sequence[str] | None = None,
    embedder: Embedder | None = None,
    point_only: bool = False,
    same_rows_as: VariantEvaluation | None = None,
) -> VariantEvaluation:
    """Generate an answer for every test row, parse and score it with bootstrap intervals, time it and cost it;
    ``log``, when given, receives a progress line before generating and one after scoring.

    An API row's cost is what its calls cost (usage x the deployment's pricing); a local row's is its measured
    seconds times the configured price of its device per hour (``evaluation.price_per_device_hour_usd``).
    What retries cost is recorded too: ``retries`` (requests the client sent again after a 429, a 5xx or a lost
    connection; refused requests bill no tokens) and ``retry_wait_s`` (seconds waited before them, summed over
    concurrent requests). An endpoint still refusing when a request's retry budget runs out fails the variant with one
    ``BackendError`` naming it; nothing is scored.

    ``labels``: a classification task's label set when it comes from the data (the dataset's
    ``labels_from_rows``); without it, the labels of the test rows. A row's conversation is its ``messages`` when
    it has them, else its prompt as one user turn.

    ``embedder`` (``ftassets.evaluation.similarity.embedder_for``): for a task type whose answers are free text, the
    row gets ``semantic_similarity``, the mean cosine of each parsed answer's embedding with its reference's, and
    ``semantic_similarity_source``; each prediction its own. Without it, neither.

    ``point_only``: the metrics without their bootstrap intervals and without perplexity (the forgetting matrix
    reads one figure per task; intervals and perplexity would cost more than the generation).

    ``same_rows_as``: an evaluation of the same test rows with the same settings (a GGUF export's merged model).
    Where this variant's answers are the same texts, it takes that evaluation's metric intervals instead of
    recomputing them: the bootstrap resamples the same example sets from the same seed, so they would come out equal
    (rescoring them was about a third of the embedded model's evaluation step)."""
    settings = settings or EvaluationSettings()
    task_type = scoring_type(task, test_rows, labels)
    progress = log or (lambda line: None)
    conversations = [prompt_messages(row, task.config.system_prompt) for row in test_rows]
    progress(f"{model} {variant}: examples 0/{len(test_rows)}, generating")
    start = time.perf_counter()
    with counting_retries() as retries:
        try:
            generations = backend.generate(conversations, task.max_new_tokens)
        except BackendError as error:
            if not exhausted_retry_budget(error):
                raise
            raise BackendError(
                f"{model} {variant} on {task.name!r}: {error}; still refused after {retries.retries} retries "
                f"({retries.wait_s:.1f} s waited), so nothing was scored; try again later, or raise max_retries or "
                "lower concurrency of this base (configs/models.yaml; an Azure endpoint's in configs/azure.yaml)"
            ) from None
    seconds = time.perf_counter() - start
    texts = [g.text for g in generations]
    scored = task_type.score(test_rows, texts)
    metrics = {name: float(scored.metrics.get(name, math.nan)) for name in task_type.metric_names}
    interval_metrics = {k: v for k, v in metrics.items() if k != "parse_failures"}
    intervals = (
        {}
        if point_only
        else _intervals_of_same_answers(same_rows_as, test_rows, texts, interval_metrics)
        or metric_intervals(
            scored.per_example,
            interval_metrics,
            lambda sample: task_type.score([test_rows[i] for i in sample], [texts[i] for i in sample]).metrics,
            confidence=settings.confidence,
            resamples=settings.bootstrap_resamples,
        )
    )
    latency = latency_summary([g.latency_s for g in generations] or [0.0])
    first_tokens = [g.first_token_s for g in generations if g.first_token_s is not None]
    first_token = latency_summary(first_tokens) if first_tokens else {"p50": math.nan, "p95": math.nan}
    completion_tokens = sum(g.completion_tokens for g in generations)
    perplexity = (
        None
        if point_only
        else backend.perplexity(
            [r["prompt"] for r in test_rows], [r["answer"] for r in test_rows], task.config.system_prompt
        )
    )
    judged = {}
    if settings.judge.enabled and task.name in settings.judge.tasks:
        from ftassets.evaluation.judge import LLMJudge

        judged = LLMJudge.from_settings(settings.judge).score(
            [r["prompt"] for r in test_rows], [r["answer"] for r in test_rows], texts
        )
    similarities = None
    if embedder is not None and compares_meaning(task_type):
        parsed_answers = [e.get("parsed") for e in scored.per_example]
        similarities = semantic_similarity(embedder, parsed_answers, [r["answer"] for r in test_rows])
    device = getattr(backend, "device", "api").split(":")[0]
    cost = _cost_usd(generations, seconds, local_cost_usd(seconds, device, settings))
    row = {
        "model": model,
        "variant": variant,
        "status": "ok",
        **metrics,
        **{
            f"{name}_ci_{end}": bound
            for name, (low, high) in intervals.items()
            for end, bound in (("low", low), ("high", high))
        },
        "perplexity": math.nan if perplexity is None else perplexity,
        **(similarity_row(embedder, similarities) if similarities is not None else {}),
        **judged,
        "n": len(test_rows),
        "latency_mean_s": latency["mean"],
        "latency_p50_s": latency["p50"],
        "latency_p95_s": latency["p95"],
        "latency_p99_s": latency["p99"],
        "ttft_p50_s": first_token["p50"],
        "ttft_p95_s": first_token["p95"],
        "generated_tokens_per_s": completion_tokens / seconds if seconds else 0.0,
        "seconds": seconds,
        "prompt_tokens": sum(g.prompt_tokens for g in generations),
        "cached_tokens": sum(g.cached_tokens for g in generations),
        "completion_tokens": completion_tokens,
        "reasoning_tokens": sum(g.reasoning_tokens for g in generations),
        "peak_memory_mb": float(getattr(backend, "peak_memory_mb", math.nan)),
        "device": device,
        "cost_usd": cost,
        "cost_per_1k_usd": cost / max(len(test_rows), 1) * 1000,
        "retries": retries.retries,
        "retry_wait_s": retries.wait_s,
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
            "first_token_s": [g.first_token_s for g in generations],
            "cost_usd": [g.cost_usd for g in generations],
            **({"semantic_similarity": similarities} if similarities is not None else {}),
        }
    )
    progress(
        f"{model} {variant}: examples {len(test_rows)}/{len(test_rows)} in {seconds:.1f} s, "
        f"{task.primary_metric} {metrics.get(task.primary_metric, math.nan):.3f}"
    )
    return VariantEvaluation(row, predictions)


def _intervals_of_same_answers(
    earlier: VariantEvaluation | None, test_rows: list[dict[str, Any]], texts: list[str], metrics: dict[str, float]
) -> dict[str, tuple[float, float]] | None:
    """``earlier``'s interval of every metric in ``metrics`` when it answered the same rows with the same texts."""
    if earlier is None:
        return None
    answers = earlier.predictions
    if answers["id"].tolist() != [row["id"] for row in test_rows] or answers["prediction"].tolist() != texts:
        return None
    bounds = [(f"{name}_ci_low", f"{name}_ci_high") for name in metrics]
    if not all(low in earlier.row and high in earlier.row for low, high in bounds):
        return None
    return {name: (earlier.row[low], earlier.row[high]) for name, (low, high) in zip(metrics, bounds)}


def scoring_type(task: ResolvedTask, test_rows: list[dict[str, Any]], labels: Sequence[str] | None = None):
    """The task type that parses and scores answers to ``test_rows``: with ``labels`` where the label set comes from
    the data, else (a classification task) the labels of the test rows."""
    task_type = task_type_for(task, labels)
    if labels is None and task_type.label_field and getattr(task_type, "labels", ()) is None:
        task_type = task_type.with_labels(sorted({row[task_type.label_field] for row in test_rows}))
    return task_type


def local_cost_usd(seconds: float, device: str, settings: EvaluationSettings) -> float:
    """What ``seconds`` of a local model on ``device`` cost at the configured price of that device per hour."""
    return seconds / 3600 * settings.price_per_device_hour_usd.get(device, math.nan)


def _cost_usd(generations: list, seconds: float, device_cost: float) -> float:
    """Billed usage where the backend prices its calls (NaN when some call has no price), else device time."""
    if any(g.cost_usd is not None for g in generations):
        return math.nan if any(g.cost_usd is None for g in generations) else sum(g.cost_usd for g in generations)
    return device_cost


def comparison_table(
    task: ResolvedTask,
    model_names: list[str],
    evaluations: dict[str, pd.DataFrame],
    predictions: pd.DataFrame | None = None,
    repeat_groups: dict[str, tuple[str, ...]] | None = None,
    settings: EvaluationSettings | None = None,
) -> pd.DataFrame:
    """One row per (model, variant): every model entry appears, a missing evaluation as ``missing``.

    ``delta_<primary metric>`` is each fine-tuned row's gain over its own base row. An entry with seed repeats
    (``repeat_groups``, read with the evaluations' ``predictions``) also gets a row summarizing its seeds
    (``ftassets/evaluation/seed_repeats.py``).
    """
    metric_names = list(task_type_for(task).metric_names)
    metric_columns = [
        c for m in metric_names for c in ((m,) if m == "parse_failures" else (m, f"{m}_ci_low", f"{m}_ci_high"))
    ]
    frames = []
    for model in model_names:
        frame = evaluations.get(model)
        if frame is None or frame.empty:
            frame = pd.DataFrame(
                [{"model": model, "variant": variant, "status": "missing"} for variant in ("base", "finetuned")]
            )
        frames.append(frame)
    export_columns = [
        "quant_type",
        "file_size_mb",
        "merged_size_mb",
        f"delta_vs_merged_{task.primary_metric}",
        "seconds_vs_merged",
    ]
    present = lambda columns: [c for c in columns if any(c in f for f in frames)]  # noqa: E731
    table = pd.concat(frames, ignore_index=True).reindex(
        columns=IDENTITY_COLUMNS
        + metric_columns
        + ["perplexity"]
        + present(SIMILARITY_COLUMNS)
        + present(JUDGE_COLUMNS)
        + TIMING_COLUMNS
        + SIGNIFICANCE_COLUMNS
        + present(export_columns)
    )
    primary = task.primary_metric
    base_scores = table[table.variant == "base"].set_index("model")[primary]
    table.insert(
        len(IDENTITY_COLUMNS) + len(metric_columns),
        f"delta_{primary}",
        (table[primary] - table["model"].map(base_scores)).where(table.variant != "base"),
    )
    groups = {group: members for group, members in (repeat_groups or {}).items() if group in model_names}
    return with_seed_summaries(table, predictions, groups, primary, settings or EvaluationSettings())


def significance(predictions: pd.DataFrame, confidence: float = 0.95, resamples: int = 1000) -> pd.DataFrame:
    """Each fine-tuned row against its base on the same examples: paired bootstrap interval of the difference
    in per-example score (``correct``), a 95 % significance flag, and McNemar's p-value when scores are 0/1."""
    binary = bool(predictions["correct"].isin((0.0, 1.0)).all())
    compared = compare_rows(predictions, metric_is_binary=binary, confidence=confidence, resamples=resamples)
    columns = {"ci_low": "delta_ci_low", "ci_high": "delta_ci_high"}
    return compared.rename(columns=columns).drop(columns=["n", "delta", "mcnemar_significant"], errors="ignore")


def summary_columns(task: ResolvedTask, table: pd.DataFrame) -> list[str]:
    """The columns a reader scans first: metrics (the primary one with its interval), the gain over base and
    whether it is significant (with the spread over seeds where an entry has seed repeats), latency percentiles and
    cost; the full table keeps everything."""
    primary = task.primary_metric
    metrics = list(task_type_for(task).metric_names)
    wanted = (
        IDENTITY_COLUMNS
        + [primary, f"{primary}_ci_low", f"{primary}_ci_high"]
        + [m for m in metrics if m != primary]
        + [
            f"delta_{primary}",
            *seed_columns(primary)[1:],
            "significant",
            "seed_aware_p",
            "mcnemar_p",
            "perplexity",
            *SIMILARITY_COLUMNS,
            "latency_p50_s",
            "latency_p95_s",
            "cost_per_1k_usd",
        ]
    )
    return [column for column in wanted if column in table.columns]


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3f")


def leaderboard(
    comparisons: dict[str, pd.DataFrame], primary_metrics: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(best row per task, model entries by average rank) across the tasks' comparison tables.

    Each model entry is ranked within a task by its fine-tuned row's primary metric (its base row when it
    has no fine-tune), 1 = best, ties sharing the better rank; its average rank is over the tasks where it
    was evaluated. An entry with seed repeats is ranked once, by its ``finetuned-N-seeds`` row (the mean over its
    seeds), and its repeats are not ranked on their own.
    """
    best, ranked = [], []
    for task, table in sorted(comparisons.items()):
        metric = primary_metrics[task]
        evaluated = table[table.status == "ok"]
        if evaluated.empty:
            continue
        top = evaluated.loc[evaluated[metric].idxmax()]
        best.append({"task": task, "metric": metric, "model": top.model, "variant": top.variant, "score": top[metric]})
        if "repeat_of" in evaluated:  # a group is one entry: its seeds' mean, not each seed
            evaluated = evaluated[evaluated.repeat_of.isna() | (evaluated.model == evaluated.repeat_of)]
        entries = evaluated.sort_values("variant", key=_ranked_variant_first, kind="stable").drop_duplicates("model")
        ranks = entries[metric].rank(ascending=False, method="min")
        ranked += [
            {"model": m, "task": task, "rank": r, "score": v} for m, r, v in zip(entries.model, ranks, entries[metric])
        ]
    best_table = pd.DataFrame(best, columns=["task", "metric", "model", "variant", "score"])
    if not ranked:
        return best_table, pd.DataFrame(columns=["model", "average_rank", "tasks"])
    long = pd.DataFrame(ranked)
    scores = long.pivot(index="model", columns="task", values="score")
    board = long.groupby("model").agg(average_rank=("rank", "mean"), tasks=("task", "count")).join(scores)
    return best_table, board.sort_values(["average_rank", "model"]).reset_index()


def _ranked_variant_first(variants: pd.Series) -> pd.Series:
    """The order in which an entry's rows are tried for its rank: a seed group's summary, its fine-tune, the rest."""
    return variants.map(lambda name: 0 if is_seed_summary(name) else 1 if name == "finetuned" else 2)
