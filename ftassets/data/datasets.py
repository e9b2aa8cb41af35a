"""Build, store and check a task's train / validation / test splits (plain Python, no Dagster)."""

from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ftassets.config import ResolvedTask
from ftassets.tasks import TaskType, task_type_for

SPLITS = ("train", "validation", "test")
MAX_GENERATION_ROUNDS = 20
MIN_NEW_SHARE = 0.02
"""A generation round that adds fewer new prompts than this share of its request means the generator is exhausted."""


class DatasetError(ValueError):
    pass


def build_splits(task: ResolvedTask) -> dict[str, list[dict[str, Any]]]:
    """Generate seeded records, drop duplicate prompts (also those equal once case, spaces and punctuation are set
    aside, as the contamination check compares them), and cut them into the configured splits.

    Each stored row holds the task's raw fields plus ``id``, ``prompt`` (rendered with the task's
    template), ``answer`` (the reference) and ``rejected`` (a plausible wrong answer, for preference
    training). Splits are disjoint by prompt by construction.
    """
    task_type = task_type_for(task)
    sizes = task.config.sizes
    wanted = sizes.train + sizes.validation + sizes.test
    rng = random.Random(task.config.seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_GENERATION_ROUNDS):
        asked = wanted - len(rows)
        for record in task_type.generate(asked, rng, task.config.params):
            prompt = task_type.render_prompt(record, task.prompt_template)
            if normalized(prompt) in seen:
                continue
            seen.add(normalized(prompt))
            row_id = f"{task.name}-{len(rows):06d}"
            # Each row draws its wrong answer from its own seeded stream, so the records themselves stay as they were.
            rejected = task_type.rejected(record, random.Random(f"{task.config.seed}:{row_id}"))
            rows.append(
                {"id": row_id, **record, "prompt": prompt, "answer": task_type.reference(record), "rejected": rejected}
            )
        if len(rows) >= wanted or wanted - len(rows) > asked * (1 - MIN_NEW_SHARE):
            break
    if len(rows) < wanted:
        raise DatasetError(
            f"task {task.name!r}: the {task.type} generator gave only {len(rows)} distinct prompts of the "
            f"{wanted} asked for; lower sizes in configs/tasks.yaml (tasks.{task.name}.sizes)"
        )
    rng.shuffle(rows)
    return {
        "test": rows[: sizes.test],
        "validation": rows[sizes.test : sizes.test + sizes.validation],
        "train": rows[sizes.test + sizes.validation : wanted],
    }


