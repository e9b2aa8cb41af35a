"""The task-type plugin interface.

A task type knows how to generate seeded records, which fields a prompt template may use, what
the reference answer of a record is, how to parse a model's text into an answer, and how to score
predictions with library metrics. Adding a task type is one module in this package plus a line in
``registry.py``; adding a task of an existing type is a YAML edit in ``configs/tasks.yaml``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Scored:
    """Metrics of a whole prediction set and the per-example verdicts behind them.

    ``metrics`` holds floats keyed by metric name (for example ``accuracy``, ``macro_f1``,
    ``parse_failures``). ``per_example`` has one dict per prediction with at least ``parsed``
    (the parsed answer, or None when the text could not be parsed) and ``correct`` (bool, or a
    float score in [0, 1] for generation tasks).
    """

    metrics: dict[str, float]
    per_example: list[dict[str, Any]] = field(default_factory=list)


class TaskType(ABC):
    """One kind of task. Subclasses are stateless; options come from ``params`` in tasks.yaml."""

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    """Record fields that a prompt template may reference as ``{field}``."""
    metric_names: ClassVar[tuple[str, ...]]
    """Every metric ``score`` returns, in display order (``parse_failures`` included)."""
    default_primary_metric: ClassVar[str]
    default_prompt_template: ClassVar[str]
    default_max_new_tokens: ClassVar[int] = 32
    label_field: ClassVar[str | None] = None
    """Field whose value distribution the dataset balance check inspects (None: no check)."""
    allowed_params: ClassVar[frozenset[str]] = frozenset()

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        """Return human-readable problems with a task's ``params`` (empty when valid)."""
        unknown = sorted(set(params) - self.allowed_params)
        if unknown:
            allowed = ", ".join(sorted(self.allowed_params)) or "none"
            return [f"unknown param(s) {unknown}; allowed: {allowed}"]
        return []

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise ValueError listing every problem with ``params``."""
        problems = self.validate_params(params)
        if problems:
            raise ValueError(f"invalid params for task type {self.name!r}: " + "; ".join(problems))

    @abstractmethod
    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Return ``count`` records, deterministic for a given ``rng`` state.

        Each record is a flat JSON-serialisable dict holding every name in ``fields`` plus the
        reference answer fields the task needs. Records may repeat; the dataset layer removes
        duplicate prompts and asks for more.
        """

    @abstractmethod
    def reference(self, record: dict[str, Any]) -> str:
        """The assistant answer the model is trained to produce for ``record``."""

    @abstractmethod
    def parse(self, text: str, record: dict[str, Any]) -> Any | None:
        """Parse generated text into an answer; None when it cannot be parsed."""

    @abstractmethod
    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        """Score raw generated texts against records with library metrics; never raises on bad text."""

    @abstractmethod
    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """A plausible wrong answer for ``record`` (the rejected side of a preference pair)."""

    def validate_record(self, record: dict[str, Any]) -> list[str]:
        """Problems with one record (missing or empty fields); used for generated and imported rows."""
        problems = []
        for name in self.fields:
            value = record.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                problems.append(f"field {name!r} is missing or empty")
        if not problems and not self.reference(record).strip():
            problems.append("reference answer is empty")
        return problems

    def render_prompt(self, record: dict[str, Any], template: str) -> str:
        return template.format(**{name: record[name] for name in self.fields})
