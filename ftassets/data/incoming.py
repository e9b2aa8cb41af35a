"""New rows dropped as JSONL files into a task's incoming folder (plain Python, no Dagster).

Layout, under ``automation.incoming_dir`` (default ``incoming/`` beside ``configs/``)::

    <task>/*.jsonl              drop files here (write elsewhere, then move in: a half-written file is read as is)
    <task>/accepted/<stamp>-<name>   every row valid: part of the task's dataset from now on (train split)
    <task>/rejected/<stamp>-<name>   kept untouched, with <stamp>-<name>.reason.txt saying what is wrong
    <task>/withdrawn/<stamp>-<name>  taken back out of the dataset by ``ftassets incoming withdraw``

Each row holds the task type's raw fields (the same as a generated record, e.g. ``text`` and ``label``
for classification). One validation serves the drop folder and the dataset asset (``validate_file``): each row is
read as the dataset reads a ``fields`` row of the user's data (numbers become text, labels are stripped), its label
must be one of the task's labels exactly, and its prompt must pass the dataset's length gate. A file is then judged
with the rows accepted before it: if the dataset would fail a blocking gate with it that it passes without it
(label balance, contamination), the file is rejected. A file is accepted whole or rejected whole, so a bad file
never half-enters a dataset, and other files go through. The accepted files are the dataset's version: their sha256
enter the dataset fingerprint, so adding or withdrawing one makes the task's lineage stale.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftassets.artifacts import sha256_file
from ftassets.config import ProjectConfig, ResolvedTask
from ftassets.tasks import TaskType, task_type_for

ACCEPTED = "accepted"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"
FOLDERS = (ACCEPTED, REJECTED, WITHDRAWN)
MAX_PROBLEMS_SHOWN = 10


class IncomingError(ValueError):
    """A request about the drop folder that cannot be done (unknown task or file); the message says what to do."""


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


@dataclass
class TaskRules:
    """What a dropped file of one task is judged against: the task's type bound to its labels, and the splits the
    dataset asset builds from the task's configuration before incoming rows join (None: not built here)."""

    task: ResolvedTask
    task_type: TaskType | None
    base: dict[str, list[dict[str, Any]]] | None = None
    problem: str | None = None
    """Why no file of this task can be judged now (its own data cannot be read, undeclared teacher labels)."""
    rows: list[dict[str, Any]] = field(default_factory=list)


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


def ignored_files(project: ProjectConfig) -> dict[str, str]:
    """Files the drop folder never reads, by path relative to its root, with what to do: a file directly in the
    root, a file of another extension than ``.jsonl`` in a task folder, a file in a sub-folder of a task folder
    other than accepted/, rejected/ and withdrawn/. Hidden files (a name starting with ``.``) are left alone: that
    is how a file being written elsewhere looks."""
    root = incoming_root(project)
    if not root.is_dir():
        return {}
    ignored = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        parts = relative.parts
        if len(parts) == 1:
            ignored[str(relative)] = f"a file directly in {root} is never read; move it into {root}/<task>/"
        elif len(parts) == 2 and path.suffix != ".jsonl":
            ignored[str(relative)] = (
                f"only *.jsonl files are read (one JSON object per line); convert it and drop it as "
                f"{parts[0]}/{path.stem}.jsonl"
            )
        elif len(parts) > 2 and parts[1] not in FOLDERS:
            ignored[str(relative)] = f"files in sub-folders are never read; move it to {root / parts[0]}/"
    return ignored


def ingest(project: ProjectConfig) -> list[IngestOutcome]:
    """Validate every pending file and move it to accepted/ or rejected/ (with a reason file)."""
    outcomes, rules = [], {}
    for path in pending_files(project):
        folder = path.parent.name
        digest = sha256_file(path)
        rows: list[dict[str, Any]] = []
        if folder not in project.tasks:
            problems = [
                f"folder {folder!r} is not a task; defined in {project.config_dir / 'tasks.yaml'}: "
                f"{', '.join(project.tasks)}"
            ]
        else:
            if folder not in rules:
                rules[folder] = task_rules(project, folder)
            rows, problems = judge_file(rules[folder], path)
            duplicate = next((p.name for p in accepted_files(project, folder) if sha256_file(p) == digest), None)
            if duplicate and not problems:
                problems = [f"the same content was already accepted as {ACCEPTED}/{duplicate}"]
            if not problems:
                rules[folder].rows += rows
        outcomes.append(_move(folder, path, digest, len(rows), problems))
    return outcomes