def add_incoming(
    task: ResolvedTask, splits: dict[str, list[dict[str, Any]]], records: list[dict[str, Any]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Append accepted incoming rows (``ftassets/data/incoming.py``) to the train split, rendered like generated
    rows. The validation and test splits stay frozen, so evaluations before and after stay comparable; a row whose
    prompt is already in any split is skipped (no duplicates, no contamination)."""
    task_type = bound_type(task, splits)
    seen = {row["prompt"] for rows in splits.values() for row in rows}
    added, skipped = [], 0
    for record in records:
        prompt = task_type.render_prompt(record, task.prompt_template)
        if prompt in seen:
            skipped += 1
            continue
        seen.add(prompt)
        row_id = f"{task.name}-incoming-{len(added):06d}"
        rejected = task_type.rejected(record, random.Random(f"{task.config.seed}:{row_id}"))
        added.append(
            {"id": row_id, **record, "prompt": prompt, "answer": task_type.reference(record), "rejected": rejected}
        )
    return {**splits, "train": splits["train"] + added}, {
        "incoming_rows_added": len(added),
        "incoming_rows_skipped": skipped,
    }


def bound_type(task: ResolvedTask, splits: dict[str, list[dict[str, Any]]]) -> TaskType:
    """The task's type configured by its params and, for a labelled task with its own data, the labels its rows
    hold (a synthetic task's labels come from its params)."""
    task_type = task_type_for(task)
    if task.config.source is None or task_type.label_field is None:
        return task_type
    return task_type.with_labels(sorted({row[task_type.label_field] for rows in splits.values() for row in rows}))


def write_splits(directory: Path, splits: dict[str, list[dict[str, Any]]]) -> None:
    for name, rows in splits.items():
        with open(directory / f"{name}.jsonl", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_splits(directory: Path) -> dict[str, list[dict[str, Any]]]:
    splits = {}
    for name in SPLITS:
        path = directory / f"{name}.jsonl"
        if not path.exists():
            raise DatasetError(f"{path}: split file missing; materialize the dataset asset for this task again")
        splits[name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return splits


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def check_splits(task: ResolvedTask, splits: dict[str, list[dict[str, Any]]]) -> list[CheckOutcome]:
    """The dataset quality gates: complete rows, label balance, no duplicates, no contamination, lengths."""
    task_type = bound_type(task, splits)
    return [
        _check_fields(task_type, splits),
        _check_balance(task, task_type, splits),
        _check_duplicates(splits),
        _check_contamination(splits),
        _check_lengths(task, splits),
    ]


def _check_fields(task_type: TaskType, splits: dict[str, list[dict]]) -> CheckOutcome:
    bad = [
        f"{split}/{row.get('id', index)}: {'; '.join(problems)}"
        for split, rows in splits.items()
        for index, row in enumerate(rows)
        if (problems := task_type.validate_record(row) + ([] if row.get("answer", "").strip() else ["empty answer"]))
    ]
    return CheckOutcome(
        "no_missing_fields",
        not bad,
        f"{len(bad)} row(s) with missing or empty fields" + (f", e.g. {bad[:3]}" if bad else ""),
        {"bad_rows": len(bad)},
    )


def _check_balance(task: ResolvedTask, task_type: TaskType, splits: dict[str, list[dict]]) -> CheckOutcome:
    if task_type.label_field is None:
        return CheckOutcome("label_balance", True, f"task type {task.type} has no label field; nothing to balance")
    tolerance = task.config.checks.max_label_share_deviation
    labels = sorted({row[task_type.label_field] for rows in splits.values() for row in rows})
    worst, where = 0.0, ""
    shares = {}
    for split, rows in splits.items():
        counts = Counter(row[task_type.label_field] for row in rows)
        shares[split] = {label: round(counts[label] / max(len(rows), 1), 3) for label in labels}
        for label in labels:
            deviation = abs(shares[split][label] - 1 / len(labels))
            if deviation > worst:
                worst, where = deviation, f"{split}/{label}"
    passed = tolerance is None or worst <= tolerance
    allowed = (
        f"allowed {tolerance}"
        if tolerance is not None
        else "reported, not a gate: checks.max_label_share_deviation unset"
    )
    return CheckOutcome(
        "label_balance",
        passed,
        f"largest deviation from an even share is {worst:.3f} at {where} ({allowed})",
        {"shares": shares, "max_deviation": round(worst, 4)},
    )


def _check_duplicates(splits: dict[str, list[dict]]) -> CheckOutcome:
    counts = Counter(row["prompt"] for rows in splits.values() for row in rows)
    duplicates = sum(1 for n in counts.values() if n > 1)
    return CheckOutcome(
        "no_duplicate_prompts",
        duplicates == 0,
        f"{duplicates} prompt(s) appear more than once",
        {"duplicates": duplicates},
    )


def _check_contamination(splits: dict[str, list[dict]]) -> CheckOutcome:
    """Train or validation prompts that are also in test: exactly, or once case, whitespace and punctuation are
    set aside (``normalized``)."""
    test_prompts = {row["prompt"] for row in splits["test"]}
    test_normalized = {normalized(prompt) for prompt in test_prompts}
    trained = [row["prompt"] for split in ("train", "validation") for row in splits[split]]
    exact = sum(1 for prompt in trained if prompt in test_prompts)
    near = sum(1 for prompt in trained if prompt not in test_prompts and normalized(prompt) in test_normalized)
    return CheckOutcome(
        "no_train_test_contamination",
        exact + near == 0,
        f"{exact} train/validation prompt(s) also in test, {near} more once case, spaces and punctuation are ignored",
        {"contaminated": exact, "contaminated_normalized": near},
    )


def normalized(text: str) -> str:
    """Text compared for duplicates and contamination: case, whitespace and punctuation do not count."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _check_lengths(task: ResolvedTask, splits: dict[str, list[dict]]) -> CheckOutcome:
    stats = length_stats(splits)
    limit = task.config.checks.max_prompt_words
    longest = max(s["prompt_words_max"] for s in stats.values())
    allowed = f"allowed {limit}" if limit is not None else "reported, not a gate: checks.max_prompt_words unset"
    return CheckOutcome(
        "length_statistics", limit is None or longest <= limit, f"longest prompt has {longest} words ({allowed})", stats
    )


def prompt_words(prompt: str) -> int:
    """A prompt's length as the ``length_statistics`` gate counts it (``checks.max_prompt_words``)."""
    return len(prompt.split())


def length_stats(splits: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    stats = {}
    for split, rows in splits.items():
        prompt_words_of = [prompt_words(row["prompt"]) for row in rows] or [0]
        answer_words = [len(row["answer"].split()) for row in rows] or [0]
        stats[split] = {
            "prompt_words_mean": round(statistics.fmean(prompt_words_of), 1),
            "prompt_words_max": max(prompt_words_of),
            "answer_words_mean": round(statistics.fmean(answer_words), 1),
            "answer_words_max": max(answer_words),
        }
    return stats


def label_distribution(task: ResolvedTask, splits: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    label_field = bound_type(task, splits).label_field
    if label_field is None:
        return {}
    return {split: dict(sorted(Counter(row[label_field] for row in rows).items())) for split, rows in splits.items()}


def preview(splits: dict[str, list[dict]], rows: int = 5) -> pd.DataFrame:
    return pd.DataFrame(splits["train"][:rows])[["id", "prompt", "answer"]]
