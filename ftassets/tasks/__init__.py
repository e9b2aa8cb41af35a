"""Task-type plugins: seeded generators, prompts, answer parsers and library metrics."""

from ftassets.tasks.base import Scored, TaskType
from ftassets.tasks.registry import TASK_TYPES, get_task_type

__all__ = ["TASK_TYPES", "Scored", "TaskType", "get_task_type"]
