"""One-sentence summaries of short templated news documents.

Each event has two key sentences (who, what, where, when, a number) and filler sentences around
them; the summary restates the key facts, so it is learnable by copying from the document.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ftassets.tasks import _vocab as vocab
from ftassets.tasks._scoring import (
    ROUGE_TYPES,
    first_line,
    generation_metric_problems,
    score_chosen_generations,
    whole_text,
    zero_metrics,
)
from ftassets.tasks.base import Scored, TaskType

FACILITIES = ("bakery", "factory", "warehouse", "office", "store", "clinic", "hotel", "workshop")
FESTIVAL_THEMES = ("music", "food", "film", "book", "flower", "kite", "jazz", "cheese", "lantern", "dance")
AWARDS = ("Golden Star", "Silver Leaf", "Bright Future", "Community Hero", "Blue Ribbon", "Top Talent")
CAUSES = ("local hospital", "animal shelter", "town library", "food bank", "children's park", "river cleanup")
FUNDRAISERS = ("bake sale", "charity run", "book fair", "car wash", "school concert", "quiz night")
SPORTS = ("football", "basketball", "hockey", "rugby", "volleyball", "cricket")
TEAM_NAMES = ("Lions", "Eagles", "Rangers", "Tigers", "Wolves", "Falcons", "Bears", "Sharks")
BUILDINGS = ("bridge", "library", "swimming pool", "sports hall", "train station", "town hall", "museum")
WEATHER = ("sunny", "rainy", "windy", "cold", "warm", "cloudy")
MOODS = ("great", "proud", "happy", "busy", "long")


def _opening(rng: random.Random) -> dict[str, Any]:
    org, facility = vocab.org_name(rng), rng.choice(FACILITIES)
    town, month = rng.choice(vocab.TOWNS), rng.choice(vocab.MONTHS)
    jobs = rng.randrange(20, 500, 5)
    return {
        "where": town,
        "number": jobs,
        "key": [f"{org} opened a new {facility} in {town} in {month}.", f"The {facility} will employ {jobs} people."],
        "fillers": [
            f"The mayor of {town} attended the opening.",
            f"{org} was founded {rng.randrange(3, 90)} years ago.",
            f"It is the first {facility} the company has built.",
        ],
        "summary": f"{org} opened a {facility} in {town} that will employ {jobs} people.",
    }


def _closure(rng: random.Random) -> dict[str, Any]:
    org, facility = vocab.org_name(rng), rng.choice(FACILITIES)
    town, month = rng.choice(vocab.TOWNS), rng.choice(vocab.MONTHS)
    jobs = rng.randrange(20, 500, 5)
    return {
        "where": town,
        "number": jobs,
        "key": [
            f"{org} will close its {facility} in {town} in {month}.",
            f"About {jobs} workers will lose their jobs.",
        ],
        "fillers": [
            f"The {facility} has been open since {rng.randrange(1950, 2015)}.",
            "The company blamed rising costs.",
            f"Workers in {town} were told on {rng.choice(vocab.DAYS)}.",
        ],
        "summary": f"{org} will close its {facility} in {town}, cutting {jobs} jobs.",
    }


def _festival(rng: random.Random) -> dict[str, Any]:
    theme, town, month = rng.choice(FESTIVAL_THEMES), rng.choice(vocab.TOWNS), rng.choice(vocab.MONTHS)
    visitors = rng.randrange(200, 9000, 50)
    organiser = vocab.person_name(rng)
    return {
        "where": town,
        "number": visitors,
        "key": [
            f"The town of {town} held its {theme} festival in {month}.",
            f"Around {visitors} people came to the festival.",
        ],
        "fillers": [
            f"The weather was {rng.choice(WEATHER)} all weekend.",
            f"{organiser}, who planned the event, called it a {rng.choice(MOODS)} day.",
            "Tickets were sold out a week early.",
        ],
        "summary": f"The {theme} festival in {town} drew {visitors} visitors in {month}.",
    }


def _award(rng: random.Random) -> dict[str, Any]:
    person, job, town = vocab.person_name(rng), rng.choice(vocab.JOBS), rng.choice(vocab.TOWNS)
    award, years = rng.choice(AWARDS), rng.randrange(5, 40)
    return {
        "where": town,
        "number": years,
        "key": [
            f"{person}, a {job} from {town}, won the {award} award in {rng.choice(vocab.MONTHS)}.",
            f"{person.split()[0]} has worked as a {job} for {years} years.",
        ],
        "fillers": [
            f"The prize was given at a dinner on {rng.choice(vocab.DAYS)}.",
            f"Friends say {person.split()[0]} was very surprised.",
            "The award is given once a year.",
        ],
        "summary": f"{person} from {town} won the {award} award after {years} years as a {job}.",
    }


def _charity(rng: random.Random) -> dict[str, Any]:
    town, cause, fundraiser = rng.choice(vocab.TOWNS), rng.choice(CAUSES), rng.choice(FUNDRAISERS)
    amount = rng.randrange(300, 20000, 100)
    return {
        "where": town,
        "number": amount,
        "key": [
            f"Students in {town} raised {amount} dollars for the {cause} in {rng.choice(vocab.MONTHS)}.",
            f"The money came from a {fundraiser}.",
        ],
        "fillers": [
            f"Their teacher, {vocab.person_name(rng)}, helped to plan it.",
            "Parents and neighbours joined in.",
            f"It was {rng.choice(WEATHER)} on the day.",
        ],
        "summary": f"Students in {town} raised {amount} dollars for the {cause} with a {fundraiser}.",
    }


def _match(rng: random.Random) -> dict[str, Any]:
    team, town, sport = rng.choice(TEAM_NAMES), rng.choice(vocab.TOWNS), rng.choice(SPORTS)
    points = rng.randrange(2, 120)
    return {
        "where": town,
        "number": points,
        "key": [
            f"The {team} from {town} won the regional {sport} final in {rng.choice(vocab.MONTHS)}.",
            f"They scored {points} points in the match.",
        ],
        "fillers": [
            f"Their coach, {vocab.person_name(rng)}, praised the players.",
            f"The match was played on a {rng.choice(WEATHER)} {rng.choice(vocab.DAYS)}.",
            "Fans celebrated in the streets.",
        ],
        "summary": f"The {team} from {town} won the {sport} final, scoring {points} points.",
    }


def _building(rng: random.Random) -> dict[str, Any]:
    town, building, month = rng.choice(vocab.TOWNS), rng.choice(BUILDINGS), rng.choice(vocab.MONTHS)
    millions = rng.randrange(2, 95)
    return {
        "where": town,
        "number": millions,
        "key": [
            f"The council of {town} approved a new {building} in {month}.",
            f"The {building} will cost {millions} million dollars.",
        ],
        "fillers": [
            f"Work will start in {rng.choice(vocab.MONTHS)} next year.",
            f"The old {building} is more than {rng.randrange(40, 150)} years old.",
            "Some residents asked for a vote first.",
        ],
        "summary": f"{town} approved a new {building} that will cost {millions} million dollars.",
    }


EVENT_WRITERS = {
    "opening": _opening,
    "closure": _closure,
    "festival": _festival,
    "award": _award,
    "charity": _charity,
    "match": _match,
    "building": _building,
}


class SummarizationTask(TaskType):
    semantic_similarity = True
    name = "summarization"
    fields = ("document",)
    metric_names = (*ROUGE_TYPES, "bleu", "chrf", "parse_failures")
    default_primary_metric = "rougeL"
    default_prompt_template = "Summarize the document in one sentence.\nDocument: {document}"
    default_max_new_tokens = 64
    answer_field = "summary"
    allowed_params = frozenset({"metrics"})
    source_schemas = ("fields", "prompt_completion", "preference")

    def configure(self) -> None:
        if "metrics" in self.params:
            self.metric_names = (*self.params["metrics"], "parse_failures")

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        return super().validate_params(params) + generation_metric_problems(params, self.metric_names[:-1])

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.bind(params, synthetic=True)
        records = []
        for _ in range(count):
            event = rng.choice(sorted(EVENT_WRITERS))
            facts = EVENT_WRITERS[event](rng)
            fillers = rng.sample(facts["fillers"], rng.randint(1, 3))
            body = [facts["key"][1], *fillers]
            rng.shuffle(body)
            records.append(
                {
                    "document": " ".join([facts["key"][0], *body]),
                    "summary": facts["summary"],
                    "event": event,
                    "where": facts["where"],
                    "number": facts["number"],
                }
            )
        return records

    def reference(self, record: dict[str, Any]) -> str:
        return record["summary"]

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        """The first line for the one-sentence synthetic summaries; the whole text for the user's own."""
        return first_line(text) if self.synthetic else whole_text(text)

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        if not records:
            return Scored(zero_metrics(self.metric_names), [])
        references = [self.reference(record) for record in records]
        return Scored(*score_chosen_generations(parsed, references, self.metric_names))

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """The row's own rejected summary (a preference row), else the reference summary with its place or its
        number replaced by another one."""
        if stored := self.stored_rejected(record):
            return stored
        summary = self.reference(record)
        town, number = str(record.get("where", "")), str(record.get("number", ""))
        if town in vocab.TOWNS and town in summary and (rng.random() < 0.5 or not number.isdigit()):
            return summary.replace(town, rng.choice([other for other in vocab.TOWNS if other != town]))
        if number.isdigit() and re.search(rf"\b{number}\b", summary):
            wrong_number = int(number) + rng.choice((-1, 1)) * rng.randint(1, max(2, int(number) // 2))
            return re.sub(rf"\b{number}\b", str(wrong_number), summary, count=1)
        return summary.rstrip(".") + " last year."
