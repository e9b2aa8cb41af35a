"""Pieces the Azure end-to-end tests share: editing a copied config, and a responder for the loopback fakes
that answers from the classification test split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to the YAML file at ``path`` in place, keeping its key order."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def split_oracle(home: Path, is_finetuned: Callable[[str], bool]) -> Callable[[str, list[dict[str, str]]], str]:
    """A fake's responder: models ``is_finetuned`` accepts always give the test split's answer, the others are
    wrong on every 4th example (and on prompts not in the split)."""
    answers: dict[str, tuple[int, str]] = {}

    def respond(model: str, messages: list[dict[str, str]]) -> str:
        if not answers:
            rows = [
                json.loads(line)
                for line in (home / "artifacts/dataset/classification/test.jsonl").read_text().splitlines()
            ]
            answers.update({row["prompt"]: (index, row["answer"]) for index, row in enumerate(rows)})
        index, answer = answers.get(messages[-1]["content"], (0, "unsure"))
        return answer if is_finetuned(model) or index % 4 else "I cannot tell."

    return respond