def task_rules(project: ProjectConfig, task_name: str, *, with_base: bool = True) -> TaskRules:
    """The task's type bound to its labels (synthetic: its params'; own data: declared, else read from its source
    as the dataset asset reads it), the rows accepted so far and, with ``with_base``, the splits its configuration
    builds (not for a teacher LLM's rows, which cost money to write)."""
    from ftassets.data.datasets import DatasetError, build_splits
    from ftassets.data.user_data import build_splits_from_source, source_labels

    task = project.tasks[task_name]
    source = task.config.source
    try:
        if source is None:
            rules = TaskRules(task, task_type_for(task), build_splits(task) if with_base else None)
        elif source.teacher is None and with_base:
            with tempfile.TemporaryDirectory() as cache:
                base, facts = build_splits_from_source(project, task, Path(cache), lambda line: None)
            rules = TaskRules(task, task_type_for(task, facts.get("labels")), base)
        else:
            labels = source_labels(project, task)
            rules = TaskRules(task, task_type_for(task, labels))
            if rules.task_type.label_field and labels is None:
                rules.problem = (
                    f"task {task_name!r} takes its rows from a teacher LLM and declares no labels, so a dropped row's "
                    f"label cannot be checked; list them in {project.config_dir / 'tasks.yaml'} "
                    f"(tasks.{task_name}.labels) and drop the file again"
                )
    except (DatasetError, ValueError) as error:
        return TaskRules(
            task,
            None,
            problem=f"task {task_name!r} cannot build its dataset, so no dropped file can be judged ({error}); "
            "fix that first, then drop the file again",
        )
    try:
        rules.rows = accepted_rows(project, task_name, rules) if with_base else []
    except DatasetError as error:
        rules.problem = f"{error}; until then no dropped file of task {task_name!r} can be judged, drop it again after"
    return rules


def judge_file(rules: TaskRules, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's rows and its problems: each row's (``validate_file``), then the dataset's blocking gates that
    would fail with the file's rows added to the accepted ones and pass without them."""
    if rules.problem:
        return [], [rules.problem]
    rows, problems = validate_file(rules.task, path, rules.task_type)
    if problems or rules.base is None:
        return rows, problems
    from ftassets.data.datasets import add_incoming, check_splits

    def failing(records: list[dict[str, Any]]) -> list:
        return [o for o in check_splits(rules.task, add_incoming(rules.task, rules.base, records)[0]) if not o.passed]

    before = {outcome.name for outcome in failing(rules.rows)}
    return rows, [
        f"with its rows the dataset would fail its blocking gate {outcome.name} ({outcome.description}), "
        f"which it passes without them"
        for outcome in failing(rules.rows + rows)
        if outcome.name not in before
    ]


def validate_file(
    task: ResolvedTask, path: Path, task_type: TaskType | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's rows as dataset records, and every problem found, by line: not JSON, a field missing or of the
    wrong type, a label that is not one of the task's, an answer the task cannot score, a prompt longer than the
    dataset's length gate allows."""
    task_type = task_type or task_type_for(task)
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
        record, row_problems = _record(task, task_type, row, f"{path.parent.name}/{path.name}:line {number}")
        if row_problems:
            problems.append(f"line {number}: " + "; ".join(row_problems))
            continue
        rows.append(record)
    if not rows and not problems:
        problems.append("the file has no rows")
    return rows, problems


def _record(
    task: ResolvedTask, task_type: TaskType, row: dict[str, Any], origin: str
) -> tuple[dict[str, Any], list[str]]:
    """One dropped row as the dataset record it becomes, read as the dataset reads the user's ``fields`` rows (a
    task with its own data keeps only its type's fields and the row's origin; a synthetic task's row keeps its other
    fields too, as a generated record does), and its problems."""
    from ftassets.data.datasets import prompt_words

    try:
        if task.config.source is not None:
            schema = "fields" if "fields" in task_type.source_schemas else task_type.source_schemas[0]
            record = task_type.from_source_row({**row, "_origin": origin}, schema)
        else:
            record = {**row, **task_type.record_from_source(row, "fields", origin)}
            if problems := task_type.validate_record(record):
                return record, problems
        reference = task_type.reference(record)
        prompt = task_type.render_prompt(record, task.prompt_template)
    except ValueError as error:
        return row, [str(error).removeprefix(f"{origin}: ")]
    except KeyError as error:
        return row, [f"field {error} is missing; task type {task.type!r} rows need the fields of its records"]
    except (TypeError, AttributeError) as error:
        return row, [f"a field has the wrong type ({error}); task type {task.type!r} rows need text fields"]
    labels = getattr(task_type, "labels", None)
    label_field = task_type.label_field
    if label_field and labels is not None and record.get(label_field) not in labels:
        return record, [f"label {record.get(label_field)!r} is not one of the task's labels {list(labels)}"]
    if task_type.parse(reference, record) is None:
        return record, [f"answer {reference!r} is not one the {task.type} task can score"]
    limit = task.config.checks.max_prompt_words
    if limit is not None and (words := prompt_words(prompt)) > limit:
        return record, [
            f"the prompt has {words} words, more than the dataset's length gate allows "
            f"(tasks.{task.name}.checks.max_prompt_words: {limit})"
        ]
    return record, []


def accepted_files(project: ProjectConfig, task: str) -> list[Path]:
    folder = incoming_root(project) / task / ACCEPTED
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def accepted_version(project: ProjectConfig, task: str) -> list[dict[str, str]]:
    """The accepted files (name and sha256): the part of the dataset's fingerprint that dropped data adds."""
    return [{"file": path.name, "sha256": sha256_file(path)} for path in accepted_files(project, task)]


def accepted_rows(project: ProjectConfig, task: str, rules: TaskRules | None = None) -> list[dict[str, Any]]:
    """The accepted files' rows as dataset records, validated as when they were dropped; a file that the task's
    configuration no longer accepts (its labels or length limit changed) stops the dataset with a message that
    names the file, its lines and the command that withdraws it."""
    from ftassets.data.datasets import DatasetError

    files = accepted_files(project, task)
    if not files:
        return []
    rules = rules or task_rules(project, task, with_base=False)
    rows = []
    for path in files:
        records, problems = validate_file(rules.task, path, rules.task_type) if not rules.problem else ([], [])
        if problems or rules.problem:
            shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN]) or rules.problem
            raise DatasetError(
                f"{path}: the task no longer accepts this incoming file ({shown}); take it out of the dataset with "
                f"`ftassets incoming withdraw {task} {path.name}`, or fix tasks.{task} in configs/tasks.yaml"
            )
        rows += records
    return rows


