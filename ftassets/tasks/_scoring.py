"""Parsing and library-metric helpers shared by the task types.

The metric libraries load on first use: ``rouge_score`` brings nltk and scipy, ``torchmetrics`` brings torch and
transformers, and every process that loads the Dagster definitions (the code server, each run's worker, a sensor
tick) imports the task types without scoring anything.
"""

from __future__ import annotations

from functools import cache
from statistics import fmean
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@cache
def _rouge() -> RougeScorer:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def squad(predictions: list[dict], targets: list[dict]) -> dict:
    """torchmetrics' SQuAD exact match and token F1 (0-100) of ``predictions`` against ``targets``."""
    from torchmetrics.functional.text import squad as torchmetrics_squad

    return torchmetrics_squad(predictions, targets)


def first_line(text: object) -> str | None:
    """The first non-blank line of a model's text, stripped; None when there is none."""
    if not isinstance(text, str):
        return None
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return None


def whole_text(text: object) -> str | None:
    """A model's whole text, stripped; None when it is blank."""
    return text.strip() or None if isinstance(text, str) else None


def zero_metrics(metric_names: tuple[str, ...]) -> dict[str, float]:
    return {name: 0.0 for name in metric_names}


def rouge_f_measures(prediction: str, reference: str) -> dict[str, float]:
    scores = _rouge().score(reference, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def mean_rouge(per_example_rouge: list[dict[str, float]]) -> dict[str, float]:
    return {name: fmean(scores[name] for scores in per_example_rouge) for name in ROUGE_TYPES}


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU on a 0-1 scale; effective order keeps one-word answers from scoring zero."""
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(predictions, [references], use_effective_order=True)
    return min(1.0, bleu.score / 100)


def corpus_chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu, character n-gram F-score) on a 0-1 scale."""
    import sacrebleu

    return min(1.0, sacrebleu.corpus_chrf(predictions, [references]).score / 100)


GENERATION_METRICS = (*ROUGE_TYPES, "bleu", "chrf", "exact_match", "token_f1")
"""The metrics a generation task's ``params.metrics`` may choose from."""


def generation_metric_problems(params: dict, default: tuple[str, ...]) -> list[str]:
    """Problems with ``params.metrics`` (a non-empty list of distinct GENERATION_METRICS names)."""
    metrics = params.get("metrics", list(default))
    if not isinstance(metrics, list) or not metrics or len(set(metrics)) != len(metrics):
        return [f"metrics must be a non-empty list of distinct names from {list(GENERATION_METRICS)}, got {metrics!r}"]
    if "judge" in metrics:
        return [
            "metrics: the LLM judge is not a task metric; enable it in experiments.yaml (evaluation.judge.enabled "
            "and evaluation.judge.tasks), and the comparison reports it as judge_score"
        ]
    if unknown := [name for name in metrics if name not in GENERATION_METRICS]:
        return [f"metrics has unknown name(s) {unknown}; allowed: {list(GENERATION_METRICS)}"]
    return []


def token_f1_scores(predictions: list[str], references: list[str]) -> list[float]:
    """SQuAD token-overlap F1 of each prediction (lower-cased, punctuation and articles removed), on a 0-1 scale."""
    return [
        float(
            squad([{"prediction_text": prediction, "id": "0"}], [{"answers": {"text": [reference]}, "id": "0"}])["f1"]
        )
        / 100
        for prediction, reference in zip(predictions, references)
    ]


def score_chosen_generations(
    parsed: list[str | None], references: list[str], metric_names: tuple[str, ...]
) -> tuple[dict[str, float], list[dict]]:
    """The chosen GENERATION_METRICS plus parse failures, and per example ``parsed``, ``correct`` (ROUGE-L, else
    the first chosen per-example metric) and each chosen per-example value. Exact match is case-sensitive."""
    outputs = [answer or "" for answer in parsed]
    per_example: list[dict] = [{"parsed": answer} for answer in parsed]
    metrics: dict[str, float] = {}
    if any(name in ROUGE_TYPES for name in metric_names):
        rouge = [rouge_f_measures(output, reference) for output, reference in zip(outputs, references)]
        means = mean_rouge(rouge)
        for example, scores in zip(per_example, rouge):
            example |= {name: scores[name] for name in ROUGE_TYPES if name in metric_names}
        metrics |= {name: means[name] for name in ROUGE_TYPES if name in metric_names}
    if "bleu" in metric_names:
        metrics["bleu"] = corpus_bleu(outputs, references)
    if "chrf" in metric_names:
        metrics["chrf"] = corpus_chrf(outputs, references)
    if "exact_match" in metric_names:
        matches = [output == reference for output, reference in zip(outputs, references)]
        for example, match in zip(per_example, matches):
            example["exact_match"] = match
        metrics["exact_match"] = fmean(matches)
    if "token_f1" in metric_names:
        scores = token_f1_scores(outputs, references)
        for example, score in zip(per_example, scores):
            example["token_f1"] = score
        metrics["token_f1"] = fmean(scores)
    per_example_metrics = [name for name in metric_names if name in per_example[0]] if per_example else []
    correct_from = "rougeL" if "rougeL" in metric_names else next(iter(per_example_metrics), "rougeL")
    for example, output, reference in zip(per_example, outputs, references):
        example["correct"] = (
            example[correct_from] if correct_from in example else rouge_f_measures(output, reference)["rougeL"]
        )
    metrics["parse_failures"] = float(parsed.count(None))
    return {name: metrics[name] for name in metric_names}, per_example
