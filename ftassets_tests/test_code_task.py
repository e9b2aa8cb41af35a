"""The ``code`` task type: seeded problems at three levels, answers parsed from their code block and scored by running
their tests in the sandbox, and the user's own problems read through the data-source layer."""

import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ftassets.config import load_project_config
from ftassets.data.sources import DataSourceError
from ftassets.data.user_data import build_splits_from_source
from ftassets.evaluation.significance import metric_intervals
from ftassets.tasks import get_task_type, task_type_for
from ftassets.tasks._sandbox import run_many
from ftassets.tasks.code import LEVELS, TEMPLATES, CodeTask

REPO = Path(__file__).resolve().parents[1]


def code_task(source: object = None, **params) -> CodeTask:
    return task_type_for(SimpleNamespace(type="code", config=SimpleNamespace(params=params, source=source)))


def records_at(level: str, count: int, seed: int) -> list[dict]:
    return get_task_type("code").generate(count, random.Random(seed), {"difficulty_mix": {level: 1}})


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_is_seeded_diverse_and_uses_all_of_its_templates(level):
    records = records_at(level, 200, seed=1)
    assert records == records_at(level, 200, seed=1)
    assert records != records_at(level, 200, seed=2)
    assert {record["difficulty"] for record in records} == {level}
    assert len({record["problem"] for record in records}) >= 190
    assert {record["template"] for record in records} == {template.__name__[1:] for template in TEMPLATES[level]}


def test_the_prompt_shows_the_signature_docstring_and_one_example_but_not_the_tests():
    task = get_task_type("code")
    record = task.generate(1, random.Random(4), {})[0]
    prompt = task.render_prompt(record, task.default_prompt_template)
    name = record["solution"].split("(")[0].removeprefix("def ")
    assert record["problem"] in prompt and "```python" in prompt
    assert record["problem"].startswith(f"def {name}(") and "    Example: " in record["problem"]
    tests = record["tests"].splitlines()
    assert len(tests) == 4 and all(line.startswith(f"assert {name}(") for line in tests)
    assert sum(line.removeprefix("assert ") in prompt for line in tests) == 1
    assert task.reference(record) == f"```python\n{record['solution']}\n```"


def test_every_template_reference_passes_its_tests_and_its_wrong_solution_fails_them():
    rng = random.Random(9)
    records = [CodeTask._record(level, template, rng) for level in LEVELS for template in TEMPLATES[level]]
    references = run_many([(record["solution"], record["tests"]) for record in records])
    wrong = run_many([(record["wrong_solution"], record["tests"]) for record in records])
    assert [(r["template"], result.reason) for r, result in zip(records, references) if not result.passed] == []
    assert [r["template"] for r, result in zip(records, wrong) if result.reason != "failed"] == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Here you go:\n```python\ndef f(x):\n    return x\n```\nDone.", "def f(x):\n    return x"),
        ("```\ndef f(x):\n    return x\n```", "def f(x):\n    return x"),
        ("```text\nnotes\n```\n```py\ndef f(x):\n    return x\n```", "def f(x):\n    return x"),
        ("```python\n    def f(x):\n        return x\n", "def f(x):\n    return x"),
        ("Sure! The function is:\n\ndef f(x):\n    return x\n", "def f(x):\n    return x"),
        ("import math\ndef f(x):\n    return math.floor(x)", "import math\ndef f(x):\n    return math.floor(x)"),
        ("lorem ipsum", "lorem ipsum"),
        ("```python\n```", None),
        ("   \n", None),
    ],
    ids=[
        "fenced",
        "untagged",
        "python-block-preferred",
        "unterminated-indented",
        "prose-then-def",
        "bare",
        "prose",
        "empty-fence",
        "blank",
    ],
)
def test_parse_takes_the_code_block_or_the_code_after_prose(text, code):
    assert get_task_type("code").parse(text, {}) == code


