"""The comparison report of one task, as markdown (Dagster metadata) and as one self-contained HTML file.

Figures are matplotlib PNGs embedded as base64, so the HTML opens offline in any browser: the primary
metric per row with its bootstrap interval, quality against cost per 1k examples, latency percentiles,
and the worst test examples of every fine-tuned model with prompt, reference and prediction.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ftassets.config import ResolvedTask
from ftassets.evaluation.evaluate import markdown_table, summary_columns
from ftassets.evaluation.seed_repeats import SEEDS_VARIANT
from ftassets.plots import data_uri, png_bytes

WORST_EXAMPLES = 3
UNPARSED = "(unparsed)"


def metric_bars(table: pd.DataFrame, metric: str) -> plt.Figure:
    labels = [f"{m}\n{v}" for m, v in zip(table.model, table.variant)]
    values = table[metric].to_numpy(dtype=float)
    low, high = (table.get(f"{metric}_ci_{end}", table[metric]).to_numpy(dtype=float) for end in ("low", "high"))
    figure, axes = plt.subplots(figsize=(max(4, 0.9 * len(table)), 3.4))
    colors = ["#9aa5b1" if v == "base" else "#2f6fdf" for v in table.variant]
    axes.bar(range(len(table)), values, color=colors, yerr=[values - low, high - values], capsize=4)
    axes.set_xticks(range(len(table)), labels, fontsize=8)
    axes.set(ylabel=metric, title=f"{metric} with 95 % bootstrap intervals")
    axes.grid(axis="y", alpha=0.3)
    return figure


def quality_vs_cost(table: pd.DataFrame, metric: str) -> plt.Figure:
    """One point per row; the base rows of entries sharing a base are one point (same scores, same cost)."""
    figure, axes = plt.subplots(figsize=(5.5, 3.6))
    points = table.assign(label=[f"{m}/{v}" for m, v in zip(table.model, table.variant)])
    base = points.variant == "base"
    shared = points[base].groupby([metric, "cost_per_1k_usd"], sort=False, dropna=False).model.agg(list).reset_index()
    shared["label"] = [
        f"base of {models[0]}" + (f" (+{len(models) - 1} entries)" if len(models) > 1 else "")
        for models in shared.model
    ]
    shared["variant"] = "base"
    for row in pd.concat([shared, points[~base]], ignore_index=True).itertuples():
        x, y = row.cost_per_1k_usd, getattr(row, metric)
        axes.scatter(x, y, color="#9aa5b1" if row.variant == "base" else "#2f6fdf")
        axes.annotate(row.label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set(xlabel="cost per 1k examples (USD)", ylabel=metric, title="quality against cost")
    axes.grid(alpha=0.3)
    return figure


def latency_bars(table: pd.DataFrame) -> plt.Figure:
    labels = [f"{m}\n{v}" for m, v in zip(table.model, table.variant)]
    figure, axes = plt.subplots(figsize=(max(4, 0.9 * len(table)), 3.2))
    positions = range(len(table))
    for offset, column in ((-0.2, "latency_p50_s"), (0.2, "latency_p95_s")):
        axes.bar([p + offset for p in positions], table[column], width=0.4, label=column.split("_")[1])
    axes.set_xticks(list(positions), labels, fontsize=8)
    axes.set(ylabel="seconds per batch", title="latency (p50, p95)")
    axes.legend()
    return figure


def worst_examples(predictions: pd.DataFrame, count: int = WORST_EXAMPLES) -> pd.DataFrame:
    """The lowest-scoring test examples of each fine-tuned model (ties in test order)."""
    tuned = predictions[predictions.variant == "finetuned"]
    worst = tuned.sort_values(["model", "correct"], kind="stable").groupby("model", sort=False).head(count)
    return worst[["model", "id", "prompt", "reference", "prediction", "correct"]]


def confusion_matrices(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per fine-tuned model, scikit-learn's confusion matrix of reference (rows) against parsed answer (columns)."""
    from sklearn.metrics import confusion_matrix

    matrices = {}
    for model, rows in predictions[predictions.variant == "finetuned"].groupby("model", sort=False):
        parsed = [json.loads(value) if isinstance(value, str) else None for value in rows.parsed]
        answers = [UNPARSED if value is None else str(value) for value in parsed]
        labels = sorted(set(rows.reference) | set(answers) - {UNPARSED}) + ([UNPARSED] if UNPARSED in answers else [])
        matrix = confusion_matrix(list(rows.reference), answers, labels=labels)
        matrices[model] = pd.DataFrame(matrix, index=pd.Index(labels, name="reference"), columns=labels)
    return matrices


