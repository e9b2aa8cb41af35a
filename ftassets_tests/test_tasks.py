import json
import random
import string
from collections import Counter

import pytest

from ftassets.tasks import TASK_TYPES, Scored, TaskType, get_task_type
from ftassets.tasks.classification import LABELS
from ftassets.tasks.instruction import CATEGORIES
from ftassets.tasks.sql import connect_read_only, run_query, schema_text

ALL_TYPES = sorted(name for name, task_type in TASK_TYPES.items() if task_type.has_generator)
QUALITY_BOUNDS = (0.0, 1.0)


def records_of(task_type: TaskType, count: int = 200, seed: int = 0, **params) -> list[dict]:
    return task_type.generate(count, random.Random(seed), params)


def prompt(task_type: TaskType, record: dict) -> str:
    return task_type.render_prompt(record, task_type.default_prompt_template)


def quality_metrics(task_type: TaskType, scored: Scored) -> dict[str, float]:
    return {name: value for name, value in scored.metrics.items() if name not in task_type.count_metrics}


@pytest.fixture(params=ALL_TYPES)
def task_type(request) -> TaskType:
    return get_task_type(request.param)


def test_interface_is_consistent(task_type):
    template_fields = {name for _, name, _, _ in string.Formatter().parse(task_type.default_prompt_template) if name}
    assert template_fields == set(task_type.fields)
    assert task_type.default_primary_metric in task_type.metric_names
    assert task_type.metric_names[-1] == "parse_failures"
    assert task_type.validate_params({}) == []


def test_same_seed_same_records_whatever_the_global_random_state(task_type):
    random.seed(1)
    first = records_of(task_type, 100, seed=7)
    random.seed(2)
    second = records_of(task_type, 100, seed=7)
    assert first == second
    assert records_of(task_type, 100, seed=8) != first


def test_two_thousand_records_have_at_least_1500_distinct_prompts(task_type):
    prompts = {prompt(task_type, record) for record in records_of(task_type, 2000, seed=3)}
    assert len(prompts) >= 1500


def test_records_are_valid_flat_json_with_short_prompts(task_type):
    for record in records_of(task_type, 300, seed=4):
        assert task_type.validate_record(record) == []
        assert json.loads(json.dumps(record)) == record
        assert all(not isinstance(value, (dict, list)) for value in record.values())
        assert task_type.reference(record).strip()
        assert len(prompt(task_type, record).split()) <= 90


def test_rejected_answer_differs_from_reference(task_type):
    rng = random.Random(5)
    for record in records_of(task_type, 300, seed=5):
        rejected = task_type.rejected(record, rng)
        assert rejected.strip()
        assert rejected != task_type.reference(record)


def test_references_get_the_top_score(task_type):
    records = records_of(task_type, 200, seed=6)
    scored = task_type.score(records, [task_type.reference(record) for record in records])
    assert set(scored.metrics) == set(task_type.metric_names)
    assert scored.metrics[task_type.default_primary_metric] == pytest.approx(1.0)
    assert all(value == pytest.approx(1.0) for value in quality_metrics(task_type, scored).values())
    assert scored.metrics["parse_failures"] == 0.0
    assert len(scored.per_example) == len(records)
    assert all(example["correct"] is True or example["correct"] == pytest.approx(1.0) for example in scored.per_example)


def test_rejected_answers_score_below_references(task_type):
    records = records_of(task_type, 200, seed=7)
    rng = random.Random(7)
    scored = task_type.score(records, [task_type.rejected(record, rng) for record in records])
    assert scored.metrics[task_type.default_primary_metric] < 0.95
    assert scored.metrics["parse_failures"] == 0.0


def test_unparseable_predictions_count_as_parse_failures(task_type):
    records = records_of(task_type, 4, seed=8)
    scored = task_type.score(records, ["", "   ", "\n\n", "\t"])
    assert scored.metrics["parse_failures"] == 4.0
    assert all(value == 0.0 for value in quality_metrics(task_type, scored).values())
    assert [example["parsed"] for example in scored.per_example] == [None] * 4
    assert not any(example["correct"] for example in scored.per_example)


def test_garbage_predictions_never_crash_and_stay_in_range(task_type):
    records = records_of(task_type, 6, seed=9)
    garbage = ["%%% ???", "lorem ipsum dolor", "```\n```", "SELECT", "\x00\x01", "🙂" * 50]
    scored = task_type.score(records, garbage)
    for value in quality_metrics(task_type, scored).values():
        assert QUALITY_BOUNDS[0] <= value <= QUALITY_BOUNDS[1]
    assert 0 <= scored.metrics["parse_failures"] <= len(garbage)
    json.dumps(scored.per_example)


