"""The comparison report and the leaderboard, on hand-made evaluation tables."""

import pandas as pd
import pytest

from ftassets.config import load_project_config
from ftassets.evaluation.evaluate import comparison_table, leaderboard
from ftassets.evaluation.report import render, worst_examples


@pytest.fixture(scope="module")
def task():
    return load_project_config().tasks["classification"]


def evaluation_rows(model: str, base: float, tuned: float) -> pd.DataFrame:
    rows = []
    for variant, accuracy in (("base", base), ("finetuned", tuned)):
        rows.append(
            {
                "model": model,
                "variant": variant,
                "status": "ok",
                "accuracy": accuracy,
                "accuracy_ci_low": accuracy - 0.05,
                "accuracy_ci_high": accuracy + 0.05,
                "macro_f1": accuracy,
                "parse_failures": 0.0,
                "n": 10,
                "latency_p50_s": 0.1,
                "latency_p95_s": 0.2,
                "latency_p99_s": 0.3,
                "cost_per_1k_usd": 0.01 + accuracy / 100,
                "significant": None if variant == "base" else tuned - base > 0.2,
            }
        )
    return pd.DataFrame(rows)


def predictions(model: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(4),
            "model": model,
            "variant": "finetuned",
            "prompt": [f"p{i}\nsecond line" for i in range(4)],
            "reference": "positive",
            "prediction": ["positive", "<b>negative</b>", "positive", "neutral"],
            "parsed": ['"positive"', "null", '"positive"', '"neutral"'],
            "correct": [1.0, 0.0, 1.0, 0.0],
        }
    )


def test_report_has_tables_figures_and_escaped_worst_examples(task):
    table = comparison_table(
        task, ["a", "b", "c"], {"a": evaluation_rows("a", 0.0, 0.8), "b": evaluation_rows("b", 0.0, 0.5)}
    )
    report = render(task, table, pd.concat([predictions("a"), predictions("b")]))
    markdown, page = report.markdown, report.html
    assert page.count("src='data:image/png;base64,") == 3 and markdown.count("](data:image/png;base64,") == 3
    assert sorted(report.figures) == ["accuracy.png", "latency.png", "quality_vs_cost.png"]
    assert all(png.startswith(b"\x89PNG") for png in report.figures.values())
    assert "&lt;b&gt;negative&lt;/b&gt;" in page and "<b>negative</b>" not in page, "predictions are escaped"
    assert "p0<br>second line" in page, "a prompt's line breaks show as line breaks"
    assert "delta_accuracy" in markdown and "cost_per_1k_usd" in markdown
    assert markdown.count("## Confusion matrix:") == 2 and "(unparsed)" in page
    summary = markdown.split("\n\n")[1]
    assert "| c " not in summary and "Not evaluated yet: c." in markdown, "the summary shows evaluated rows only"


def test_report_files_are_written_beside_each_other(task, tmp_path):
    table = comparison_table(task, ["a"], {"a": evaluation_rows("a", 0.0, 0.8)})
    render(task, table, predictions("a")).write(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"report.md", "report.html", "figures"}
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "accuracy.png",
        "latency.png",
        "quality_vs_cost.png",
    ]


def test_confusion_matrix_counts_reference_against_parsed_answers():
    from ftassets.evaluation.report import confusion_matrices

    matrix = confusion_matrices(predictions("a"))["a"]
    assert list(matrix.columns) == ["neutral", "positive", "(unparsed)"]
    assert matrix.loc["positive"].tolist() == [1, 2, 1]


def test_worst_examples_are_the_lowest_scoring_per_model():
    worst = worst_examples(pd.concat([predictions("a"), predictions("b")]), count=2)
    assert list(worst.model) == ["a", "a", "b", "b"] and (worst.correct == 0.0).all()


def test_leaderboard_best_rows_and_average_ranks(task):
    first = comparison_table(
        task, ["a", "b"], {"a": evaluation_rows("a", 0.0, 0.8), "b": evaluation_rows("b", 0.0, 0.5)}
    )
    second = comparison_table(
        task, ["a", "b"], {"a": evaluation_rows("a", 0.1, 0.3), "b": evaluation_rows("b", 0.1, 0.6)}
    )
    best, board = leaderboard({"t1": first, "t2": second}, {"t1": "accuracy", "t2": "accuracy"})
    assert best.set_index("task").model.to_dict() == {"t1": "a", "t2": "b"}
    assert board.set_index("model").average_rank.to_dict() == {"a": 1.5, "b": 1.5}
    assert list(board.columns[:3]) == ["model", "average_rank", "tasks"]


def test_the_report_says_what_its_intervals_cover_and_warns_where_they_do_not_support_a_difference(task):
    """Entry "a" gains 0.8 (significant); "b" gains 0.1 (not significant); "c" and "d" fine-tune to 0.80 and 0.78
    with overlapping intervals."""
    rows = {name: evaluation_rows(name, 0.0, tuned) for name, tuned in (("a", 0.95), ("b", 0.1), ("c", 0.8))}
    rows["d"] = evaluation_rows("d", 0.0, 0.78)
    table = comparison_table(task, list(rows), rows)
    table.loc[table.variant == "finetuned", "delta_ci_low"] = [0.7, -0.05, 0.6, 0.6]
    table.loc[table.variant == "finetuned", "delta_ci_high"] = [0.9, 0.25, 0.9, 0.9]
    report = render(task, table, pd.DataFrame())
    assert "## How to read these numbers" in report.markdown and "<h2>How to read these numbers</h2>" in report.html
    notes = report.markdown.split("## How to read these numbers")[1]
    assert "same 10 test examples" in notes and "one seed" in notes and "paired bootstrap" in notes
    assert "b finetuned is not distinguishable from its base (gain +0.100, interval [-0.050, +0.250]" in notes
    assert "a finetuned is not distinguishable" not in notes
    assert "c (0.800) and d (0.780) have overlapping intervals" in notes
    assert "a (0.950) and c" not in notes, "0.95 +- 0.05 and 0.80 +- 0.05 do not overlap"
