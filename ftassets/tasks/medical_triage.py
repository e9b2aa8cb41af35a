"""Medical triage: short symptom descriptions labelled with an urgency level and the expected advice.

A synthetic benchmark, not medical advice: the symptoms, levels, advice and condition names are templated text
written to measure a model, not reviewed by clinicians. The answer is the level first, then the advice, e.g.
``emergency. Call an ambulance now: this may be a stroke.``; the level is parsed and scored as a classification
over four fixed labels. Besides macro-F1, the safety metrics count the emergencies a model does not send to
emergency care, and ``terminology`` measures whether the answer names the condition's expected medical terms.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ftassets.tasks import _vocab as vocab
from ftassets.tasks._scoring import first_line, zero_metrics
from ftassets.tasks.base import Scored, TaskType, source_text
from ftassets.tasks.classification import UNPARSED, ClassificationTask, label_codes, label_pattern

LEVELS = ("self-care", "routine", "urgent", "emergency")
"""The urgency levels, least urgent first."""
EMERGENCY = "emergency"
ALIASES = {"self care": "self-care", "selfcare": "self-care"}
TERM_SEPARATOR = "; "

ACTIONS = {
    "emergency": "Call an ambulance now",
    "urgent": "See a doctor today",
    "routine": "Book a visit with your doctor",
    "self-care": "Rest and treat it at home",
}


@dataclass(frozen=True)
class Condition:
    """One cause of symptoms: ways a patient describes it, how the advice names it, and the medical terms a good
    answer uses (each one appears in ``name``)."""

    complaints: tuple[str, ...]
    name: str
    terms: tuple[str, ...]


CONDITIONS = {
    "emergency": (
        Condition(
            (
                "crushing chest pain spreading to the left arm",
                "tight chest pain with sweating and nausea",
                "heavy pressure in the chest and shortness of breath",
                "chest pain that spreads to the jaw",
            ),
            "a heart attack",
            ("heart attack",),
        ),
        Condition(
            (
                "a drooping face and slurred speech",
                "sudden weakness in one arm and trouble speaking",
                "sudden numbness on one side of the body",
                "sudden confusion and a drooping mouth",
            ),
            "a stroke",
            ("stroke",),
        ),
        Condition(
            (
                "swollen lips and tongue after eating peanuts",
                "hives and trouble breathing after a bee sting",
                "a swelling throat after taking a new medicine",
                "wheezing and a swollen face after eating shellfish",
            ),
            "anaphylaxis, a severe allergic reaction",
            ("anaphylaxis", "allergic reaction"),
        ),
        Condition(
            (
                "heavy bleeding from a deep cut that will not stop",
                "blood soaking through several bandages",
                "a deep wound that keeps spurting blood",
            ),
            "a haemorrhage",
            ("haemorrhage",),
        ),
        Condition(
            (
                "a stiff neck, a high fever and a rash that does not fade under a glass",
                "a severe headache, a stiff neck and a fever, with bright light hurting the eyes",
            ),
            "meningitis",
            ("meningitis",),
        ),
        Condition(
            (
                "a high fever, confusion and cold, blotchy skin",
                "shivering, a racing heart and confusion after an infection",
            ),
            "sepsis",
            ("sepsis",),
        ),
        Condition(
            ("severe shortness of breath and blue lips", "gasping for air and no breath to finish a sentence"),
            "respiratory distress",
            ("respiratory distress",),
        ),
    ),
    "urgent": (
        Condition(
            ("burning when passing urine and a fever", "pain when peeing, a fever and an ache in the lower back"),
            "a urinary tract infection",
            ("urinary tract infection",),
        ),
        Condition(
            (
                "a swollen, painful wrist after a fall",
                "a painful ankle after a fall that cannot take any weight",
                "a bent-looking finger after catching a ball",
            ),
            "a fracture",
            ("fracture",),
        ),
        Condition(
            ("a cough with green phlegm and a fever", "a cough, a fever and pain when breathing in deeply"),
            "a chest infection",
            ("chest infection",),
        ),
        Condition(
            ("vomiting all day and no fluids staying down", "diarrhoea since yesterday and very little urine"),
            "dehydration",
            ("dehydration",),
        ),
        Condition(
            ("a red, hot and spreading patch of skin on the leg", "a swollen, warm and painful red area around a cut"),
            "cellulitis, a skin infection",
            ("cellulitis", "skin infection"),
        ),
        Condition(
            ("a red, sticky eye with pain and swelling around it", "a painful, weeping eye with a swollen eyelid"),
            "an eye infection",
            ("eye infection",),
        ),
        Condition(
            ("ear pain, a high temperature and fluid leaking from the ear", "a throbbing ear and a fever"),
            "an ear infection",
            ("ear infection",),
        ),
    ),
    "routine": (
        Condition(
            ("heartburn after most meals", "a sour taste and burning in the throat after eating"),
            "acid reflux",
            ("acid reflux",),
        ),
        Condition(
            ("dry, itchy patches of skin on the elbows", "an itchy rash on the hands that comes and goes"),
            "eczema",
            ("eczema",),
        ),
        Condition(
            ("trouble falling asleep most nights", "waking at four every morning and not getting back to sleep"),
            "insomnia",
            ("insomnia",),
        ),
        Condition(
            ("stiff, aching knees when climbing stairs", "aching finger joints every morning"),
            "osteoarthritis",
            ("osteoarthritis",),
        ),
        Condition(
            ("high readings on a home blood pressure monitor", "blood pressure readings a little high at the pharmacy"),
            "hypertension",
            ("hypertension",),
        ),
        Condition(
            ("dull headaches most afternoons", "a tight band of pressure around the head after work"),
            "a tension headache",
            ("tension headache",),
        ),
        Condition(
            ("tiredness all the time and a pale face", "feeling weak and short of energy for no clear reason"),
            "anaemia",
            ("anaemia",),
        ),
    ),
    "self-care": (
        Condition(
            ("a runny nose and a mild sore throat", "sneezing, a blocked nose and a slight cough"),
            "a common cold",
            ("common cold",),
        ),
        Condition(
            ("red, sore skin on the shoulders after a day at the beach", "mild sunburn on the face and arms"),
            "sunburn",
            ("sunburn",),
        ),
        Condition(
            ("a slightly swollen ankle after twisting it, but walking is fine", "a sore wrist after a small twist"),
            "a sprain",
            ("sprain",),
        ),
        Condition(
            ("a sore back after lifting boxes", "aching legs after a long run"),
            "a muscle strain",
            ("muscle strain",),
        ),
        Condition(
            ("an upset stomach after a big meal", "mild bloating after a heavy dinner"),
            "indigestion",
            ("indigestion",),
        ),
        Condition(
            ("itchy eyes and sneezing when the grass is cut", "a runny nose and itchy eyes every spring"),
            "hay fever",
            ("hay fever",),
        ),
        Condition(
            ("a small itchy bump from a mosquito bite", "a red, itchy spot after an insect bite"),
            "an insect bite",
            ("insect bite",),
        ),
    ),
}
TERMS = tuple(sorted({term for conditions in CONDITIONS.values() for c in conditions for term in c.terms}))
"""The medical terms the generator's answers use: the vocabulary of the ``terminology`` metric."""

