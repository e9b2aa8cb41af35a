"""The teacher LLM as a data source (``ftassets/data/sources/teacher.py``), over real HTTP with the real ``openai``
SDK against a loopback OpenAI v1 server (``fakes/openai_v1.py``) whose replies the tests script."""

from __future__ import annotations

import json
import re
import socket

import pytest
from fakes.openai_v1 import FakeOpenAI, words
from helpers import edit_yaml

from ftassets.config import ConfigError, ResolvedTask, load_project_config
from ftassets.config.schemas import TaskConfig
from ftassets.config.sources import TeacherSource
from ftassets.data.sources.teacher import PROMPTS, TeacherError, generate_rows
from ftassets.endpoints import MissingCredentials

INPUT_PER_1M, OUTPUT_PER_1M = 1000.0, 2000.0
SEED_ROWS = [
    {"text": "The battery died after a day.", "label": "negative"},
    {"text": "Lovely staff and quick delivery.", "label": "positive"},
    {"text": "It does what it says, nothing more.", "label": "neutral"},
]


class ScriptedTeacher:
    """Each answer: an empty text, an unknown label, a seed row reworded in case and punctuation, then five new rows
    with the first repeated; the second answer is prose, not JSON."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: dict) -> str:
        call, self.calls = self.calls, self.calls + 1
        if call == 1:
            return "Sure! Here are some reviews you might like."
        labels = re.findall(r'"(\w+)"', body["messages"][-1]["content"].split("exactly one of ")[1].split(".")[0])
        fresh = [
            {"text": f"Review {call}.{i}: item {call * 10 + i} felt {labels[i % 3]}", "label": labels[i % 3]}
            for i in range(5)
        ]
        items = [
            {"text": "", "label": "positive"},
            {"text": f"An angry review {call}", "label": "furious"},
            {"text": "the battery DIED after a day", "label": "negative"},
            fresh[0],
            {**fresh[0], "text": fresh[0]["text"].upper() + "!!"},
            *fresh[1:],
        ]
        return "```json\n" + json.dumps({"rows": items}) + "\n```"


def teacher_base(**overrides) -> dict:
    return {
        "source": "openai_compatible",
        "base_url_env": "TEACHER_BASE_URL",
        "api_key_env": "TEACHER_KEY",
        "model": "teacher-large",
        "max_retries": 2,
        "pricing": {"input_per_1m": INPUT_PER_1M, "output_per_1m": OUTPUT_PER_1M, "as_of": "2026-01-01"},
        **overrides,
    }


@pytest.fixture
def fake(monkeypatch):
    with FakeOpenAI(ScriptedTeacher()) as server:
        monkeypatch.setenv("TEACHER_BASE_URL", server.base_url)
        monkeypatch.setenv("TEACHER_KEY", "teacher-secret")
        yield server


@pytest.fixture
def project(config_dir):
    edit_yaml(config_dir / "models.yaml", lambda d: d["bases"].update({"teacher": teacher_base()}))
    return load_project_config(config_dir)


def own_data_task(task_type: str, source: TeacherSource, template: str, **config) -> ResolvedTask:
    """A task whose rows come from the teacher, as the loader resolves one."""
    return ResolvedTask(
        name=f"own-{task_type}",
        config=TaskConfig(type=task_type, source={"teacher": source.model_dump()}, **config),
        prompt_template=template,
        primary_metric="accuracy",
        max_new_tokens=64,
    )


def generate(project, tmp_path, log=None, **teacher):
    source = TeacherSource(**{"base": "teacher", "count": 12, "budget_usd": 10.0, **teacher})
    return generate_rows(
        project, project.tasks["classification"], source, SEED_ROWS, tmp_path / "cache", log or (lambda line: None)
    )


def test_the_teacher_writes_count_valid_distinct_rows_and_counts_what_it_dropped(fake, project, tmp_path):
    result = generate(project, tmp_path)

    assert len(result.rows) == 12 and result.stopped_because == "count reached" and result.prompt_version == "v1"
    assert all(set(row) == {"text", "label", "_origin"} for row in result.rows)
    assert all(row["label"] in ("positive", "negative", "neutral") for row in result.rows)
    assert result.rows[0]["_origin"] == "teacher:0:3" and result.rows[-1]["_origin"] == "teacher:3:5"
    normalized = {re.sub(r"\W+", " ", row["text"].lower()).strip() for row in result.rows + SEED_ROWS}
    assert len(normalized) == 12 + len(SEED_ROWS)
    assert result.usage["rejected_items"] == {
        "duplicate of a seed row or an earlier row": 6,
        "field 'text' is missing or empty": 3,
        "label not one of ['negative', 'positive', 'neutral']": 3,
        "response is not a JSON object with a rows list": 1,
    }
    requests = fake.chat_requests()
    assert len(requests) == result.usage["requests"] == 4 and result.usage["cached_requests"] == 0
    bodies = [json.loads(request["body"]) for request in requests]
    assert {request["headers"]["authorization"] for request in requests} == {"Bearer teacher-secret"}
    assert {body["model"] for body in bodies} == {"teacher-large"}
    assert all(body["temperature"] == 0.8 and body["max_tokens"] == 8 * 80 for body in bodies)
    assert len({body["seed"] for body in bodies}) == 4
    user = bodies[0]["messages"][-1]["content"]
    assert 'exactly one of "negative", "positive", "neutral"' in user and "Write 8 new rows" in user
    assert sum(row["text"] in user for row in SEED_ROWS) == 3
    prompt_tokens = sum(words(m["content"]) for body in bodies for m in body["messages"])
    assert result.usage["prompt_tokens"] == prompt_tokens
    assert result.usage["cost_usd"] == pytest.approx(
        (prompt_tokens * INPUT_PER_1M + result.usage["completion_tokens"] * OUTPUT_PER_1M) / 1e6, abs=1e-6
    )
    assert result.facts()["teacher"]["endpoint"] == fake.base_url and "teacher-secret" not in json.dumps(result.facts())


def test_a_rerun_with_the_same_cache_pays_nothing_and_returns_the_same_rows(fake, project, tmp_path):
    first = generate(project, tmp_path)
    sent = len(fake.chat_requests())

    again = generate(project, tmp_path)

    assert len(fake.chat_requests()) == sent
    assert again.rows == first.rows and again.usage["rejected_items"] == first.usage["rejected_items"]
    assert again.usage | {"cached_requests": 0} == {
        "requests": 4,
        "cached_requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
        "rejected_items": first.usage["rejected_items"],
    }
    assert again.usage["cached_requests"] == 4
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4
    assert not list((tmp_path / "cache").glob(".*"))


def test_generation_stops_before_a_request_would_exceed_the_budget(fake, project, tmp_path):
    lines = []
    result = generate(project, tmp_path, log=lines.append, count=100, budget_usd=2.0)

    assert result.stopped_because == "budget" and 0 < len(result.rows) < 100
    assert 0 < result.usage["cost_usd"] <= 2.0
    assert result.usage["requests"] == len(fake.chat_requests()) >= 2
    assert "would exceed the budget of $2" in lines[-1]


def test_a_budget_below_the_first_requests_estimate_sends_nothing(fake, project, tmp_path):
    result = generate(project, tmp_path, budget_usd=0.5)

    assert (result.rows, result.stopped_because, result.usage["cost_usd"]) == ([], "budget", 0.0)
    assert fake.chat_requests() == []


def test_max_requests_bounds_the_requests(fake, project, tmp_path):
    result = generate(project, tmp_path, count=100, max_requests=3)

    assert result.stopped_because == "max_requests" and len(fake.chat_requests()) == 3 and len(result.rows) == 10


def test_a_429_with_retry_after_is_retried_by_the_client(fake, project, tmp_path):
    fake.throttle(1, retry_after_s="0")

    result = generate(project, tmp_path, count=5)

    assert len(result.rows) == 5 and result.usage["requests"] == 1
    assert len(fake.chat_requests()) == 2


def test_a_429_after_the_clients_retries_names_the_base_and_what_to_do(fake, project, tmp_path):
    fake.throttle(10)

    with pytest.raises(
        TeacherError,
        match=r"teacher base 'teacher' at http://127\.0\.0\.1:\d+/v1 answered 429.*"
        r"max_retries",
    ):
        generate(project, tmp_path)
    assert len(fake.chat_requests()) == 3


def test_an_unreachable_endpoint_fails_naming_the_url(project, tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TEACHER_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("TEACHER_KEY", "k")

    with pytest.raises(TeacherError, match=rf"cannot reach http://127\.0\.0\.1:{port}/v1 .*\$TEACHER_BASE_URL"):
        generate(project, tmp_path)


def test_a_teacher_without_a_price_is_refused_naming_the_base(config_dir, tmp_path, fake):
    edit_yaml(
        config_dir / "models.yaml",
        lambda d: d["bases"].update({"teacher": {k: v for k, v in teacher_base().items() if k != "pricing"}}),
    )
    with pytest.raises(ConfigError, match=r"teacher base 'teacher' has no price.*add bases\.teacher\.pricing"):
        generate(load_project_config(config_dir), tmp_path)
    assert fake.chat_requests() == []


def test_a_teacher_must_be_an_api_base_with_its_credentials(project, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"teacher base 'tiny' is a embedded base.*configured: .*teacher"):
        generate(project, tmp_path, base="tiny")
    monkeypatch.delenv("TEACHER_BASE_URL", raising=False)
    with pytest.raises(MissingCredentials, match=r"\$TEACHER_BASE_URL"):
        generate(project, tmp_path)


def test_every_task_type_has_a_v1_prompt_and_unknown_versions_are_refused(project, tmp_path):
    assert {"classification", "instruction", "qa", "summarization", "sql"} <= set(PROMPTS)
    assert all("v1" in versions for versions in PROMPTS.values())
    with pytest.raises(ConfigError, match=r"prompt_version 'v9' is unknown for task type 'classification'; known: v1"):
        generate(project, tmp_path, prompt_version="v9")


def test_sql_rows_carry_the_schema_and_must_run(project, tmp_path, monkeypatch):
    def responder(body: dict) -> str:
        assert "employees(" in body["messages"][-1]["content"]
        rows = [
            {"question": "How many employees are there?", "query": "SELECT COUNT(*) FROM employees"},
            {"question": "List the moons.", "query": "SELECT name FROM moons"},
            {"question": "Which employees earn most?", "query": "SELECT name FROM employees ORDER BY salary DESC"},
        ]
        return json.dumps({"rows": rows})

    with FakeOpenAI(responder) as server:
        monkeypatch.setenv("TEACHER_BASE_URL", server.base_url)
        monkeypatch.setenv("TEACHER_KEY", "k")
        source = TeacherSource(base="teacher", count=2, budget_usd=10.0)
        result = generate_rows(project, project.tasks["sql"], source, [], tmp_path / "cache", lambda line: None)

    assert [row["query"] for row in result.rows] == [
        "SELECT COUNT(*) FROM employees",
        "SELECT name FROM employees ORDER BY salary DESC",
    ]
    assert all(set(row) == {"question", "schema", "query", "_origin"} and row["schema"] for row in result.rows)
    assert result.usage["rejected_items"] == {"query does not run on the schema": 1}


def test_chat_rows_are_conversations_ending_with_the_answer(project, tmp_path, monkeypatch):
    from ftassets.tasks import TASK_TYPES

    if "chat" not in TASK_TYPES:
        pytest.skip("the chat task type is not registered in this tree")
    conversation = [{"role": "user", "content": "Where is my parcel?"}, {"role": "assistant", "content": "On its way."}]
    rows = [
        {"messages": conversation},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"messages": "Hello there"},
        {"messages": [{"role": "user", "content": "Can I return shoes?"}, {"role": "assistant", "content": "Yes."}]},
    ]
    source = TeacherSource(base="teacher", count=1, budget_usd=10.0, few_shot=1)
    task = own_data_task("chat", source, "{messages}")
    with FakeOpenAI(lambda body: json.dumps({"rows": rows})) as server:
        monkeypatch.setenv("TEACHER_BASE_URL", server.base_url)
        monkeypatch.setenv("TEACHER_KEY", "k")
        result = generate_rows(project, task, source, [{"messages": conversation}], tmp_path, lambda line: None)
        user = json.loads(server.chat_requests()[0]["body"])["messages"][-1]["content"]

    assert '"role": "user" or "assistant"' in user and "Where is my parcel?" in user
    assert [row["messages"][0]["content"] for row in result.rows] == ["Can I return shoes?"]
    assert result.usage["rejected_items"] == {
        "duplicate of a seed row or an earlier row": 1,
        "field 'messages' is not a list of turns": 1,
        "the conversation must end with the assistant's answer": 1,
    }


def test_a_label_given_by_an_alias_or_in_another_case_becomes_the_declared_label(project, tmp_path, monkeypatch):
    source = TeacherSource(base="teacher", count=2, budget_usd=10.0)
    task = own_data_task(
        "classification", source, "{text}", params={"labels": ["spam", "ham"], "aliases": {"junk": "spam"}}
    )
    rows = [{"text": "Win a prize now", "label": "JUNK"}, {"text": "Lunch at noon?", "label": "Ham"}]
    with FakeOpenAI(lambda body: json.dumps({"rows": rows})) as server:
        monkeypatch.setenv("TEACHER_BASE_URL", server.base_url)
        monkeypatch.setenv("TEACHER_KEY", "k")
        result = generate_rows(project, task, source, [], tmp_path, lambda line: None)
        user = json.loads(server.chat_requests()[0]["body"])["messages"][-1]["content"]

    assert 'exactly one of "spam", "ham"' in user
    assert [row["label"] for row in result.rows] == ["spam", "ham"]


def test_a_task_defined_in_yaml_gets_its_dataset_from_the_teacher_through_the_dataset_asset(fake, config_dir, tmp_path):
    """The dataset asset of a task whose source is a teacher: rows generated, validated and split, the teacher's
    usage and cost in the manifest; materialized again with the same cache, it pays nothing."""
    import dagster as dg

    from ftassets.artifacts import ArtifactStore, read_manifest
    from ftassets.definitions import build_definitions
    from ftassets.defs.observe import observe_configuration

    edit_yaml(config_dir / "models.yaml", lambda d: d["bases"].update({"teacher": teacher_base()}))
    task = {
        "type": "classification",
        "labels": ["positive", "negative", "neutral"],
        "source": {"teacher": {"base": "teacher", "count": 30, "budget_usd": 50.0, "rows_per_request": 6}},
    }
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"].update({"distilled": task}))
    home = tmp_path / "home"
    defs = build_definitions(config_dir, home)
    with dg.instance_for_test() as instance:
        observe_configuration(instance, load_project_config(config_dir))
        job = defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey("dataset")])
        manifests, requests = [], []
        for _ in range(2):
            result = job.execute_in_process(
                partition_key="distilled",
                instance=instance,
                asset_selection=[dg.AssetKey("dataset")],
                raise_on_error=False,
            )
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            manifests.append(read_manifest(ArtifactStore(home).path("dataset", "distilled")))
            requests.append(len(fake.chat_requests()))
    first, again = manifests
    paid = requests[0]
    assert sum(first["counts"].values()) == 30 and first["labels"] == ["positive", "negative", "neutral"]
    assert first["teacher"]["usage"]["cost_usd"] > 0 and first["teacher"]["stopped_because"] == "count reached"
    assert len(fake.chat_requests()) == paid and again["teacher"]["usage"]["cost_usd"] == 0, "served from the cache"
    assert again["teacher"]["usage"]["cached_requests"] == first["teacher"]["usage"]["requests"]
