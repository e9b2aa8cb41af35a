"""Classification: the synthetic three-class sentiment of short reviews (three difficulty levels), or any label
set of the user's data (``params.labels``, else the labels found in the rows), with aliases and multi-word labels."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np

from ftassets.tasks._scoring import zero_metrics
from ftassets.tasks.base import Scored, TaskType, source_text

LABELS = ("positive", "negative", "neutral")
DIFFICULTIES = ("easy", "medium", "hard")
DEFAULT_DIFFICULTY_MIX = {"easy": 0.4, "medium": 0.4, "hard": 0.2}
UNPARSED = "unparsed"
DEFAULT_MIN_EXAMPLES_PER_LABEL = 2
DEFAULT_MAX_LABELS = 50

SUBJECTS = {
    "product": (
        "the blender",
        "the headphones",
        "the laptop",
        "the kettle",
        "the backpack",
        "the phone case",
        "the lamp",
        "the vacuum cleaner",
        "the printer",
        "the toaster",
    ),
    "restaurant": (
        "the pasta",
        "the soup",
        "the burger",
        "the pizza",
        "the salad",
        "the curry",
        "the coffee",
        "the dessert",
        "the steak",
        "the noodles",
    ),
    "service": (
        "the delivery",
        "the repair",
        "the hotel room",
        "the haircut",
        "the taxi ride",
        "the cleaning service",
        "the support call",
        "the car rental",
        "the plumber visit",
        "the gym class",
    ),
}
OPENERS = {
    "product": ("I bought {subject} last month.", "I have used {subject} for a week.", "My sister gave me {subject}."),
    "restaurant": ("I ordered {subject} last night.", "We had {subject} for lunch.", "I tried {subject} on Friday."),
    "service": ("I paid for {subject} last week.", "We tried {subject} on Monday.", "I had {subject} yesterday."),
}
ADJECTIVES = {
    "positive": ("great", "excellent", "wonderful", "lovely", "perfect", "fantastic", "superb", "brilliant"),
    "negative": ("awful", "terrible", "horrible", "poor", "dreadful", "disappointing", "useless", "bad"),
    "neutral": ("okay", "average", "ordinary", "acceptable", "standard", "so-so", "adequate", "unremarkable"),
}
INTENSIFIERS = {
    "positive": ("really", "very", "truly", "absolutely"),
    "negative": ("really", "very", "truly", "absolutely"),
    "neutral": ("pretty", "fairly", "quite", "just"),
}
FACTS = {
    "product": {
        "positive": (
            "the battery lasts all day",
            "it was easy to set up",
            "it feels solid",
            "it works perfectly",
            "the price was fair",
            "it arrived a day early",
        ),
        "negative": (
            "it broke after a week",
            "the battery dies quickly",
            "it feels cheap",
            "the buttons stopped working",
            "it was missing parts",
            "it arrived damaged",
        ),
        "neutral": (
            "it comes in a grey box",
            "it has two buttons",
            "it weighs about a kilo",
            "the manual is ten pages long",
            "it arrived on Tuesday",
            "it uses a normal plug",
        ),
    },
    "restaurant": {
        "positive": (
            "the food arrived quickly",
            "the staff were friendly",
            "the portions were generous",
            "the prices were fair",
            "the room was clean and bright",
            "the waiter was very helpful",
        ),
        "negative": (
            "the food arrived cold",
            "the staff were rude",
            "we waited an hour for a table",
            "the bill was far too high",
            "the tables were dirty",
            "the waiter ignored us",
        ),
        "neutral": (
            "the menu was short",
            "we sat near the window",
            "we paid at the counter",
            "the place was half full",
            "the music was quiet",
            "we ordered two dishes",
        ),
    },
    "service": {
        "positive": (
            "the staff were on time",
            "they fixed the problem quickly",
            "everyone was polite",
            "the price was fair",
            "they explained everything clearly",
            "they followed up the next day",
        ),
        "negative": (
            "nobody answered the phone",
            "they charged me twice",
            "they arrived three hours late",
            "the problem came back the next day",
            "the staff were rude",
            "they cancelled without warning",
        ),
        "neutral": (
            "the appointment took an hour",
            "they sent an email afterwards",
            "I booked it online",
            "they came on a Monday",
            "the office was on the second floor",
            "I paid by card",
        ),
    },
}
VERDICTS = {
    "positive": (
        "Highly recommended.",
        "I will definitely come back.",
        "I am very happy with it.",
        "Worth every penny.",
        "I would recommend it to anyone.",
    ),
    "negative": (
        "I want my money back.",
        "Never again.",
        "I would not recommend it.",
        "What a waste of money.",
        "I am very unhappy with it.",
    ),
    "neutral": (
        "Nothing special either way.",
        "It does the job.",
        "It was what I expected.",
        "No strong feelings about it.",
        "Just an average experience.",
    ),
}
OPPOSITE = {"positive": "negative", "negative": "positive"}


def label_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    """Any of ``phrases`` as a whole word or phrase (any whitespace between its words), case-insensitive; at one
    position the longest phrase wins, so ``not spam`` is found before ``spam`` inside it."""
    ordered = sorted(dict.fromkeys(phrases), key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(re.escape(word) for word in phrase.split()) for phrase in ordered)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def label_codes(
    labels: Sequence[str], truth: list[str], predicted: list[str]
) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Integer codes for sklearn's metrics (``labels`` first, then any other label in ``truth`` or ``predicted``),
    with ``truth`` and ``predicted`` coded. sklearn's checks of string arrays dominated the bootstrap, which rescores
    every resample; the metrics do not depend on the coding. Scoring runs these under
    ``sklearn.config_context(skip_parameter_validation=True)`` for the same reason."""
    codes = {label: code for code, label in enumerate(dict.fromkeys([*labels, *truth, *predicted]))}
    return codes, np.array([codes[label] for label in truth]), np.array([codes[label] for label in predicted])