@dataclass(frozen=True)
class Report:
    markdown: str
    html: str
    figures: dict[str, bytes]
    """PNG files by name (``accuracy.png``, ``quality_vs_cost.png``, ``latency.png``), also embedded in both."""

    def write(self, directory: Path) -> None:
        """``report.md``, ``report.html`` and ``figures/*.png`` in ``directory``."""
        (directory / "report.md").write_text(self.markdown)
        (directory / "report.html").write_text(self.html)
        (directory / "figures").mkdir(exist_ok=True)
        for name, png in self.figures.items():
            (directory / "figures" / name).write_bytes(png)


def reading_notes(table: pd.DataFrame, metric: str) -> list[str]:
    """What a reader needs before trusting a difference: the test size, what the intervals cover and what they do
    not, and every gain or ranking the intervals do not support."""
    evaluated = table[table.status == "ok"]
    if evaluated.empty:
        return []
    sizes = sorted({int(n) for n in evaluated["n"].dropna()}) if "n" in evaluated else []
    notes = []
    if len(sizes) == 1:
        notes.append(f"Every row is scored on the same {sizes[0]} test examples.")
    elif sizes:
        notes.append(
            f"Rows were scored on different numbers of test examples ({', '.join(map(str, sizes))}): compare with care."
        )
    notes += [
        f"Intervals are 95 % bootstrap intervals of {metric} over the test examples. The gain over an entry's own base "
        "is a paired bootstrap over the same examples, called significant when its interval excludes 0 (with "
        "McNemar's test for 0/1 scores).",
        *seed_notes(evaluated, metric),
    ]
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    for row in evaluated.itertuples():
        significant = getattr(row, "significant", None)
        if row.variant != "base" and significant is not None and not pd.isna(significant) and not significant:
            gain = getattr(row, f"delta_{metric}", float("nan"))
            interval = f"[{row.delta_ci_low:+.3f}, {row.delta_ci_high:+.3f}]" if "delta_ci_low" in table else ""
            notes.append(
                f"Warning: {row.model} {row.variant} is not distinguishable from its base (gain {gain:+.3f}, "
                f"interval {interval} includes 0)."
            )
    tuned = evaluated[evaluated.variant == "finetuned"]
    if low in tuned and high in tuned:
        rows = list(tuned.sort_values(metric, ascending=False).itertuples())
        for better, worse in zip(rows, rows[1:]):
            if getattr(better, metric) != getattr(worse, metric) and getattr(worse, high) >= getattr(better, low):
                notes.append(
                    f"Warning: {better.model} ({getattr(better, metric):.3f}) and {worse.model} "
                    f"({getattr(worse, metric):.3f}) have overlapping intervals: this test does not rank them."
                )
    return notes


