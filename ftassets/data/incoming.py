"""New rows dropped as JSONL files into a task's incoming folder (plain Python, no Dagster).

Layout, under ``automation.incoming_dir`` (default ``incoming/`` beside ``configs/``)::

    <task>/*.jsonl              drop files here (write elsewhere, then move in: a half-written file is read as is)
    <task>/accepted/<stamp>-<name>   every row valid: part of the task's dataset from now on (train split)
    <task>/rejected/<stamp>-<name>   kept untouched, with <stamp>-<name>.reason.txt saying what is wrong

Each row holds the task type's raw fields (the same as a generated record, e.g. ``text`` and ``label``
for classification). A file is accepted whole or rejected whole, so a bad file never half-enters a
dataset, and other files go through. The accepted files are the dataset's version: their sha256 enter
the dataset fingerprint, so adding one makes the task's lineage stale.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftassets.artifacts import sha256_file
from ftassets.config import ProjectConfig, ResolvedTask
from ftassets.tasks import task_type_for

ACCEPTED = "accepted"
REJECTED = "rejected"
MAX_PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class IngestOutcome:
    task: str
    source: str
    """The file's name as dropped."""
    path: Path
    """Where it is now: under accepted/ or rejected/."""
    accepted: bool
    rows: int
    sha256: str
    reason: str | None = None


def incoming_root(project: ProjectConfig) -> Path:
    configured = Path(project.experiments.automation.incoming_dir).expanduser()
    return configured if configured.is_absolute() else (project.config_dir.parent / configured).resolve()


def pending_files(project: ProjectConfig) -> list[Path]:
    """Files waiting in a drop folder (``<root>/<folder>/*.jsonl``), oldest first."""
    root = incoming_root(project)
    if not root.is_dir():
        return []
    files = [p for p in root.glob("*/*.jsonl") if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


def ingest(project: ProjectConfig) -> list[IngestOutcome]:
    """Validate every pending file and move it to accepted/ or rejected/ (with a reason file)."""
    outcomes = []
    for path in pending_files(project):
        folder = path.parent.name
        digest = sha256_file(path)
        if folder not in project.tasks:
            problems = [
                f"folder {folder!r} is not a task; defined in {project.config_dir / 'tasks.yaml'}: "
                f"{', '.join(project.tasks)}"
            ]
            rows = []
        else:
            rows, problems = validate_file(project.tasks[folder], path, _labels(project, folder))
            duplicate = next((p.name for p in accepted_files(project, folder) if sha256_file(p) == digest), None)
            if duplicate and not problems:
                problems = [f"the same content was already accepted as {ACCEPTED}/{duplicate}"]
        outcomes.append(_move(folder, path, digest, len(rows), problems))
    return outcomes


def _labels(project: ProjectConfig, task: str) -> list[str] | None:
    """A task with its own data takes dropped rows with the labels of its source (synthetic: its params')."""
    from ftassets.data.user_data import source_labels

    return source_labels(project, project.tasks[task])


def validate_file(
    task: ResolvedTask, path: Path, labels: list[str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's rows, and every problem found: unparsable lines, missing fields, unusable answers."""
    task_type = task_type_for(task, labels)
    rows, problems = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        return [], [f"{path.name}: not UTF-8 text ({error.reason} at byte {error.start})"]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: not valid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(row, dict):
            problems.append(
                f"line {number}: expected a JSON object with fields {list(task_type.fields)}, got {type(row).__name__}"
            )
            continue
        if row_problems := _row_problems(task, task_type, row):
            problems.append(f"line {number}: " + "; ".join(row_problems))
            continue
        rows.append(row)
    if not rows and not problems:
        problems.append("the file has no rows")
    return rows, problems


def _row_problems(task: ResolvedTask, task_type, row: dict[str, Any]) -> list[str]:
    try:
        problems = task_type.validate_record(row)
        if problems:
            return problems
        reference = task_type.reference(row)
    except (KeyError, TypeError, AttributeError) as error:
        return [
            f"field {error} is missing or has the wrong type; task type {task.type!r} rows need the fields of its "
            "generated records"
        ]
    if task_type.parse(reference, row) is None:
        return [f"answer {reference!r} is not one the {task.type} task can score"]
    return []


def accepted_files(project: ProjectConfig, task: str) -> list[Path]:
    folder = incoming_root(project) / task / ACCEPTED
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def accepted_version(project: ProjectConfig, task: str) -> list[dict[str, str]]:
    """The accepted files (name and sha256): the part of the dataset's fingerprint that dropped data adds."""
    return [{"file": path.name, "sha256": sha256_file(path)} for path in accepted_files(project, task)]


def accepted_rows(project: ProjectConfig, task: str) -> list[dict[str, Any]]:
    rows = []
    for path in accepted_files(project, task):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def _move(folder: str, path: Path, digest: str, rows: int, problems: list[str]) -> IngestOutcome:
    accepted = not problems
    target_dir = path.parent / (ACCEPTED if accepted else REJECTED)
    target_dir.mkdir(exist_ok=True)
    target = target_dir / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{digest[:8]}-{path.name}"
    reason = None
    if not accepted:
        shown = problems[:MAX_PROBLEMS_SHOWN] + (
            [f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more"] if len(problems) > MAX_PROBLEMS_SHOWN else []
        )
        reason = f"{path.name} rejected for task folder {folder!r}: " + "; ".join(shown)
        target.with_name(target.name + ".reason.txt").write_text(
            reason.replace("; ", "\n  ")
            + "\nFix the rows and drop the file again; nothing from it entered the dataset.\n"
        )
    path.rename(target)
    return IngestOutcome(folder, path.name, target, accepted, rows, digest, reason)