def _origins(rows: list[dict[str, Any]], limit: int = 3) -> str:
    return ", ".join(str(row.get("_origin", row.get("id", "?"))) for row in rows[:limit])


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _easy_review(label: str, domain: str, subject: str, rng: random.Random) -> str:
    adjective = rng.choice(ADJECTIVES[label])
    if rng.random() < 0.5:
        return _sentence(f"{subject} was {adjective}.")
    opener = rng.choice(OPENERS[domain]).format(subject=subject)
    return f"{opener} It was {adjective}."


def _medium_review(label: str, domain: str, subject: str, rng: random.Random) -> str:
    first_fact, second_fact = rng.sample(FACTS[domain][label], 2)
    facts = _sentence(f"{first_fact} and {second_fact}.")
    if rng.random() < 0.5:
        closing = _sentence(f"{subject} was {rng.choice(INTENSIFIERS[label])} {rng.choice(ADJECTIVES[label])}.")
    else:
        closing = rng.choice(VERDICTS[label])
    opener = rng.choice(OPENERS[domain]).format(subject=subject) + " " if rng.random() < 0.5 else ""
    return f"{opener}{facts} {closing}"


def _hard_review(label: str, domain: str, subject: str, rng: random.Random) -> str:
    """Negation, contrast where the final clause decides, or mild wording."""
    facts = FACTS[domain]
    pattern = rng.randrange(3)
    if label == "neutral":
        if pattern == 0:
            return _sentence(
                f"{rng.choice(facts['positive'])}, but {rng.choice(facts['negative'])}, "
                f"so overall it was {rng.choice(ADJECTIVES['neutral'])}."
            )
        if pattern == 1:
            expected = rng.choice(ADJECTIVES[rng.choice(("positive", "negative"))])
            return f"I expected {subject} to be {expected}, but it was just {rng.choice(ADJECTIVES['neutral'])}."
        return _sentence(
            f"{subject} was not {rng.choice(ADJECTIVES['positive'])}, "
            f"but it was not {rng.choice(ADJECTIVES['negative'])} either."
        )
    opposite = OPPOSITE[label]
    if pattern == 0:
        return _sentence(
            f"{rng.choice(facts[opposite])}, but {rng.choice(facts[label])} "
            f"and {subject} was {rng.choice(ADJECTIVES[label])}."
        )
    if pattern == 1:
        return (
            f"I expected {subject} to be {rng.choice(ADJECTIVES[opposite])}, "
            f"but it was {rng.choice(ADJECTIVES[label])}."
        )
    return _sentence(f"{subject} was not {rng.choice(ADJECTIVES[opposite])}; in fact {rng.choice(facts[label])}.")


