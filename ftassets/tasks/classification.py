"""Three-class sentiment of short reviews, at three difficulty levels."""

from __future__ import annotations

import random
import re
from numbers import Real
from typing import Any

from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from ftassets.tasks._scoring import zero_metrics
from ftassets.tasks.base import Scored, TaskType

LABELS = ("positive", "negative", "neutral")
DIFFICULTIES = ("easy", "medium", "hard")
DEFAULT_DIFFICULTY_MIX = {"easy": 0.4, "medium": 0.4, "hard": 0.2}
UNPARSED = "unparsed"

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
_LABEL_PATTERN = re.compile(r"\b(positive|negative|neutral)\b", re.IGNORECASE)


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
    default_max_new_tokens = 8
    label_field = "label"
    allowed_params = frozenset({"difficulty_mix", "labels"})

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params)
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
            problems.append(f"labels has unknown label(s) {sorted(set(labels) - set(LABELS))}; allowed: {list(LABELS)}")
        return problems

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_params(params)
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

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        match = _LABEL_PATTERN.search(text) if isinstance(text, str) else None
        return match.group(1).lower() if match else None

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        per_example = [
            {"parsed": answer, "correct": answer == record["label"]} for record, answer in zip(records, parsed)
        ]
        if not records:
            return Scored(zero_metrics(self.metric_names), per_example)
        truth = [record["label"] for record in records]
        predicted = [UNPARSED if answer is None else answer for answer in parsed]
        # Only the classes present in the data: a task configured with two labels is not capped at 2/3.
        present_labels = [label for label in LABELS if label in truth]
        metrics = {"accuracy": float(accuracy_score(truth, predicted))}
        for average in ("macro", "micro", "weighted"):
            precision, recall, f1, _ = precision_recall_fscore_support(
                truth, predicted, labels=present_labels, average=average, zero_division=0
            )
            metrics |= {
                f"{average}_f1": float(f1),
                f"{average}_precision": float(precision),
                f"{average}_recall": float(recall),
            }
        metrics["parse_failures"] = float(predicted.count(UNPARSED))
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        return rng.choice([label for label in LABELS if label != record["label"]])
