"""A task's splits from its own data: the user's file, folder or ``datasets`` dataset, or a teacher LLM.

``build_splits_from_source`` reads the source into canonical rows (``ftassets/data/sources``), turns each into a
record of the task type (``TaskType.from_source_row``), renders prompt, answer and rejected answer as for a
synthetic task, removes duplicates (counted), and keeps the source's own splits as they are or cuts one pool
of rows into seeded splits, stratified by label for classification. Any problem refuses the whole source with
a message that names the file, the row and what to do; nothing is written until everything is valid.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftassets.config import ProjectConfig, ResolvedTask
from ftassets.config.sources import SplitFractions
from ftassets.data.datasets import SPLITS, DatasetError, normalized
from ftassets.data.sources import DataSourceError, SourceRows, load_source
from ftassets.tasks import task_type_for

MAX_LISTED_PROBLEMS = 10


def build_splits_from_source(
    project: ProjectConfig, task: ResolvedTask, cache_dir: Path, log: Callable[[str], None]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The task's train / validation / test rows from its source, and the facts the manifest records."""
    source = task.config.source
    where = f"{project.config_dir / 'tasks.yaml'}: tasks.{task.name}.source"
    task_type = task_type_for(task)
    if source.teacher is not None:
        records, provenance, schema, teacher_facts = _teacher_records(project, task, task_type, cache_dir, log)
    else:
        loaded = load_source(source, project.config_dir, where)
        records, provenance, schema, teacher_facts = (
            _records(task_type, loaded, where),
            loaded.provenance,
            loaded.schema,
            {},
        )
    records, duplicates = _deduplicated(task_type, task, records)
    labels = task_type.labels_from_rows(records)
    if labels is not None:
        task_type = task_type.with_labels(labels)
    splits = records if set(records) != {"all"} else _cut(task, records["all"], task_type.label_field)
    splits = _completed(task, splits, task_type.label_field)
    rows = {name: [_row(task_type, task, name, index, r) for index, r in enumerate(splits[name])] for name in SPLITS}
    facts = {
        "source": provenance,
        "schema": schema,
        "duplicates_removed": duplicates,
        "given_splits": sorted(set(records) - {"all"}),
        "test_sha256": hashlib.sha256(
            "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows["test"]).encode()
        ).hexdigest(),
        **({"labels": labels} if labels is not None else {}),
        **({"teacher": teacher_facts} if teacher_facts else {}),
    }
    return rows, facts


def source_labels(project: ProjectConfig, task: ResolvedTask) -> list[str] | None:
    """The label set of a labelled task with its own data: declared in the task, else read from its source (as the
    dataset asset reads it); None for a task without labels or without a source, and for a teacher's task whose
    labels are not declared (they come from the rows it writes)."""
    task_type = task_type_for(task)
    source = task.config.source
    if source is None or task_type.label_field is None:
        return None
    if task.config.params.get("labels"):
        return list(task.config.params["labels"])
    if source.teacher is not None:
        return None
    where = f"{project.config_dir / 'tasks.yaml'}: tasks.{task.name}.source"
    return task_type.labels_from_rows(_records(task_type, load_source(source, project.config_dir, where), where))


def _teacher_records(project, task: ResolvedTask, task_type, cache_dir: Path, log):
    """Rows a teacher LLM writes (``ftassets/data/sources/teacher.py``), with the user's seed rows as examples."""
    from ftassets.data.sources.teacher import generate_rows

    teacher = task.config.source.teacher
    seed = []
    if teacher.seed_path:
        from ftassets.config.sources import DataSource

        where = f"{project.config_dir / 'tasks.yaml'}: tasks.{task.name}.source.teacher.seed_path"
        loaded = load_source(DataSource(path=teacher.seed_path), project.config_dir, where)
        seed = [r for rows in _records(task_type, loaded, where).values() for r in rows]
    result = generate_rows(project, task, teacher, seed, cache_dir, log)
    provenance = {"teacher": teacher.model_dump(mode="json"), "seed_rows": len(seed)}
    return {"all": result.rows}, provenance, "teacher", result.facts()


def _records(task_type, loaded: SourceRows, where: str) -> dict[str, list[dict[str, Any]]]:
    """Every canonical row as a record of the task type; all problems are collected, then refused together."""
    records, problems = {}, []
    for split, rows in loaded.splits.items():
        records[split] = []
        for row in rows:
            try:
                record = task_type.from_source_row(row, loaded.schema)
            except ValueError as error:
                problems.append(str(error))
                continue
            if issues := task_type.validate_record(record):
                problems.append(f"{row.get('_origin', split)}: {'; '.join(issues)}")
                continue
            records[split].append({**record, "_origin": row.get("_origin")})
    if problems:
        raise DataSourceError(_refusal(where, problems))
    if not any(records.values()):
        raise DataSourceError(f"{where}: the source has no rows; point it at a file with data")
    return records