REVIEW_WRITERS = {"easy": _easy_review, "medium": _medium_review, "hard": _hard_review}


OWN_DATA_PROMPT_TEMPLATE = "{text}\nLabel ({labels}):"
"""The default prompt of a classification task with its own data: the text, then the labels to choose from."""


class ClassificationTask(TaskType):
    name = "classification"
    fields = ("text",)
    metric_names = (
        "accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "micro_f1",
        "micro_precision",
        "micro_recall",
        "weighted_f1",
        "weighted_precision",
        "weighted_recall",
        "parse_failures",
    )
    default_primary_metric = "accuracy"
    default_prompt_template = "Review: {text}\nIs this review positive, negative or neutral?"
    """The synthetic reviews' template; a task with its own data defaults to ``OWN_DATA_PROMPT_TEMPLATE``."""
    default_max_new_tokens = 8
    label_field = "label"
    answer_field = "label"
    allowed_params = frozenset({"difficulty_mix", "labels", "aliases", "min_examples_per_label", "max_labels"})
    source_schemas = ("fields", "prompt_completion")

    labels: tuple[str, ...] | None = LABELS
    """The label set: ``params.labels``, else the synthetic labels, else (user data) the labels of the rows."""
    aliases: dict[str, str] = {}
    """Alias -> label, used when parsing."""

    def configure(self) -> None:
        declared = self.params.get("labels")
        self.labels = tuple(declared) if declared else (LABELS if self.synthetic else None)
        if not self.synthetic:
            self.default_prompt_template = OWN_DATA_PROMPT_TEMPLATE
        self.aliases = dict(self.params.get("aliases", {}))
        self._pattern = None

    @property
    def placeholders(self) -> tuple[str, ...]:
        return (*self.fields, "labels")

    def template_values(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record's text, and ``{labels}``: the task's label set, so a prompt can name the answers it expects."""
        return {**super().template_values(record), "labels": ", ".join(self.labels or LABELS)}

    def with_labels(self, labels: Sequence[str]) -> ClassificationTask:
        if self.params.get("labels") or self.synthetic:
            return self
        bound = ClassificationTask().bind(self.params, synthetic=False)
        bound.labels = tuple(labels)
        return bound

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params)
        if self.synthetic:
            problems += self._synthetic_problems(params)
        else:
            problems += self._user_label_problems(params)
        labels = params.get("labels") or (LABELS if self.synthetic else [])
        aliases = params.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(k, str) and k.strip() for k in aliases):
            problems.append(f"aliases must map alias text to a label, got {aliases!r}")
        elif labels and (unknown := sorted({v for v in aliases.values() if v not in labels})):
            problems.append(f"aliases point to unknown label(s) {unknown}; labels: {list(labels)}")
        for name, default in (("min_examples_per_label", 1), ("max_labels", 2)):
            value = params.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < default:
                problems.append(f"{name} must be an integer of at least {default}, got {value!r}")
        return problems

    def _user_label_problems(self, params: dict[str, Any]) -> list[str]:
        if "difficulty_mix" in params:
            return ["difficulty_mix steers the synthetic generator; a task with a source takes its rows as they are"]
        labels = params.get("labels")
        if labels is None:
            return []
        if (
            not isinstance(labels, list)
            or not all(isinstance(label, str) and label.strip() for label in labels)
            or len(set(labels)) < 2
            or len(set(labels)) != len(labels)
        ):
            return [f"labels must be a list of at least 2 distinct non-empty labels, got {labels!r}"]
        return []

    def _synthetic_problems(self, params: dict[str, Any]) -> list[str]:
        problems = []
        mix = params.get("difficulty_mix", DEFAULT_DIFFICULTY_MIX)
        if not isinstance(mix, dict):
            problems.append(f"difficulty_mix must map {list(DIFFICULTIES)} to weights, got {mix!r}")
        else:
            unknown = sorted(set(mix) - set(DIFFICULTIES))
            if unknown:
                problems.append(f"difficulty_mix has unknown level(s) {unknown}; allowed: {list(DIFFICULTIES)}")
            weights = list(mix.values())
            if not all(isinstance(w, Real) and not isinstance(w, bool) and w >= 0 for w in weights):
                problems.append(f"difficulty_mix weights must be non-negative numbers, got {mix!r}")
            elif sum(weights) <= 0:
                problems.append("difficulty_mix weights must add up to more than 0")
        labels = params.get("labels", list(LABELS))
        if not isinstance(labels, list) or len(set(labels)) < 2 or len(set(labels)) != len(labels):
            problems.append(f"labels must be a list of at least 2 distinct labels from {list(LABELS)}, got {labels!r}")
        elif not set(labels) <= set(LABELS):
            problems.append(
                f"labels has unknown label(s) {sorted(set(labels) - set(LABELS))}; allowed: {list(LABELS)} "
                "(any labels need a `source` with the user's rows)"
            )
        return problems

    def labels_from_rows(self, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
        """The label set of the user's rows by split: ``params.labels`` when declared (every row's label must be
        one of them), else the labels found, sorted. ValueError naming the label(s) when a label has fewer than
        ``min_examples_per_label`` rows, appears only in the test split, or there are more than ``max_labels``."""
        min_examples = self.params.get("min_examples_per_label", DEFAULT_MIN_EXAMPLES_PER_LABEL)
        max_labels = self.params.get("max_labels", DEFAULT_MAX_LABELS)
        rows_of: dict[str, list[dict[str, Any]]] = {}
        splits_of: dict[str, set[str]] = {}
        for split, rows in splits.items():
            for row in rows:
                rows_of.setdefault(row["label"], []).append(row)
                splits_of.setdefault(row["label"], set()).add(split)
        declared = self.params.get("labels")
        if declared and (undeclared := sorted(set(rows_of) - set(declared))):
            raise ValueError(
                f"label(s) {undeclared} are not in params.labels {declared}: "
                + "; ".join(f"{label!r} at {_origins(rows_of[label])}" for label in undeclared)
            )
        labels = list(declared) if declared else sorted(rows_of)
        if len(labels) > max_labels:
            counts = Counter({label: len(rows_of.get(label, [])) for label in labels})
            raise ValueError(
                f"{len(labels)} labels, more than max_labels={max_labels} (params.max_labels); the rarest: "
                + ", ".join(
                    f"{label!r} ({count} rows)" for label, count in sorted(counts.items(), key=lambda i: i[1])[:10]
                )
            )
        if len(labels) < 2:
            raise ValueError(f"classification needs at least 2 labels; the rows have only {labels}")
        rare = [label for label in labels if len(rows_of.get(label, [])) < min_examples]
        if rare:
            raise ValueError(
                f"label(s) {rare} have fewer than min_examples_per_label={min_examples} rows: "
                + "; ".join(
                    f"{label!r} {len(rows_of.get(label, []))} row(s)"
                    + (f" at {_origins(rows_of[label])}" if rows_of.get(label) else "")
                    for label in rare
                )
            )
        test_only = [label for label in labels if splits_of.get(label) == {"test"}]
        if test_only:
            raise ValueError(
                f"label(s) {test_only} appear only in the test split, so no model can learn them: "
                + "; ".join(f"{label!r} at {_origins(rows_of[label])}" for label in test_only)
            )
        return labels

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.bind(params, synthetic=True)
        labels = params.get("labels", list(LABELS))
        mix = params.get("difficulty_mix", DEFAULT_DIFFICULTY_MIX)
        difficulty_weights = [mix.get(level, 0) for level in DIFFICULTIES]
        records = []
        for _ in range(count):
            label = rng.choice(labels)
            difficulty = rng.choices(DIFFICULTIES, weights=difficulty_weights)[0]
            domain = rng.choice(sorted(SUBJECTS))
            subject = rng.choice(SUBJECTS[domain])
            text = REVIEW_WRITERS[difficulty](label, domain, subject, rng)
            records.append({"text": text, "label": label, "difficulty": difficulty, "domain": domain})
        return records

    def reference(self, record: dict[str, Any]) -> str:
        return record["label"]

    def _phrases(self) -> tuple[dict[str, str], re.Pattern[str]]:
        if self.labels is None:
            raise ValueError(
                "this classification task takes its labels from the data; bind them first: "
                "task_type_for(task, labels) or with_labels(labels)"
            )
        if getattr(self, "_pattern", None) is None or self._pattern[2] != self.labels:
            phrase_to_label = {" ".join(alias.lower().split()): label for alias, label in self.aliases.items()}
            phrase_to_label |= {" ".join(label.lower().split()): label for label in self.labels}
            self._pattern = (phrase_to_label, label_pattern(list(phrase_to_label)), self.labels)
        return self._pattern[0], self._pattern[1]

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        """The first label or alias that appears in ``text`` as a whole word or phrase (longest first at one
        position), as its label."""
        phrase_to_label, pattern = self._phrases()
        match = pattern.search(text) if isinstance(text, str) else None
        return phrase_to_label[" ".join(match.group(0).lower().split())] if match else None

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        if self.labels is None:
            return self.with_labels(sorted({record["label"] for record in records})).score(records, predictions)
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        per_example = [
            {"parsed": answer, "correct": answer == record["label"]} for record, answer in zip(records, parsed)
        ]
        if not records:
            return Scored(zero_metrics(self.metric_names), per_example)
        import sklearn  # on first use, as every task type's metric library (tasks/_scoring.py)
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support

        truth = [record["label"] for record in records]
        predicted = [UNPARSED if answer is None else answer for answer in parsed]
        # Only the classes present in the data: a task configured with two labels is not capped at 2/3.
        present_labels = [label for label in self.labels if label in truth]
        codes, truth_codes, predicted_codes = label_codes(self.labels, truth, predicted)
        with sklearn.config_context(skip_parameter_validation=True):
            metrics = {"accuracy": float(accuracy_score(truth_codes, predicted_codes))}
            for average in ("macro", "micro", "weighted"):
                precision, recall, f1, _ = precision_recall_fscore_support(
                    truth_codes,
                    predicted_codes,
                    labels=[codes[label] for label in present_labels],
                    average=average,
                    zero_division=0,
                )
                metrics |= {
                    f"{average}_f1": float(f1),
                    f"{average}_precision": float(precision),
                    f"{average}_recall": float(recall),
                }
        metrics["parse_failures"] = float(predicted.count(UNPARSED))
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        if stored := self.stored_rejected(record):
            return stored
        labels = LABELS if self.synthetic else self.labels or ()
        others = [label for label in labels if label != record["label"]]
        if not others:
            raise ValueError(f"no other label than {record['label']!r} to reject; bind the task's labels first")
        return rng.choice(others)

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        text, label = ("text", "label") if schema == "fields" else ("prompt", "completion")
        return {"text": source_text(row, text, origin), "label": source_text(row, label, origin).strip()}