def test_no_predictions_score_zero(task_type):
    scored = task_type.score([], [])
    assert scored.metrics == {name: 0.0 for name in task_type.metric_names}
    assert scored.per_example == []


def test_unknown_param_is_named_in_the_problem_and_refused_by_generate(task_type):
    problems = task_type.validate_params({"colour_scheme": "dark"})
    assert len(problems) == 1 and "colour_scheme" in problems[0]
    with pytest.raises(ValueError, match="colour_scheme"):
        task_type.generate(3, random.Random(0), {"colour_scheme": "dark"})


def test_unknown_task_type_error_lists_the_known_types():
    with pytest.raises(KeyError) as error:
        get_task_type("nope")
    for name in ("classification", "summarization", "qa", "instruction", "sql"):
        assert name in str(error.value)
    assert {name: task_type.name for name, task_type in TASK_TYPES.items()} == {name: name for name in TASK_TYPES}


def test_classification_labels_are_balanced_over_900_samples():
    counts = Counter(record["label"] for record in records_of(get_task_type("classification"), 900, seed=10))
    assert set(counts) == set(LABELS)
    assert all(240 <= count <= 360 for count in counts.values())


def test_classification_params_steer_labels_and_difficulty():
    classification = get_task_type("classification")
    records = records_of(classification, 200, seed=11, labels=["positive", "negative"], difficulty_mix={"hard": 1})
    assert {record["label"] for record in records} == {"positive", "negative"}
    assert {record["difficulty"] for record in records} == {"hard"}
    scored = classification.score(records, [record["label"] for record in records])
    assert scored.metrics["macro_f1"] == 1.0
    assert "difficulty_mix" in " ".join(classification.validate_params({"difficulty_mix": {"extreme": 1}}))
    assert "difficulty_mix" in " ".join(classification.validate_params({"difficulty_mix": {"easy": -1}}))
    assert "labels" in " ".join(classification.validate_params({"labels": ["positive", "angry"]}))