def seed_notes(evaluated: pd.DataFrame, metric: str) -> list[str]:
    """How many training runs (seeds) each fine-tuned row stands for, and what its intervals cover."""
    one_seed = (
        "the intervals cover the choice of test examples, not the randomness of training, which on a small model can "
        "move a result by more than its interval"
    )
    summaries = evaluated[evaluated["seeds"].notna()] if "seeds" in evaluated else evaluated.iloc[:0]
    if summaries.empty:
        return [f"Each fine-tune is one training run (one seed): {one_seed}."]
    groups = ", ".join(dict.fromkeys(f"{row.model} ({int(row.seeds)} seeds)" for row in summaries.itertuples()))
    return [
        f"Each fine-tuned row is one training run (one seed): {one_seed}. A `{SEEDS_VARIANT.format(seeds='N')}` "
        f"row summarizes one entry trained with N seeds ({groups}): its {metric} is the mean over the seeds, "
        f"with their standard deviation ({metric}_seed_std); its interval and the significance of its gain come from a "
        "bootstrap that resamples seeds, then the same test examples for base and fine-tunes (p-value: "
        "seed_aware_p), so they cover the randomness of training too. A `gguf-<type>-N-seeds` row does the same for "
        "the N seeds' exported files."
    ]


def render(task: ResolvedTask, table: pd.DataFrame, predictions: pd.DataFrame) -> Report:
    evaluated = table[table.status == "ok"].reset_index(drop=True)
    primary = task.primary_metric
    figures = {}
    if not evaluated.empty:
        figures = {
            f"{primary}.png": (f"{primary} by row", metric_bars(evaluated, primary)),
            "quality_vs_cost.png": ("quality against cost", quality_vs_cost(evaluated, primary)),
            "latency.png": ("latency", latency_bars(evaluated)),
        }
    pngs = {name: png_bytes(figure) for name, (_, figure) in figures.items()}
    images = [(title, data_uri(pngs[name])) for name, (title, _) in figures.items()]
    summary = evaluated[summary_columns(task, table)]
    pending = list(dict.fromkeys(table.model[table.status != "ok"]))
    pending_line = f"Not evaluated yet: {', '.join(pending)}." if pending else ""
    worst = worst_examples(predictions) if not predictions.empty else pd.DataFrame()
    title = f"{task.name}: base against fine-tuned (primary metric: {primary})"

    matrices = confusion_matrices(predictions) if task.type == "classification" and "parsed" in predictions else {}
    notes = reading_notes(table, primary)
    markdown = [f"# {title}", "", markdown_table(summary), "", pending_line, ""]
    if notes:
        markdown += ["## How to read these numbers", "", *[f"- {note}" for note in notes], ""]
    markdown += [f"![{alt}]({uri})" for alt, uri in images]
    for model, matrix in matrices.items():
        markdown += ["", f"## Confusion matrix: {model} (rows: reference, columns: answer)", "", matrix.to_markdown()]
    if not worst.empty:
        markdown += ["", "## Worst examples of each fine-tuned model", "", worst.to_markdown(index=False)]

    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;font-size:.85em}"
        "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}td:first-child,th:first-child{text-align:left}"
        "pre{white-space:pre-wrap;margin:0}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        summary.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""),
        f"<p>{html.escape(pending_line)}</p>" if pending_line else "",
        "<h2>How to read these numbers</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        if notes
        else "",
        *[f"<h2>{html.escape(alt)}</h2><img alt='{html.escape(alt)}' src='{uri}'>" for alt, uri in images],
    ]
    for model, matrix in matrices.items():
        page += [
            f"<h2>Confusion matrix: {html.escape(model)} (rows: reference, columns: answer)</h2>",
            matrix.to_html(),
        ]
    if not worst.empty:
        texts = {
            column: lambda v: html.escape(str(v)).replace("\n", "<br>")
            for column in worst.columns
            if worst[column].dtype == object
        }
        page += [
            "<h2>Worst examples of each fine-tuned model</h2>",
            worst.to_html(index=False, escape=False, formatters=texts, float_format=lambda v: f"{v:.3f}"),
        ]
    page += [
        "<h2>Every column</h2>",
        table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""),
        "</body></html>",
    ]
    return Report("\n".join(markdown), "\n".join(page), pngs)
