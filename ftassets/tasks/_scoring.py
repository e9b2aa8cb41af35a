"""Parsing and library-metric helpers shared by the task types."""

from __future__ import annotations

from statistics import fmean

import sacrebleu
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_ROUGE = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def first_line(text: object) -> str | None:
    """The first non-blank line of a model's text, stripped; None when there is none."""
    if not isinstance(text, str):
        return None
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return None


def zero_metrics(metric_names: tuple[str, ...]) -> dict[str, float]:
    return {name: 0.0 for name in metric_names}


def rouge_f_measures(prediction: str, reference: str) -> dict[str, float]:
    scores = _ROUGE.score(reference, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def mean_rouge(per_example_rouge: list[dict[str, float]]) -> dict[str, float]:
    return {name: fmean(scores[name] for scores in per_example_rouge) for name in ROUGE_TYPES}


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU on a 0-1 scale; effective order keeps one-word answers from scoring zero."""
    bleu = sacrebleu.corpus_bleu(predictions, [references], use_effective_order=True)
    return min(1.0, bleu.score / 100)


def corpus_chrf(predictions: list[str], references: list[str]) -> float:
    """Corpus chrF (sacrebleu, character n-gram F-score) on a 0-1 scale."""
    return min(1.0, sacrebleu.corpus_chrf(predictions, [references]).score / 100)


def score_generations(
    parsed: list[str | None], references: list[str]
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """ROUGE-1/2/L (mean F-measure), corpus BLEU and chrF, and parse failures for free-text answers, plus
    per-example ROUGE."""
    outputs = [answer or "" for answer in parsed]
    per_example = [rouge_f_measures(output, reference) for output, reference in zip(outputs, references)]
    metrics = {
        **mean_rouge(per_example),
        "bleu": corpus_bleu(outputs, references),
        "chrf": corpus_chrf(outputs, references),
        "parse_failures": float(parsed.count(None)),
    }
    return metrics, per_example
