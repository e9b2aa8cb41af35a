"""The terminal summary of a run: per task, the columns a reader scans first, in 120 columns.

``format_summary`` keeps one row per evaluated (model entry, variant): the primary metric with its
interval, the gain over the entry's base, whether that gain is significant, median latency and cost per
1,000 examples. An entry with seed repeats has a row for each seed and one for the group: the mean over the
seeds with their standard deviation (``mean ±sd [low, high]``) and the seed-aware test's verdict. The full
comparison table is in the HTML report and, with ``verbose``, printed in full.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import pandas as pd

from ftassets.evaluation.evaluate import markdown_table

WIDTH = 120
VERBOSE_HINT = "--verbose for every column"
NARROWEST_ENTRY = 12


def format_summary(
    comparisons: dict[str, pd.DataFrame],
    primary_metrics: dict[str, str],
    report_paths: dict[str, str] | None = None,
    verbose: bool = False,
) -> str:
    """One block per task: a compact table (or, with ``verbose``, every column), the entries not evaluated
    yet on one line, and where the HTML report is."""
    report_paths = report_paths or {}
    blocks = []
    for task, table in comparisons.items():
        metric = primary_metrics[task]
        missing = table.status == "missing"
        evaluated = table[~missing]
        lines = [f"## {task} (primary metric: {metric})", ""]
        if evaluated.empty:
            lines.append("nothing evaluated yet")
        elif verbose:
            lines.append(markdown_table(evaluated))
        else:
            lines.append(_compact_table(evaluated, metric))
        if missing.any():
            lines += _wrapped("not evaluated yet: ", _pending(table, missing))
        lines += _pointer(report_paths.get(task), verbose)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _pending(table: pd.DataFrame, missing: pd.Series) -> list[str]:
    """The entries not evaluated yet, an entry none of whose seed repeats is evaluated as one (``tiny-lora (3
    seeds)``)."""
    pending = list(dict.fromkeys(table.model[missing]))
    if "repeat_of" not in table:
        return pending
    groups = table.dropna(subset=["repeat_of"]).groupby("repeat_of", sort=False).model.unique()
    whole = {group: members for group, members in groups.items() if set(members) <= set(pending)}
    hidden = {member for group, members in whole.items() for member in members if member != group}
    return [f"{name} ({len(whole[name])} seeds)" if name in whole else name for name in pending if name not in hidden]


def _compact_table(table: pd.DataFrame, metric: str) -> str:
    delta = f"delta_{metric}"
    spread = table.get(f"{metric}_seed_std", _blank(table))
    columns = {
        "entry": table.model.astype(str),
        "variant": table.variant.astype(str),
        f"{metric}{' ±sd' if spread.notna().any() else ''} [interval]": [
            _with_interval(row.get(metric), row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high"), sd)
            for (_, row), sd in zip(table.iterrows(), spread)
        ],
        "delta": [_signed(value) for value in table.get(delta, _blank(table))],
        "significant": [
            "" if variant == "base" else _yes_no(value)
            for variant, value in zip(table.variant, table.get("significant", _blank(table)))
        ],
        "p50 latency": [_seconds(value) for value in table.get("latency_p50_s", _blank(table))],
        "$ per 1k": [_dollars(value) for value in table.get("cost_per_1k_usd", _blank(table))],
    }
    compact = pd.DataFrame(columns)
    rendered = _render(compact)
    longest = max(len(name) for name in compact.entry)
    # Entry names are the only free-length text; shorten them (never the numbers) until the table fits.
    while _widest(rendered) > WIDTH and longest > NARROWEST_ENTRY:
        longest = max(NARROWEST_ENTRY, longest - (_widest(rendered) - WIDTH))
        rendered = _render(compact.assign(entry=[_shorten(name, longest) for name in columns["entry"]]))
    return rendered


def _render(frame: pd.DataFrame) -> str:
    """Plain aligned columns two spaces apart: text left, numbers right, a dashed rule under the header."""
    columns = [[str(name), *map(str, frame[name])] for name in frame.columns]
    widths = [max(map(len, cells)) for cells in columns]
    left = {"entry", "variant"}
    rows = [
        "  ".join(
            cells[i].ljust(width) if name in left else cells[i].rjust(width)
            for name, cells, width in zip(frame.columns, columns, widths)
        ).rstrip()
        for i in range(len(frame) + 1)
    ]
    return "\n".join([rows[0], "  ".join("-" * width for width in widths), *rows[1:]])


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _blank(table: pd.DataFrame) -> pd.Series:
    return pd.Series(math.nan, index=table.index)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _number(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.4g}"


def _with_interval(value, low, high, spread=None) -> str:
    if _missing(value):
        return "-"
    shown = _number(value) if _missing(spread) else f"{_number(value)} ±{spread:.3f}"
    if _missing(low) or _missing(high):
        return shown
    return f"{shown} [{low:.2f}, {high:.2f}]"


def _signed(value) -> str:
    return "" if _missing(value) else f"{value:+.3f}"


def _yes_no(value) -> str:
    return "-" if _missing(value) else ("yes" if bool(value) else "no")


def _seconds(value) -> str:
    if _missing(value):
        return "-"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _dollars(value) -> str:
    if _missing(value):
        return "-"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def _wrapped(prefix: str, names: list[str]) -> list[str]:
    """``prefix`` and the comma-separated ``names``, continued on indented lines past ``WIDTH``."""
    return textwrap.wrap(
        prefix + ", ".join(names), WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )


def _pointer(report_path: str | None, verbose: bool) -> list[str]:
    hint = "" if verbose else VERBOSE_HINT
    if not report_path:
        return [hint] if hint else []
    path = Path(report_path)
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = os.fspath(path)
    line = f"full report: {shown}"
    if hint and len(line) + len(hint) + 3 <= WIDTH:
        return [f"{line} ({hint})"]
    return [line, hint] if hint else [line]
