"""The task-type plugin interface.

A task type knows how to generate seeded records, which fields a prompt template may use, what
the reference answer of a record is, how to parse a model's text into an answer, and how to score
predictions with library metrics. Adding a task type is one module in this package plus a line in
``registry.py``; adding a task of an existing type is a YAML edit in ``configs/tasks.yaml``.
"""

from __future__ import annotations

import copy
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

SOURCE_SCHEMAS = ("alpaca", "chat", "prompt_completion", "preference", "fields")
"""The canonical row schemas of the user's data (``ftassets/data/sources``); each row also has ``_origin``."""


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
    """One kind of task. The registry holds one instance per type with default options; ``bind`` (or
    ``ftassets.tasks.task_type_for``) gives an instance configured by a task's ``params`` in tasks.yaml."""

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    """Record fields that a prompt template may reference as ``{field}``."""
    answer_field: ClassVar[str | None] = None
    """The record field ``reference`` reads (None: the type derives it otherwise)."""
    metric_names: tuple[str, ...]
    """Every metric ``score`` returns, in display order (``parse_failures`` included); a bound instance's
    reflects its params."""
    semantic_similarity: ClassVar[bool] = False
    """Whether answers are free text whose meaning the evaluation compares with the reference's (embeddings)."""
    count_metrics: ClassVar[tuple[str, ...]] = ("parse_failures",)
    """Metrics that count examples (lower is better) rather than score in [0, 1]; never a primary metric."""
    default_primary_metric: ClassVar[str]
    default_prompt_template: ClassVar[str]
    default_max_new_tokens: ClassVar[int] = 32
    label_field: ClassVar[str | None] = None
    """Field whose value distribution the dataset balance check inspects (None: no check)."""
    allowed_params: ClassVar[frozenset[str]] = frozenset()
    source_schemas: ClassVar[tuple[str, ...]] = ("fields",)
    """The canonical row schemas ``from_source_row`` accepts."""
    has_generator: ClassVar[bool] = True
    """False for a type whose rows must come from a task's ``source``."""

    params: dict[str, Any] = {}
    synthetic: bool = True
    """Whether the task's rows come from ``generate`` (no ``source``)."""

    def bind(self, params: dict[str, Any], *, synthetic: bool = True) -> TaskType:
        """A copy of this type configured by a task's ``params``; ValueError listing every problem with them."""
        bound = copy.copy(self)
        bound.params, bound.synthetic = dict(params), synthetic
        bound.check_params(bound.params)
        bound.configure()
        return bound

    def configure(self) -> None:
        """Derive options from ``self.params`` (already validated); the default has none."""
        return None

    def with_labels(self, labels: Sequence[str]) -> TaskType:
        """This type with the label set found in the data (``labels_from_rows``); unchanged for unlabelled types."""
        return self

    def labels_from_rows(self, splits: dict[str, list[dict[str, Any]]]) -> list[str] | None:
        """The validated label set of a task's rows by split (None: the type has no label set)."""
        return None

    @property
    def loss_on(self) -> str:
        """Which assistant turns of a conversation row carry the training loss."""
        return "all_assistant_turns"

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

    @property
    def placeholders(self) -> tuple[str, ...]:
        """What a prompt template may name: the record's fields, plus values the configured type provides."""
        return self.fields

    def template_values(self, record: dict[str, Any]) -> dict[str, Any]:
        return {name: record[name] for name in self.fields}

    def render_prompt(self, record: dict[str, Any], template: str) -> str:
        return template.format(**self.template_values(record))

    def from_source_row(self, row: dict[str, Any], schema: str) -> dict[str, Any]:
        """A record of this type from a canonical row of the user's data (``_origin`` kept, and ``rejected`` when
        the row gives one); ValueError naming the row's origin and the field when it cannot be one."""
        origin = row.get("_origin", "<unknown origin>")
        if not self.source_schemas:
            raise ValueError(f"{origin}: task type {self.name!r} takes no rows from a source, only its generator's")
        if schema not in self.source_schemas:
            raise ValueError(
                f"{origin}: a {schema!r} row cannot be a {self.name} record; task type {self.name!r} takes "
                f"{', '.join(repr(s) for s in self.source_schemas)} rows"
            )
        record = {**self.record_from_source(row, schema, origin), "_origin": origin}
        if schema == "preference":
            record["rejected"] = source_text(row, "rejected", origin)
        problems = self.validate_record(record)
        if problems:
            raise ValueError(f"{origin}: " + "; ".join(problems))
        return record

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        """The record fields of one canonical row of an accepted schema. The default maps ``fields`` rows
        field by field and, for a type with one prompt field, ``prompt_completion`` and ``preference`` rows."""
        if schema == "fields":
            names = (*self.fields, *([self.answer_field] if self.answer_field else []))
            return {name: source_text(row, name, origin) for name in names}
        prompt_field = self.fields[0]
        answer = "completion" if schema == "prompt_completion" else "chosen"
        return {prompt_field: source_text(row, "prompt", origin), self.answer_field: source_text(row, answer, origin)}

    def stored_rejected(self, record: dict[str, Any]) -> str | None:
        """The rejected answer the user's data gave for ``record`` (a preference row), if any."""
        rejected = record.get("rejected")
        return rejected if isinstance(rejected, str) and rejected.strip() else None


def source_text(row: dict[str, Any], name: str, origin: str, *, allow_empty: bool = False) -> str:
    """Field ``name`` of a canonical row as text (numbers become text); ValueError naming the origin and field."""
    value = row.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        problem = "is missing" if value is None else f"must be non-empty text, got {value!r}"
        raise ValueError(f"{origin}: field {name!r} {problem}")
    return value