def test_classification_parses_the_first_label_word_and_scores_with_sklearn():
    classification = get_task_type("classification")
    assert classification.parse("  Positive.\nreason: ...", {}) == "positive"
    assert classification.parse("It is NEGATIVE, not neutral", {}) == "negative"
    assert classification.parse("positively great", {}) is None
    labels = ("positive", "negative", "neutral", "neutral")
    records = [{"text": "t", "label": label, "difficulty": "easy"} for label in labels]
    scored = classification.score(records, ["positive", "neutral", "neutral", "???"])
    assert scored.metrics["accuracy"] == 0.5
    assert scored.metrics["parse_failures"] == 1.0
    assert scored.metrics["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)


def test_qa_answers_are_short_spans_of_the_context_and_rejected_is_another_span():
    qa = get_task_type("qa")
    rng = random.Random(12)
    for record in records_of(qa, 300, seed=12):
        assert record["answer"] in record["context"]
        assert 1 <= len(record["answer"].split()) <= 3
        assert qa.rejected(record, rng) in record["context"]


def test_qa_parse_strips_answer_prefix_and_token_f1_gives_partial_credit():
    qa = get_task_type("qa")
    record = {
        "context": "Anna likes to eat apple pie.",
        "question": "What does Anna like to eat?",
        "answer": "apple pie",
    }
    assert qa.parse('Answer: "apple pie".\nMore text', record) == "apple pie"
    scored = qa.score([record, record], ["apple pie", "pie"])
    assert scored.metrics["exact_match"] == 0.5
    assert scored.metrics["token_f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert [example["correct"] for example in scored.per_example] == [True, False]


def test_summaries_are_one_short_sentence_and_rejected_changes_a_fact():
    summarization = get_task_type("summarization")
    rng = random.Random(13)
    for record in records_of(summarization, 300, seed=13):
        assert 6 <= len(record["summary"].split()) <= 16
        assert record["summary"].count(".") == 1 and record["summary"].endswith(".")
        assert len(record["document"].split()) <= 80
        rejected = summarization.rejected(record, rng)
        assert len(rejected.split()) == len(record["summary"].split())


def test_instruction_outputs_are_right_and_categories_param_restricts_them():
    instruction = get_task_type("instruction")
    records = records_of(instruction, 400, seed=14)
    assert {record["category"] for record in records} == set(CATEGORIES)
    for record in records:
        if record["category"] == "sort_numbers":
            assert [int(n) for n in record["output"].split(", ")] == sorted(int(n) for n in record["input"].split(", "))
        if record["category"] == "uppercase":
            assert record["output"] == record["input"].upper()
    only_plural = records_of(instruction, 50, seed=14, categories=["plural"])
    assert {record["category"] for record in only_plural} == {"plural"}
    assert "shout" in " ".join(instruction.validate_params({"categories": ["plural", "shout"]}))


def test_instruction_exact_match_is_case_sensitive_while_rouge_is_not():
    instruction = get_task_type("instruction")
    record = {
        "instruction": "Convert the text to uppercase.",
        "input": "red fox",
        "output": "RED FOX",
        "category": "uppercase",
    }
    scored = instruction.score([record], ["red fox"])
    assert scored.metrics["exact_match"] == 0.0
    assert scored.metrics["rougeL"] == 1.0


def test_every_sql_reference_and_rejected_query_executes_with_an_answer():
    sql = get_task_type("sql")
    connection = connect_read_only()
    rng = random.Random(15)
    for record in records_of(sql, 500, seed=15):
        rows = run_query(connection, record["query"])
        assert rows, record["query"]
        assert rows[0] != (0,) and None not in rows[0]
        assert run_query(connection, sql.rejected(record, rng)) is not None
    assert schema_text().splitlines()[1].startswith("employees(id, name, department_id, salary")


def test_sql_max_joins_zero_never_joins():
    sql = get_task_type("sql")
    assert not any("JOIN" in record["query"] for record in records_of(sql, 300, seed=16, max_joins=0))
    assert any("JOIN" in record["query"] for record in records_of(sql, 300, seed=16))
    assert "max_joins" in " ".join(sql.validate_params({"max_joins": 3}))


def test_sql_execution_accuracy_compares_results_not_text():
    sql = get_task_type("sql")
    unordered = {"question": "q", "schema": schema_text(), "query": "SELECT name FROM employees WHERE city = 'Ashford'"}
    ordered = {
        "question": "q",
        "schema": schema_text(),
        "query": "SELECT name FROM employees WHERE city = 'Ashford' ORDER BY salary DESC LIMIT 3",
    }
    scored = sql.score(
        [unordered, unordered, ordered, ordered],
        [
            "```sql\nSELECT name FROM employees\nWHERE city = 'Ashford' ORDER BY name DESC;\n```",
            "select  name from employees where city = 'ashford';",
            "SELECT name FROM employees WHERE city = 'Ashford' ORDER BY salary ASC LIMIT 3",
            "SELECT name FROM employees WHERE city='Ashford' ORDER BY salary DESC LIMIT 3",
        ],
    )
    assert [example["correct"] for example in scored.per_example] == [True, False, False, True]
    assert [example["exact_match"] for example in scored.per_example] == [False, True, False, False]
    assert scored.metrics["execution_accuracy"] == 0.5
    assert scored.metrics["exact_match"] == 0.25


def test_sql_runs_only_one_bounded_select_and_the_database_stays_intact():
    sql = get_task_type("sql")
    record = {"question": "q", "schema": schema_text(), "query": "SELECT COUNT(*) FROM employees"}
    wrong_or_refused = [
        "DROP TABLE employees",
        "SELECT 1; DELETE FROM employees",
        "SELECT COUNT(*) FROM employees a, employees b, employees c, employees d, employees e",
        "SELECT randomblob(1000000000)",
        "SELECT load_extension('evil')",
    ]
    scored = sql.score([record] * (len(wrong_or_refused) + 1), [*wrong_or_refused, "SELECT COUNT(*) FROM employees"])
    assert [example["correct"] for example in scored.per_example] == [False] * len(wrong_or_refused) + [True]
    assert sql.parse("SELECT COUNT(*) FROM employees; DROP TABLE employees", record) == "SELECT COUNT(*) FROM employees"
    connection = connect_read_only()
    assert run_query(connection, "SELECT COUNT(*) FROM employees; DROP TABLE employees") is None
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x FROM n"
    assert run_query(connection, endless) is None
    assert run_query(connection, "SELECT COUNT(*) FROM employees") == [(30,)]