def _refusal(where: str, problems: list[str]) -> str:
    listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
    more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
    return f"{where}: {len(problems)} row(s) cannot be used; the source is refused as a whole:\n  {listed}{more}"


def _deduplicated(task_type, task: ResolvedTask, records: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], int]:
    """The first occurrence of each prompt (normalized), across all splits in split order; later ones dropped."""
    seen, kept, dropped = set(), {}, 0
    for split in sorted(records, key=lambda name: (SPLITS + ("all",)).index(name)):
        kept[split] = []
        for record in records[split]:
            key = normalized(_prompt(task_type, task, record))
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            kept[split].append(record)
    return kept, dropped


def _labels(task_type, task: ResolvedTask, records: dict[str, list[dict]]) -> list[str] | None:
    """The label set, declared or read from the data and checked by the task type (rare labels, test-only labels,
    too many labels are refused by name)."""
    if task_type.label_field is None:
        return None
    return task_type.labels_from_rows(records)


def _cut(task: ResolvedTask, pool: list[dict], label_field: str | None) -> dict[str, list[dict]]:
    """One pool of rows cut into seeded splits by the source's fractions or the task's sizes, stratified by label."""
    from sklearn.model_selection import train_test_split

    source, sizes = task.config.source, task.config.sizes
    if source.fractions is None and sizes is not None:
        wanted = sizes.train + sizes.validation + sizes.test
        if wanted > len(pool):
            raise DatasetError(
                f"task {task.name!r}: sizes ask for {wanted} rows but the source has {len(pool)} after removing "
                f"duplicates; lower tasks.{task.name}.sizes or set source.fractions"
            )
        counts = {"test": sizes.test, "validation": sizes.validation}
        pool = random.Random(task.config.seed).sample(pool, wanted)
    else:
        fractions = source.fractions or SplitFractions()
        counts = {
            "test": max(1, round(fractions.test * len(pool))),
            "validation": round(fractions.validation * len(pool)),
        }
    splits, rest = {}, pool
    for name in ("test", "validation"):
        if counts[name] == 0:
            splits[name] = []
            continue
        stratify = (
            [r[label_field] for r in rest] if label_field and _stratifiable(rest, label_field, counts[name]) else None
        )
        rest, splits[name] = train_test_split(
            rest, test_size=counts[name], random_state=task.config.seed, stratify=stratify
        )
    splits["train"] = rest
    return splits


def _stratifiable(rows: list[dict], label_field: str, take: int) -> bool:
    counts = Counter(row[label_field] for row in rows)
    return min(counts.values()) >= 2 and take >= len(counts) and len(rows) - take >= len(counts)


def _completed(task: ResolvedTask, splits: dict[str, list[dict]], label_field: str | None) -> dict[str, list[dict]]:
    """Given splits are used as they are; a missing validation split is cut from train (seeded), a missing test or
    train split is an error (the test split is never invented from training data the user gave)."""
    missing = [name for name in ("train", "test") if not splits.get(name)]
    if missing:
        raise DatasetError(
            f"task {task.name!r}: the source gives splits {sorted(splits)} but no {' or '.join(missing)} rows; "
            "give every split, or one pool of rows (no split column / split files) for ftassets to cut"
        )
    if splits.get("validation"):
        return splits
    from sklearn.model_selection import train_test_split

    train = splits["train"]
    take = max(1, round(0.1 * len(train)))
    stratify = [r[label_field] for r in train] if label_field and _stratifiable(train, label_field, take) else None
    train, validation = train_test_split(train, test_size=take, random_state=task.config.seed, stratify=stratify)
    return {**splits, "train": train, "validation": validation}


def _prompt(task_type, task: ResolvedTask, record: dict[str, Any]) -> str:
    return task_type.render_prompt(record, task.prompt_template)


def _row(task_type, task: ResolvedTask, split: str, index: int, record: dict[str, Any]) -> dict[str, Any]:
    """A stored row, shaped as a synthetic task's (fields, id, prompt, answer, rejected) plus where it came from."""
    row_id = f"{task.name}-{split}-{index:06d}"
    rejected = record.get("rejected") or task_type.rejected(record, random.Random(f"{task.config.seed}:{row_id}"))
    return {
        "id": row_id,
        **record,
        "prompt": _prompt(task_type, task, record),
        "answer": task_type.reference(record),
        "rejected": rejected,
    }
