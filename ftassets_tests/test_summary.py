"""The terminal summary of a run, on comparison tables built from hand-made evaluation rows."""

import re
from types import SimpleNamespace

import pandas as pd
import pytest

from ftassets.evaluation.evaluate import comparison_table
from ftassets.summary import VERBOSE_HINT, WIDTH, format_summary

TASK = SimpleNamespace(name="classification", type="classification", primary_metric="accuracy")
LONG_ENTRY = "a-remarkably-long-model-entry-name-" * 3


def evaluation_rows(model: str, base: float, tuned: float) -> pd.DataFrame:
    return pd.DataFrame(
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
            "latency_p50_s": 0.1234,
            "latency_p95_s": 0.2,
            "cost_per_1k_usd": 0.0123,
            "device": "cpu",
            "significant": None if variant == "base" else tuned - base > 0.2,
        }
        for variant, accuracy in (("base", base), ("finetuned", tuned))
    )


@pytest.fixture()
def comparison() -> pd.DataFrame:
    evaluations = {"a": evaluation_rows("a", 0.1, 0.8), LONG_ENTRY: evaluation_rows(LONG_ENTRY, 0.3, 0.4)}
    return comparison_table(TASK, ["a", LONG_ENTRY, "c", "d"], evaluations)


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def summary(comparison, **kwargs) -> str:
    return format_summary({"classification": comparison}, {"classification": "accuracy"}, **kwargs)


def test_every_line_fits_in_120_columns(comparison):
    text = summary(comparison, report_paths={"classification": "reports/classification/report.html"})
    assert all(len(line) <= WIDTH for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "a-remarkably-long-model-entry-name-" in text and "…" in text, "a long entry name is shortened"


def test_the_compact_table_has_the_columns_a_reader_scans_first(comparison):
    lines = summary(comparison).splitlines()
    columns = cells(next(line for line in lines if line.startswith("entry")))
    expected = ["entry", "variant", "accuracy [interval]", "delta", "significant", "p50 latency"]
    assert columns == [*expected, "$ per 1k"]
    row = next(line for line in lines if line.startswith("a ") and "finetuned" in line)
    assert cells(row) == ["a", "finetuned", "0.800 [0.75, 0.85]", "+0.700", "yes", "0.123 s", "$0.0123"]


def test_missing_entries_are_named_on_one_line_and_not_in_the_table(comparison):
    lines = summary(comparison).splitlines()
    assert "not evaluated yet: c, d" in lines
    assert not any(line.startswith(("c ", "d ")) for line in lines)


def test_many_missing_entries_wrap_within_120_columns(comparison):
    names = [f"entry-{i:02d}" for i in range(40)]
    text = summary(comparison_table(TASK, names, {}))
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert all(name in text for name in names) and "nothing evaluated yet" in text


def test_the_report_path_and_the_verbose_hint_follow_each_table(comparison):
    text = summary(comparison, report_paths={"classification": "reports/classification/report.html"})
    assert f"full report: reports/classification/report.html ({VERBOSE_HINT})" in text.splitlines()
    assert summary(comparison).splitlines()[-1] == VERBOSE_HINT


def test_verbose_shows_every_column(comparison):
    text = summary(comparison, verbose=True)
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == list(comparison.columns)
    assert VERBOSE_HINT not in text and "not evaluated yet: c, d" in text
