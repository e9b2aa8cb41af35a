"""Every task type by name; a new task type is one module in this package plus one entry here."""

from __future__ import annotations

from ftassets.tasks.base import TaskType
from ftassets.tasks.classification import ClassificationTask
from ftassets.tasks.instruction import InstructionTask
from ftassets.tasks.qa import QATask
from ftassets.tasks.sql import SqlTask
from ftassets.tasks.summarization import SummarizationTask

TASK_TYPES: dict[str, TaskType] = {
    task_type.name: task_type
    for task_type in (ClassificationTask(), SummarizationTask(), QATask(), InstructionTask(), SqlTask())
}


def get_task_type(name: str) -> TaskType:
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown task type {name!r}; known types: {', '.join(sorted(TASK_TYPES))}") from None