def listing(project: ProjectConfig, task: str | None = None) -> dict[str, dict[str, list[Path]]]:
    """Task -> folder (pending, accepted, rejected, withdrawn) -> files, for the tasks with a drop folder."""
    root = incoming_root(project)
    if task is not None and task not in project.tasks:
        raise IncomingError(_unknown_task(project, task))
    tasks = [task] if task else sorted(p.name for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    return {
        name: {
            "pending": sorted((root / name).glob("*.jsonl")),
            **{folder: sorted((root / name / folder).glob("*.jsonl")) for folder in FOLDERS},
        }
        for name in tasks
    }


def withdraw(project: ProjectConfig, task: str, name: str) -> Path:
    """Move an accepted file (its accepted name, or the name it was dropped as when only one matches) to
    ``withdrawn/``: its rows leave the task's dataset, whose fingerprint changes, so the lineage reads stale and
    the next run rebuilds it. Nothing is deleted."""
    if task not in project.tasks:
        raise IncomingError(_unknown_task(project, task))
    accepted = accepted_files(project, task)
    matches = [p for p in accepted if p.name == name] or [p for p in accepted if p.name.endswith(f"-{name}")]
    if len(matches) != 1:
        problem = "several accepted files" if matches else "no accepted file"
        raise IncomingError(
            f"{problem} of task {task!r} in {incoming_root(project) / task / ACCEPTED} match {name!r}; give the "
            f"accepted name of one: {', '.join(p.name for p in accepted) or 'there are none'} "
            f"(`ftassets incoming list --task {task}`)"
        )
    target = matches[0].parent.parent / WITHDRAWN / matches[0].name
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        raise IncomingError(f"{target} already exists; move it away first")
    return matches[0].rename(target)


def _unknown_task(project: ProjectConfig, task: str) -> str:
    return f"task {task!r} is not defined in {project.config_dir / 'tasks.yaml'}; tasks: {', '.join(project.tasks)}"


def _move(folder: str, path: Path, digest: str, rows: int, problems: list[str]) -> IngestOutcome:
    accepted = not problems
    target_dir = path.parent / (ACCEPTED if accepted else REJECTED)
    target_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    names = (f"{stamp}{'' if n == 1 else f'.{n}'}-{digest[:8]}-{path.name}" for n in itertools.count(1))
    # Never the name of a file withdrawn before: the sensor's cursor knows accepted files by name.
    target = target_dir / next(n for n in names if not any((path.parent / f / n).exists() for f in FOLDERS))
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
