"""Every task type by name; a new task type is one module in this package plus one entry here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ftassets.tasks.base import TaskType
from ftassets.tasks.chat import ChatTask
from ftassets.tasks.classification import ClassificationTask
from ftassets.tasks.code import CodeTask
from ftassets.tasks.code_review import CodeReviewTask
from ftassets.tasks.instruction import InstructionTask
from ftassets.tasks.medical_triage import MedicalTriageTask
from ftassets.tasks.qa import QATask
from ftassets.tasks.sql import SqlTask
from ftassets.tasks.summarization import SummarizationTask

TASK_TYPES: dict[str, TaskType] = {
    task_type.name: task_type
    for task_type in (
        ClassificationTask(),
        SummarizationTask(),
        QATask(),
        InstructionTask(),
        SqlTask(),
        ChatTask(),
        CodeTask(),
        CodeReviewTask(),
        MedicalTriageTask(),
    )
}


def get_task_type(name: str) -> TaskType:
    """The task type with its default options (use ``task_type_for`` for a configured task)."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown task type {name!r}; known types: {', '.join(sorted(TASK_TYPES))}") from None


class ConfiguredTask(Protocol):
    """What ``task_type_for`` reads of a ``ftassets.config.ResolvedTask`` (not imported: config imports tasks)."""

    @property
    def type(self) -> str: ...

    @property
    def config(self) -> Any:
        """A ``TaskConfig``: ``params`` and ``source`` are read (a task without them has the type's defaults)."""


def task_type_for(task: ConfiguredTask, labels: Sequence[str] | None = None) -> TaskType:
    """The task's type configured by its ``params`` (synthetic unless the task has a ``source``), with ``labels``
    when the label set comes from the data (``labels_from_rows`` at dataset time)."""
    config = getattr(task, "config", None)
    params, source = getattr(config, "params", None) or {}, getattr(config, "source", None)
    bound = get_task_type(task.type).bind(params, synthetic=source is None)
    return bound.with_labels(labels) if labels is not None else bound
