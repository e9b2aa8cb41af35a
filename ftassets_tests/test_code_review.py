"""The ``code_review`` task type: seeded snippets with one planted bug of four categories, shown as a function or a
diff; answers parsed into a category and a comment, scored by category accuracy and ROUGE-L of the comment."""

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ftassets.evaluation.significance import metric_intervals
from ftassets.tasks import get_task_type, task_type_for
from ftassets.tasks.code_review import CATEGORIES, TEMPLATES, CodeReviewTask, split_answer

REPO = Path(__file__).resolve().parents[1]


def review_task(source: object = None, **params) -> CodeReviewTask:
    return task_type_for(SimpleNamespace(type="code_review", config=SimpleNamespace(params=params, source=source)))


def records(count: int, seed: int, **params) -> list[dict]:
    return review_task(**params).generate(count, random.Random(seed), params)


def test_categories_are_balanced_every_template_is_used_and_half_are_diffs():
    drawn = records(800, seed=1)
    assert Counter(record["category"] for record in drawn) == dict.fromkeys(CATEGORIES, 200)
    assert {record["template"] for record in drawn} == {t.__name__[1:] for ts in TEMPLATES.values() for t in ts}
    assert 0.4 < sum(record["form"] == "diff" for record in drawn) / len(drawn) < 0.6
    assert len({record["code"] for record in drawn}) >= 700


@pytest.mark.parametrize(("share", "form"), [(0, "function"), (1, "diff")])
def test_diff_share_chooses_the_form(share, form):
    assert {record["form"] for record in records(40, seed=2, diff_share=share)} == {form}


def test_snippets_are_python_and_a_diff_changes_the_fixed_version():
    for record in records(400, seed=3):
        compile(record["fixed"], "<fixed>", "exec")
        if record["form"] == "function":
            compile(record["code"], "<buggy>", "exec")
            assert record["code"] != record["fixed"]
            continue
        lines = record["code"].splitlines()
        assert lines[0].startswith("@@ -") and lines[0].endswith(" @@")
        assert all(line[1:] in record["fixed"].splitlines() for line in lines[1:] if not line.startswith("+"))
        assert any(line.startswith(("+", "-")) for line in lines[1:])


def test_the_prompt_shows_the_code_and_names_the_four_categories():
    task = get_task_type("code_review")
    record = records(1, seed=4)[0]
    prompt = task.render_prompt(record, task.default_prompt_template)
    assert record["code"] in prompt and all(category in prompt for category in CATEGORIES)
    assert task.reference(record) == f"{record['category']}: {record['comment']}"


@pytest.mark.parametrize(
    ("text", "category", "comment"),
    [
        ("off_by_one: the loop stops early", "off_by_one", "the loop stops early"),
        ("Off-by-one: range stops one short.\nmore text", "off_by_one", "range stops one short."),
        ("SQL injection - built from strings", "sql_injection", "SQL injection - built from strings"),
        ("This leaks: resource leak, never closed", "resource_leak", "resource leak, never closed"),
        ("\n  unchecked_none:match may be None  ", "unchecked_none", "match may be None"),
        ("the code looks fine", None, "the code looks fine"),
        ("", None, ""),
    ],
)
def test_an_answer_splits_into_its_first_lines_category_and_the_text_after_the_colon(text, category, comment):
    assert split_answer(text) == (category, comment)


def test_scores_count_right_categories_comment_overlap_and_unparsed_answers():
    task = get_task_type("code_review")
    drawn = records(4, seed=5, diff_share=0)
    answers = [
        task.reference(drawn[0]),
        f"{drawn[1]['category']}: something else entirely",
        next(c for c in CATEGORIES if c != drawn[2]["category"]) + ": " + drawn[2]["comment"],
        "no idea",
    ]
    scored = task.score(drawn, answers)
    assert scored.metrics["category_accuracy"] == pytest.approx(0.5)
    assert scored.metrics["parse_failures"] == 1.0
    rouge = [example["rougeL"] for example in scored.per_example]
    assert rouge[0] == rouge[2] == pytest.approx(1.0) and rouge[1] < 0.3 and rouge[3] < 0.3
    assert scored.metrics["rougeL"] == pytest.approx(sum(rouge) / 4)
    assert [example["correct"] for example in scored.per_example] == [True, True, False, False]
    intervals = metric_intervals(
        scored.per_example,
        {name: value for name, value in scored.metrics.items() if name != "parse_failures"},
        lambda sample: task.score([drawn[i] for i in sample], [answers[i] for i in sample]).metrics,
        resamples=50,
    )
    assert set(intervals) == {"category_accuracy", "rougeL"}


def test_a_rejected_answer_names_another_category_in_the_answer_format():
    task, rng = get_task_type("code_review"), random.Random(6)
    for record in records(100, seed=6):
        category, comment = split_answer(task.rejected(record, rng))
        assert category in CATEGORIES and category != record["category"] and comment


def test_params_are_checked():
    assert review_task().validate_params({"diff_share": 0.3}) == []
    for share in (-0.1, 1.5, "half", True):
        problems = review_task().validate_params({"diff_share": share})
        assert problems and "diff_share must be a number from 0 to 1" in problems[0]
    with pytest.raises(ValueError, match="a task with a source takes its rows"):
        review_task(source="reviews.jsonl", diff_share=0.5)


def test_the_users_rows_are_read_from_fields_and_a_wrong_category_is_refused_naming_the_row():
    task = review_task(source="reviews.jsonl")
    row = {"code": "def f(x):\n    return x.y", "category": "unchecked_none", "comment": "x may be None"}
    record = task.from_source_row({**row, "_origin": "reviews.jsonl:3"}, "fields")
    assert record == {**row, "_origin": "reviews.jsonl:3"}
    assert task.reference(record) == "unchecked_none: x may be None"
    with pytest.raises(ValueError, match=r"^reviews.jsonl:4: category 'style' is not one of"):
        task.from_source_row({**row, "category": "style", "_origin": "reviews.jsonl:4"}, "fields")
    with pytest.raises(ValueError, match="reviews.jsonl:5: field 'comment' is missing"):
        task.from_source_row({"code": "x", "category": "off_by_one", "_origin": "reviews.jsonl:5"}, "fields")


def test_the_shipped_code_review_task_is_configured_but_in_no_experiment():
    tasks = yaml.safe_load((REPO / "configs" / "tasks.yaml").read_text())["tasks"]
    assert tasks["code_review"]["type"] == "code_review"
    assert tasks["code_review"]["primary_metric"] == "category_accuracy"
    experiments = yaml.safe_load((REPO / "configs" / "experiments.yaml").read_text())["experiments"]
    assert not [name for name, experiment in experiments.items() if "code_review" in experiment["tasks"]]