PATIENTS = (
    "I am {age} and I have {complaint}.",
    "My {relative}, aged {age}, has {complaint}.",
    "{name}, {age}, has {complaint}.",
    "A {age}-year-old {person} has {complaint}.",
)
RELATIVES = ("mother", "father", "wife", "husband", "partner", "sister", "brother", "neighbour", "friend", "colleague")
PEOPLE = ("man", "woman")
SUDDEN_ONSETS = (
    "It started {minutes} minutes ago.",
    "It came on suddenly {minutes} minutes ago.",
    "It began this morning.",
    "It started last night.",
    "It has been there since yesterday.",
)
LASTING_ONSETS = ("It has been going on for {weeks} weeks.", "It has come and gone for {weeks} months.")
CLOSERS = ("", " What should we do?", " Should I be worried?", " What do you advise?")

LEVEL_CLASSIFIER = ClassificationTask().bind({"labels": list(LEVELS), "aliases": ALIASES}, synthetic=False)
"""Finds the level in an answer, as a classification over the four levels finds its label."""


class MedicalTriageTask(TaskType):
    name = "medical_triage"
    fields = ("symptoms",)
    metric_names = (
        "macro_f1",
        "accuracy",
        "emergency_recall",
        "under_triaged_emergencies",
        "terminology",
        "parse_failures",
    )
    """``emergency_recall``: the share of emergencies answered ``emergency``; ``under_triaged_emergencies``: how many
    emergencies were not (a lower level, or no level named: either way the patient was not sent to emergency care);
    ``terminology``: the mean share of an example's expected terms that its answer uses (sklearn's sample-averaged
    recall over the terms)."""
    count_metrics = ("under_triaged_emergencies", "parse_failures")
    """The metrics that count examples, lower is better; every other one is a share in [0, 1], higher is better."""
    default_primary_metric = "macro_f1"
    default_prompt_template = (
        "Symptoms: {symptoms}\nGive the triage level (emergency, urgent, routine or self-care), then the advice."
    )
    default_max_new_tokens = 64
    """The embedded model's small vocabulary spends up to ~55 tokens on a reference answer."""
    label_field = "label"
    source_schemas = ("fields",)

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_params(params)
        first = rng.randrange(len(LEVELS))
        return [self._record(LEVELS[(first + index) % len(LEVELS)], rng) for index in range(count)]

    def _record(self, level: str, rng: random.Random) -> dict[str, Any]:
        condition = rng.choice(CONDITIONS[level])
        patient = rng.choice(PATIENTS).format(
            age=rng.randint(19, 85),
            relative=rng.choice(RELATIVES),
            name=rng.choice(vocab.FIRST_NAMES),
            person=rng.choice(PEOPLE),
            complaint=rng.choice(condition.complaints),
        )
        onset = rng.choice(LASTING_ONSETS if level == "routine" else SUDDEN_ONSETS)
        onset = onset.format(minutes=rng.choice((5, 10, 15, 20, 30, 40)), weeks=rng.randint(2, 8))
        return {
            "symptoms": f"{patient} {onset}{rng.choice(CLOSERS)}",
            "label": level,
            "advice": advice(level, condition),
            "terms": TERM_SEPARATOR.join(condition.terms),
        }

    def reference(self, record: dict[str, Any]) -> str:
        return f"{record['label']}. {record['advice']}"

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        """The first level (or alias, such as ``self care``) named in the answer's first line."""
        return LEVEL_CLASSIFIER.parse(first_line(text) or "", record)

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        expected = [expected_terms(record) for record in records]
        found = [terms_used(text, terms) for text, terms in zip(predictions, expected)]
        per_example = [
            {
                "parsed": level,
                "correct": level == record["label"],
                "under_triaged": record["label"] == EMERGENCY and level != EMERGENCY,
                "terms_found": list(terms),
            }
            for record, level, terms in zip(records, parsed, found)
        ]
        if not records:
            return Scored(zero_metrics(self.metric_names), per_example)
        import sklearn
        from sklearn.metrics import accuracy_score, f1_score, multilabel_confusion_matrix, recall_score

        truth = [record["label"] for record in records]
        predicted = [UNPARSED if level is None else level for level in parsed]
        codes, truth_codes, predicted_codes = label_codes(LEVELS, truth, predicted)  # as classification scores
        emergency = [codes[EMERGENCY]]
        with sklearn.config_context(skip_parameter_validation=True):
            tn, fp, missed_emergencies, tp = multilabel_confusion_matrix(
                truth_codes, predicted_codes, labels=emergency
            )[0].ravel()
            # As classification: macro over the levels present, so a test split without some level is not capped.
            present = [codes[level] for level in LEVELS if level in truth]
            metrics = {
                "macro_f1": float(f1_score(truth_codes, predicted_codes, labels=present, average="macro")),
                "accuracy": float(accuracy_score(truth_codes, predicted_codes)),
                "emergency_recall": float(
                    recall_score(truth_codes, predicted_codes, labels=emergency, average="macro", zero_division=0)
                ),
                "under_triaged_emergencies": float(missed_emergencies),
                "terminology": terminology(expected, found),
                "parse_failures": float(parsed.count(None)),
            }
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """Another level with its advice; for an emergency always a lower one (the unsafe answer)."""
        if stored := self.stored_rejected(record):
            return stored
        rank = LEVELS.index(record["label"])
        others = LEVELS[:rank] if record["label"] == EMERGENCY else LEVELS[:rank] + LEVELS[rank + 1 :]
        level = rng.choice(others)
        return f"{level}. {advice(level, rng.choice(CONDITIONS[level]))}"

    def validate_record(self, record: dict[str, Any]) -> list[str]:
        problems = []
        if record.get("label") not in LEVELS:
            problems.append(f"label {record.get('label')!r} is not one of {list(LEVELS)}")
        if not isinstance(record.get("advice"), str) or not record["advice"].strip():
            problems.append("field 'advice' is missing or empty")
        if not expected_terms(record):
            problems.append("field 'terms' (the expected medical terms, separated by ';') is missing or empty")
        return problems or super().validate_record(record)

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        """A ``fields`` row: ``symptoms``, ``label`` (a level), ``advice`` and ``terms`` (separated by ``;``)."""
        return {name: source_text(row, name, origin).strip() for name in ("symptoms", "label", "advice", "terms")}


def advice(level: str, condition: Condition) -> str:
    return f"{ACTIONS[level]}: this may be {condition.name}."


def expected_terms(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(term.strip() for term in str(record.get("terms") or "").split(";") if term.strip())


def terms_used(text: object, terms: tuple[str, ...]) -> tuple[str, ...]:
    """The ``terms`` that ``text`` names as whole words (any case, any spacing)."""
    if not isinstance(text, str) or not terms:
        return ()
    pattern = _term_pattern(terms)
    named = {" ".join(match.group(0).lower().split()) for match in pattern.finditer(text)}
    return tuple(term for term in terms if " ".join(term.lower().split()) in named)


def terminology(expected: list[tuple[str, ...]], found: list[tuple[str, ...]]) -> float:
    """The mean over examples of the share of their expected terms that the answer uses."""
    from sklearn.metrics import recall_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer(classes=sorted({*TERMS, *(term for terms in expected for term in terms)}))
    return float(
        recall_score(binarizer.fit_transform(expected), binarizer.transform(found), average="samples", zero_division=0)
    )


@cache
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    return label_pattern(terms)
