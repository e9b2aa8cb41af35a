"""Row formats: the user's records (dicts as read from a file) checked and turned into canonical rows.

Canonical rows, one schema per source (every row also carries ``_origin``, ``"<file>:line <n>"`` or
``"<file>:row <i>"``, so later errors can name it):

- ``alpaca``: ``{"instruction", "input", "output"}`` (``input`` "" when missing or empty; ``system`` kept when given)
- ``chat``: ``{"messages": [{"role", "content"}, ...]}``: an optional system message, then user and assistant
  turns alternating, ending with the assistant; from OpenAI ``messages`` rows (a top-level ``system`` string becomes
  the leading system message) and ShareGPT ``conversations`` (``from``/``value``)
- ``prompt_completion``: ``{"prompt", "completion"}``
- ``preference``: ``{"prompt", "chosen", "rejected"}`` (TRL's names)
- ``fields``: any flat table, values as read (NaN -> None); only the mapped columns when ``columns`` maps them

A problem is recorded, never raised on its own: a file is refused as a whole with all of its problems counted.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ROW_SCHEMAS = ("alpaca", "chat", "prompt_completion", "preference", "fields")
MAX_PROBLEMS_SHOWN = 10

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}
REQUIRED_TEXT = {
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
}


class DataSourceError(ValueError):
    """The user's data cannot be used as configured; the message names the file, line or row, column and fix."""


@dataclass
class Problems:
    """The problems found in a source: the first ones in full, all of them counted by kind."""

    shown: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def add(self, kind: str, origin: str, text: str, column: str | None = None) -> None:
        self.counts[kind] += 1
        if len(self.shown) < MAX_PROBLEMS_SHOWN:
            self.shown.append(f"{origin}{f', column {column!r}' if column is not None else ''}: {text}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts)

    def raise_if_any(self, where: str) -> None:
        if not self:
            return
        total = self.total
        lines = [f"{where}: the data is refused ({total} problem(s); no row of it was used):"]
        lines += [f"  {line}" for line in self.shown]
        if total > len(self.shown):
            by_kind = ", ".join(f"{kind} {count}" for kind, count in self.counts.most_common())
            lines.append(f"  {total - len(self.shown)} more problem(s): in all {by_kind}")
        raise DataSourceError("\n".join(lines))


def detect_row_format(keys: set[str]) -> str:
    """The row format a set of column names looks like (``fields`` when none fits)."""
    if "messages" in keys:
        return "chat"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "preference"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    return "fields"


def schema_of(row_format: str) -> str:
    return "chat" if row_format == "sharegpt" else row_format


def apply_columns(values: dict[str, Any], columns: dict[str, str], row_format: str) -> dict[str, Any]:
    """Rename the user's columns to the task's fields (``columns``: field -> column; every column is known to be
    there). A ``fields`` row keeps only the mapped columns; a row format keeps the others too (e.g. ``system``)."""
    if not columns:
        return values
    renamed = {field_name: values[column] for field_name, column in columns.items()}
    if row_format == "fields":
        return renamed
    return {**{key: value for key, value in values.items() if key not in columns.values()}, **renamed}


def canonical_row(row_format: str, values: dict[str, Any], origin: str, problems: Problems) -> dict[str, Any]:
    """``values`` (already renamed by ``columns``) as a canonical row of ``schema_of(row_format)``. Problems go to
    ``problems``; the row returned then is incomplete and never used."""
    if row_format == "fields":
        row = {key: _none_if_nan(value) for key, value in values.items()}
    elif row_format in ("chat", "sharegpt"):
        row = {"messages": _messages(row_format, values, origin, problems)}
    elif row_format == "alpaca":
        row = {
            "instruction": _text(values, "instruction", origin, problems, row_format),
            "input": _optional_text(values, "input", origin, problems),
            "output": _text(values, "output", origin, problems, row_format),
        }
        if _none_if_nan(values.get("system")) not in (None, ""):
            row["system"] = _optional_text(values, "system", origin, problems)
    else:
        row = {name: _text(values, name, origin, problems, row_format) for name in REQUIRED_TEXT[row_format]}
    return {**row, "_origin": origin}


def _none_if_nan(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _text(values: dict, name: str, origin: str, problems: Problems, row_format: str) -> str:
    value = _none_if_nan(values.get(name))
    if name not in values:
        needed = " and ".join(REQUIRED_TEXT[row_format])
        problems.add(
            "missing field",
            origin,
            f"missing; {row_format} rows need {needed} (map other column names with `columns`)",
            name,
        )
    elif not isinstance(value, str) and value is not None:
        problems.add("wrong type", origin, f"a {type(value).__name__}, not a string", name)
    elif value is None or not value.strip():
        problems.add("empty field", origin, "empty; give it text or drop the row (e.g. with `filter`)", name)
    return value


def _optional_text(values: dict, name: str, origin: str, problems: Problems) -> str:
    value = _none_if_nan(values.get(name))
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.add("wrong type", origin, f"a {type(value).__name__}, not a string", name)
    return value


def _messages(row_format: str, values: dict, origin: str, problems: Problems) -> list[dict]:
    column = "messages" if row_format == "chat" else "conversations"
    turns = values.get(column)
    if column not in values:
        problems.add("missing field", origin, f"missing; {row_format} rows need {column}", column)
        return []
    if not isinstance(turns, list):
        problems.add("wrong type", origin, f"a {type(turns).__name__}, not a list of turns", column)
        return []
    messages = []
    system = _none_if_nan(values.get("system"))
    if system not in (None, ""):
        if not isinstance(system, str):
            problems.add("wrong type", origin, f"a {type(system).__name__}, not a string", "system")
        messages.append({"role": "system", "content": system})
    for index, turn in enumerate(turns):
        message = _message(row_format, turn, origin, f"{column}[{index}]", problems)
        if message is None:
            return messages
        messages.append(message)
    _check_turn_order(messages, origin, column, problems)
    return messages


def _message(row_format: str, turn: Any, origin: str, column: str, problems: Problems) -> dict | None:
    role_key, content_key = ("role", "content") if row_format == "chat" else ("from", "value")
    if not isinstance(turn, dict):
        problems.add("wrong type", origin, f"a {type(turn).__name__}, not an object", column)
        return None
    role, content = turn.get(role_key), turn.get(content_key)
    if row_format == "sharegpt":
        if role not in SHAREGPT_ROLES:
            accepted = ", ".join(SHAREGPT_ROLES)
            problems.add("unknown role", origin, f"unknown speaker {role!r}; use one of {accepted}", f"{column}.from")
            return None
        role = SHAREGPT_ROLES[role]
    elif role not in ("system", "user", "assistant"):
        problems.add("unknown role", origin, f"unknown role {role!r}; use system, user or assistant", f"{column}.role")
        return None
    if not isinstance(content, str):
        problems.add("wrong type", origin, f"a {type(content).__name__}, not a string", f"{column}.{content_key}")
        return None
    if not content.strip():
        problems.add("empty field", origin, "empty; every turn needs text", f"{column}.{content_key}")
        return None
    return {"role": role, "content": content}


def _check_turn_order(messages: list[dict], origin: str, column: str, problems: Problems) -> None:
    roles = [message["role"] for message in messages]
    turns = roles[1:] if roles[:1] == ["system"] else roles
    expected = ["user" if index % 2 == 0 else "assistant" for index in range(len(turns))]
    if not turns or turns != expected or turns[-1] != "assistant":
        problems.add(
            "turn order",
            origin,
            f"roles {' -> '.join(roles) or '(none)'}; a conversation is an optional system message, then user and "
            "assistant turns alternating, ending with an assistant turn",
            column,
        )
