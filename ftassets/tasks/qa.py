"""Extractive question answering over short contexts about fictional people."""

from __future__ import annotations

import random
import re
from typing import Any

from ftassets.tasks import _vocab as vocab
from ftassets.tasks._scoring import first_line, squad, zero_metrics
from ftassets.tasks.base import Scored, TaskType

FACTS = {
    "town": ("{name} lives in {value}.", ("Where does {name} live?", "In which town does {name} live?"), vocab.TOWNS),
    "job": ("{name} works as a {value}.", ("What is {name}'s job?", "What does {name} work as?"), vocab.JOBS),
    "pet": (
        "{name} has a {animal} called {value}.",
        ("What is the name of {name}'s {animal}?", "What is {name}'s {animal} called?"),
        vocab.PET_NAMES,
    ),
    "colour": (
        "{name}'s favourite colour is {value}.",
        ("What is {name}'s favourite colour?", "Which colour does {name} like best?"),
        vocab.COLOURS,
    ),
    "age": (
        "{name} is {value} years old.",
        ("How old is {name}?", "What is {name}'s age?"),
        tuple(str(age) for age in range(18, 81)),
    ),
    "food": (
        "{name} likes to eat {value}.",
        ("What does {name} like to eat?", "Which food does {name} like?"),
        vocab.FOODS,
    ),
    "instrument": (
        "{name} plays the {value}.",
        ("Which instrument does {name} play?", "What does {name} play?"),
        vocab.INSTRUMENTS,
    ),
    "month": (
        "{name} was born in {value}.",
        ("In which month was {name} born?", "When was {name} born?"),
        vocab.MONTHS,
    ),
}
_FACT_PATTERNS = {
    fact: re.compile(
        re.escape(sentence)
        .replace(r"\{name\}", r"[A-Z]\w+")
        .replace(r"\{animal\}", r"\w+")
        .replace(r"\{value\}", r"(?P<value>[\w' ]+?)")
    )
    for fact, (sentence, _, _) in FACTS.items()
}
_ANSWER_PREFIX = re.compile(r"^(the )?answer( is)?\s*:?\s*", re.IGNORECASE)


def _fact_spans(context: str) -> list[tuple[str, str]]:
    """(fact, value) for every fact sentence of a generated context."""
    return [
        (fact, match.group("value")) for fact, pattern in _FACT_PATTERNS.items() for match in pattern.finditer(context)
    ]


class QATask(TaskType):
    semantic_similarity = True
    name = "qa"
    fields = ("context", "question")
    metric_names = ("exact_match", "token_f1", "parse_failures")
    default_primary_metric = "token_f1"
    default_prompt_template = "Context: {context}\nQuestion: {question}\nAnswer with a short span from the context."
    default_max_new_tokens = 16
    answer_field = "answer"

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_params(params)
        return [self._record(rng) for _ in range(count)]

    def _record(self, rng: random.Random) -> dict[str, Any]:
        names = rng.sample(vocab.FIRST_NAMES, rng.randint(1, 2))
        pairs = rng.sample([(name, fact) for name in names for fact in FACTS], rng.randint(2, 4))
        sentences, used_values = [], set()
        for name, fact in pairs:
            sentence, questions, values = FACTS[fact]
            value = rng.choice([value for value in values if value not in used_values])
            used_values.add(value)
            slots = {"name": name, "value": value, "animal": rng.choice(vocab.ANIMALS)}
            sentences.append((sentence.format(**slots), rng.choice(questions).format(**slots), value, fact))
        _, question, answer, fact = rng.choice(sentences)
        return {
            "context": " ".join(sentence for sentence, *_ in sentences),
            "question": question,
            "answer": answer,
            "fact": fact,
        }

    def reference(self, record: dict[str, Any]) -> str:
        return record["answer"]

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        line = first_line(text)
        if line is None:
            return None
        answer = _ANSWER_PREFIX.sub("", line).strip(" \"'.")
        return answer or None

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        if not records:
            return Scored(zero_metrics(self.metric_names), [])
        squad_predictions = [{"prediction_text": answer or "", "id": str(index)} for index, answer in enumerate(parsed)]
        squad_targets = [
            {
                "answers": {"answer_start": [record["context"].find(record["answer"])], "text": [record["answer"]]},
                "id": str(index),
            }
            for index, record in enumerate(records)
        ]
        per_example = []
        for answer, prediction, target in zip(parsed, squad_predictions, squad_targets):
            verdict = squad([prediction], [target])
            per_example.append(
                {
                    "parsed": answer,
                    "correct": float(verdict["exact_match"]) == 100.0,
                    "token_f1": float(verdict["f1"]) / 100,
                }
            )
        overall = squad(squad_predictions, squad_targets)
        metrics = {
            "exact_match": float(overall["exact_match"]) / 100,
            "token_f1": float(overall["f1"]) / 100,
            "parse_failures": float(parsed.count(None)),
        }
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """The row's own rejected answer (a preference row), else another span of the context, preferring one that
        answers the same kind of question."""
        if stored := self.stored_rejected(record):
            return stored
        answer = self.reference(record)
        spans = [(fact, value) for fact, value in _fact_spans(record["context"]) if value != answer]
        candidates = (
            [value for fact, value in spans if fact == record.get("fact")]
            or [value for _, value in spans]
            or [word for word in re.findall(r"\w+", record["context"]) if word != answer]
        )
        return rng.choice(candidates)
