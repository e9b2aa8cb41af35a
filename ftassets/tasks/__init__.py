"""Task-type plugins: seeded generators, prompts, answer parsers and library metrics."""

from ftassets.tasks.base import SOURCE_SCHEMAS, Scored, TaskType
from ftassets.tasks.registry import TASK_TYPES, get_task_type, task_type_for

__all__ = ["SOURCE_SCHEMAS", "TASK_TYPES", "Scored", "TaskType", "get_task_type", "task_type_for"]