def test_score_runs_each_answer_and_keeps_why_it_failed():
    task = code_task(timeout_s=5.0)
    record = {
        "problem": "def add(a, b): ...",
        "solution": "def add(a, b):\n    return a + b",
        "tests": "assert add(1, 2) == 3",
    }
    answers = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(a, b):\n    return a - b\n```",
        "```python\ndef add(a, b)\n    return a + b\n```",
        "```python\nimport time\ndef add(a, b):\n    time.sleep(30)\n```",
        "```python\nimport os\ndef add(a, b):\n    os.system('rm -rf /')\n```",
        "",
    ]
    scored = task.score([record] * len(answers), answers)
    reasons = [example["reason"] for example in scored.per_example]
    assert reasons == ["passed", "failed", "syntax_error", "timeout", "forbidden", "no_code"]
    assert [example["correct"] for example in scored.per_example] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert scored.metrics == {
        "pass_at_1": pytest.approx(1 / 6),
        "syntax_valid_rate": pytest.approx(4 / 6),
        "parse_failures": 1.0,
    }
    assert scored.per_example[4]["message"] == "starting a process: os.system"
    json.dumps(scored.per_example)


def test_the_bootstrap_reads_every_metric_from_the_examples_without_running_them_again():
    task = get_task_type("code")
    records = task.generate(6, random.Random(2), {})
    answers = [task.reference(r) if i % 2 else task.rejected(r, random.Random(i)) for i, r in enumerate(records)]
    scored = task.score(records, answers)
    quality = {name: value for name, value in scored.metrics.items() if name != "parse_failures"}
    intervals = metric_intervals(scored.per_example, quality, lambda sample: pytest.fail("rescored"), resamples=50)
    assert set(intervals) == {"pass_at_1", "syntax_valid_rate"} and scored.metrics["pass_at_1"] == 0.5


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"difficulty_mix": {"easy": 1, "expert": 1}}, "unknown level(s) ['expert']"),
        ({"difficulty_mix": {"easy": 0}}, "must add up to more than 0"),
        ({"timeout_s": 0}, "timeout_s must be a number of seconds in (0, 60]"),
        ({"memory_mb": 8}, "memory_mb must be a whole number of MiB from 64 to 16384"),
    ],
)
def test_bad_params_are_named(params, problem):
    with pytest.raises(ValueError, match="invalid params for task type 'code'") as error:
        code_task(**params)
    assert problem in str(error.value)


def test_difficulty_mix_is_refused_for_a_task_with_its_own_data():
    with pytest.raises(ValueError, match="difficulty_mix steers the synthetic generator"):
        code_task(source="code.jsonl", difficulty_mix={"easy": 1})


def own_problem(index: int, broken: bool = False) -> dict:
    return {
        "prompt": f"Write add_{index}(x) that returns x plus {index}.",
        "solution": f"```python\ndef add_{index}(x):\n    return x + {index}\n```",
        "tests": f"assert add_{index}(1) == {index + 1 + broken}\nassert add_{index}(0) == {index}",
    }


def own_data_project(tmp_path: Path, rows: list[dict]):
    """The shipped configs plus a task ``my-code`` over ``data/code.jsonl`` holding ``rows``."""
    config_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", config_dir)
    (config_dir / "data").mkdir()
    (config_dir / "data" / "code.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    tasks = yaml.safe_load((config_dir / "tasks.yaml").read_text())
    tasks["tasks"]["my-code"] = {
        "type": "code",
        "source": {
            "path": "data/code.jsonl",
            "format": "jsonl",
            "fractions": {"train": 0.6, "validation": 0.2, "test": 0.2},
        },
    }
    (config_dir / "tasks.yaml").write_text(yaml.safe_dump(tasks))
    project = load_project_config(config_dir)
    return project, project.tasks["my-code"]


def test_the_users_problems_become_rows_with_fenced_reference_answers(tmp_path):
    project, task = own_data_project(tmp_path, [own_problem(index) for index in range(10)])
    splits, facts = build_splits_from_source(project, task, tmp_path / "cache", lambda line: None)
    rows = [row for split in splits.values() for row in split]
    assert facts["schema"] == "fields" and len(rows) == 10
    row = rows[0]
    assert row["answer"] == f"```python\n{row['solution']}\n```" and row["solution"].startswith("def add_")
    assert row["rejected"].endswith("    return None\n```")
    assert get_task_type("code").score(rows, [row["answer"] for row in rows]).metrics["pass_at_1"] == 1.0


def test_a_user_row_whose_reference_fails_its_own_tests_is_refused_naming_the_row(tmp_path):
    rows = [own_problem(index, broken=index == 3) for index in range(10)]
    project, task = own_data_project(tmp_path, rows)
    with pytest.raises(DataSourceError) as error:
        build_splits_from_source(project, task, tmp_path / "cache", lambda line: None)
    message = str(error.value)
    assert "1 row(s) cannot be used" in message
    assert "code.jsonl:line 4: the reference solution does not pass its own tests" in message
    assert "failed: test 1: assert add_3(1) == 5" in message


def test_a_user_row_missing_its_tests_is_refused():
    with pytest.raises(ValueError, match=r"rows.csv:row 2: field 'tests' is missing"):
        code_task(source="rows.csv").from_source_row(
            {"prompt": "p", "solution": "def f(): pass", "_origin": "rows.csv:row 2"}, "fields"
        )
