"""Short instruction following: text transforms, number puzzles and word lookups with one right output."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ftassets.tasks import _vocab as vocab
from ftassets.tasks._scoring import (
    first_line,
    generation_metric_problems,
    score_chosen_generations,
    whole_text,
    zero_metrics,
)
from ftassets.tasks.base import Scored, TaskType, source_text


def _phrase(rng: random.Random) -> str:
    return " ".join(rng.sample(vocab.SIMPLE_WORDS, rng.randint(2, 6)))


def _numbers(rng: random.Random) -> str:
    return ", ".join(str(number) for number in rng.sample(range(1, 100), rng.randint(3, 6)))


def _as_numbers(text: str) -> list[int]:
    return [int(number) for number in text.split(", ")]


def _join_numbers(numbers: list[int]) -> str:
    return ", ".join(str(number) for number in numbers)


def _title_case(text: str) -> str:
    return " ".join(word.capitalize() for word in text.split())


def _shout_first_word(text: str) -> str:
    first, *rest = text.split()
    return " ".join([first.upper(), *rest])


@dataclass(frozen=True)
class Category:
    instructions: tuple[str, ...]
    make_input: Callable[[random.Random], str]
    solve: Callable[[str], str]
    wrong: Callable[[str, random.Random], str]
    """A well-formed but wrong output for an input (the rejected side of a preference pair)."""


CATEGORIES = {
    "uppercase": Category(
        ("Rewrite the text in capital letters.", "Convert the text to uppercase.", "Write the text in upper case."),
        _phrase,
        str.upper,
        lambda text, rng: _shout_first_word(text),
    ),
    "reverse_words": Category(
        ("Reverse the order of the words.", "Write the words in reverse order.", "Say the words backwards."),
        _phrase,
        lambda text: " ".join(reversed(text.split())),
        lambda text, rng: text,
    ),
    "sort_numbers": Category(
        (
            "Sort the numbers from smallest to largest.",
            "Put the numbers in ascending order.",
            "List the numbers in increasing order.",
        ),
        _numbers,
        lambda text: _join_numbers(sorted(_as_numbers(text))),
        lambda text, rng: _join_numbers(sorted(_as_numbers(text), reverse=True)),
    ),
    "largest_number": Category(
        ("Which number is the largest?", "Give the largest number.", "What is the biggest number in the list?"),
        _numbers,
        lambda text: str(max(_as_numbers(text))),
        lambda text, rng: str(min(_as_numbers(text))),
    ),
    "count_words": Category(
        ("How many words are in the text?", "Count the words in the text.", "Give the number of words."),
        _phrase,
        lambda text: str(len(text.split())),
        lambda text, rng: str(len(text.split()) + rng.choice((-1, 1))),
    ),
    "title_case": Category(
        (
            "Capitalize the first letter of every word.",
            "Write the text in title case.",
            "Start every word with a capital letter.",
        ),
        _phrase,
        _title_case,
        lambda text, rng: text,
    ),
    "antonym": Category(
        ("Give the opposite of the word.", "What is the antonym of the word?", "Write a word that means the opposite."),
        lambda rng: rng.choice(sorted(vocab.ANTONYMS)),
        vocab.ANTONYMS.__getitem__,
        lambda word, rng: rng.choice(sorted(set(vocab.ANTONYMS.values()) - {vocab.ANTONYMS[word]})),
    ),
    "plural": Category(
        ("Write the plural of the word.", "Give the plural form of the word.", "What is the plural of the word?"),
        lambda rng: rng.choice(sorted(vocab.PLURALS)),
        vocab.PLURALS.__getitem__,
        lambda word, rng: word,
    ),
}


class InstructionTask(TaskType):
    semantic_similarity = True
    name = "instruction"
    fields = ("instruction", "input")
    metric_names = ("rougeL", "bleu", "chrf", "exact_match", "parse_failures")
    default_primary_metric = "rougeL"
    default_prompt_template = "{instruction}\nInput: {input}"
    default_max_new_tokens = 32
    label_field = "category"
    answer_field = "output"
    allowed_params = frozenset({"categories", "metrics"})
    source_schemas = ("alpaca", "prompt_completion", "preference", "fields")

    def configure(self) -> None:
        if not self.synthetic:
            self.label_field = None
        if "metrics" in self.params:
            self.metric_names = (*self.params["metrics"], "parse_failures")

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params) + generation_metric_problems(params, self.metric_names[:-1])
        if not self.synthetic:
            return problems + (["categories steers the synthetic generator"] if "categories" in params else [])
        categories = params.get("categories", list(CATEGORIES))
        if not isinstance(categories, list) or not categories:
            problems.append(f"categories must be a non-empty list from {list(CATEGORIES)}, got {categories!r}")
        elif unknown := sorted(set(categories) - set(CATEGORIES)):
            problems.append(f"categories has unknown value(s) {unknown}; allowed: {list(CATEGORIES)}")
        return problems

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.bind(params, synthetic=True)
        names = params.get("categories", list(CATEGORIES))
        records = []
        for _ in range(count):
            category_name = rng.choice(names)
            category = CATEGORIES[category_name]
            task_input = category.make_input(rng)
            records.append(
                {
                    "instruction": rng.choice(category.instructions),
                    "input": task_input,
                    "output": category.solve(task_input),
                    "category": category_name,
                }
            )
        return records

    def reference(self, record: dict[str, Any]) -> str:
        return record["output"]

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        """The first line for the one-line synthetic outputs; the whole text for the user's own outputs."""
        return first_line(text) if self.synthetic else whole_text(text)

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        if not records:
            return Scored(zero_metrics(self.metric_names), [])
        references = [self.reference(record).strip() for record in records]
        return Scored(*score_chosen_generations(parsed, references, self.metric_names))

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """The row's own rejected answer (a preference row), else the category's typical mistake; for rows of
        unknown category, echoing the input (or, without one, the instruction)."""
        if stored := self.stored_rejected(record):
            return stored
        category = CATEGORIES.get(record.get("category", ""))
        wrong = category.wrong(record["input"], rng) if category else record["input"] or record["instruction"]
        return wrong if wrong != self.reference(record) else f"{wrong} {wrong}"

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        if schema in ("alpaca", "fields"):
            record = {
                "instruction": source_text(row, "instruction", origin),
                "input": source_text(row, "input", origin, allow_empty=True) if row.get("input") is not None else "",
                "output": source_text(row, "output", origin),
            }
            if schema == "alpaca" and row.get("system"):
                record["system"] = source_text(row, "system", origin)
            return record
        answer = "completion" if schema == "prompt_completion" else "chosen"
        return {
            "instruction": source_text(row, "prompt", origin),
            "input": "",
            "output": source_text(row, answer, origin),
        }

    def validate_record(self, record: dict[str, Any]) -> list[str]:
        """An empty ``input`` is allowed: many instructions of the user's data have none."""
        if isinstance(record.get("input"), str) and not record["input"].strip():
            return super().validate_record({**record, "input": "(none)"})
        return super().validate_record(record)

    def render_prompt(self, record: dict[str, Any], template: str) -> str:
        """Without an input, the template's lines that show ``{input}`` are left out."""
        if record["input"].strip():
            return super().render_prompt(record, template)
        kept = "\n".join(line for line in template.split("\n") if "{input}" not in line)
        return super().render_prompt(record, kept)
