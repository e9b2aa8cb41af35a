"""``ftassets serve``: one cell of the world behind an OpenAI-compatible API, driven with the ``openai`` SDK.

The served artifact is resolved through the lineage (the latest materialization, checked current); a greedy answer
to a test prompt is the one the evaluation recorded for that variant; bad requests get a clear 4xx; a full queue
answers 429."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dagster as dg
import openai
import pandas as pd
import pytest
from helpers import wait_until_served

from ftassets.artifacts import ArtifactStore
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.runner import PipelineRunner
from ftassets.serving.resolve import NotServable, load_engine, resolve_variant
from ftassets.serving.server import BackgroundServer, Limits, create_app
from ftassets.training.tokenize import prompt_messages

REPO = Path(__file__).resolve().parents[1]
TASK = "classification"
pytestmark = pytest.mark.e2e


def _runner(world) -> PipelineRunner:
    return PipelineRunner(world["defs"], world["project"], ArtifactStore(world["home"]), world["instance"], log=print)


def _recorded(world, model: str, variant: str, count: int = 3) -> list[dict]:
    """The first ``count`` test prompts of the cell's evaluation with the conversation and the answer it recorded."""
    directory = ArtifactStore(world["home"]).path("evaluation", model, TASK)
    predictions = pd.read_parquet(directory / "predictions.parquet")
    rows = predictions[predictions.variant == variant].head(count)
    system = world["project"].tasks[TASK].config.system_prompt
    return [
        {"messages": prompt_messages({"prompt": r.prompt}, system), "answer": r.prediction} for r in rows.itertuples()
    ]


def _client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def finetuned(world):
    """The world's tiny-lora fine-tune on classification, served in this process."""
    served = resolve_variant(_runner(world), TASK, "tiny-lora", "finetuned")
    engine = load_engine(_runner(world), served, device="cpu")
    yield served, engine
    engine.close()


def test_the_fine_tune_is_resolved_through_its_latest_materialization_and_answers_as_evaluated(world, finetuned):
    served, engine = finetuned
    record = (
        world["instance"]
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("merged_model"), asset_partitions=["tiny-lora|classification"]),
            limit=1,
        )
        .records[0]
    )
    assert served.asset == "merged_model" and served.stale is None
    assert served.data_version == record.asset_materialization.tags["dagster/data_version"]
    max_new_tokens = world["project"].tasks[TASK].max_new_tokens
    with BackgroundServer(create_app(engine, served.data_version)) as server:
        client = _client(server)
        assert [m.id for m in client.models.list().data] == ["tiny-lora/classification/finetuned"]
        for example in _recorded(world, "tiny-lora", "finetuned"):
            answer = client.chat.completions.create(
                model=served.served_name, messages=example["messages"], max_tokens=max_new_tokens
            )
            assert answer.choices[0].message.content.strip() == example["answer"].strip()
            assert answer.system_fingerprint == served.data_version
            assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
            assert answer.choices[0].finish_reason in ("stop", "length")
            stream = client.chat.completions.create(
                model=served.served_name,
                messages=example["messages"],
                max_tokens=max_new_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert streamed == answer.choices[0].message.content
            assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
        health = json.load(urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/health"))
        assert health["status"] == "ok" and health["data_version"] == served.data_version


def test_bad_requests_get_a_4xx_that_says_what_is_wrong(finetuned):
    served, engine = finetuned
    with BackgroundServer(create_app(engine, served.data_version, Limits(max_tokens=64, max_body_bytes=20_000))) as s:
        client = _client(s)
        name = served.served_name
        hello = [{"role": "user", "content": "hello"}]
        refusals = {
            "unknown model": (lambda: client.chat.completions.create(model="gpt-5", messages=hello), 404, "serves"),
            "max_tokens over the limit": (
                lambda: client.chat.completions.create(model=name, messages=hello, max_tokens=10_000),
                400,
                "at most 64",
            ),
            "prompt over the context": (
                lambda: client.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": "good " * 3000}], max_tokens=8
                ),
                400,
                "served context",
            ),
            "no messages": (lambda: client.chat.completions.create(model=name, messages=[]), 400, "messages"),
            "unknown role": (
                lambda: client.chat.completions.create(model=name, messages=[{"role": "robot", "content": "hi"}]),
                400,
                "role",
            ),
            "temperature out of range": (
                lambda: client.chat.completions.create(model=name, messages=hello, temperature=7),
                400,
                "temperature",
            ),
            "two choices": (lambda: client.chat.completions.create(model=name, messages=hello, n=2), 400, "n: "),
            "oversized body": (
                lambda: client.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": "x" * 50_000}]
                ),
                413,
                "at most 20000",
            ),
        }
        for case, (call, status, words) in refusals.items():
            with pytest.raises(openai.APIStatusError) as refused:
                call()
            assert refused.value.status_code == status, case
            assert words in refused.value.message, (case, refused.value.message)
        raw = urllib.request.Request(
            s.base_url + "/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(raw)
        assert refused.value.code == 400 and "not valid JSON" in json.load(refused.value)["error"]["message"]
        # The server still answers after all that.
        assert client.chat.completions.create(model=name, messages=hello, max_tokens=4).choices[0].message is not None


class _Gated:
    """The engine, holding each generation until the test opens the gate."""

    def __init__(self, engine) -> None:
        self.engine, self.gate, self.started = engine, threading.Event(), threading.Event()
        self.name, self.context_length = engine.name, engine.context_length

    def prompt_tokens(self, messages):
        return self.engine.prompt_tokens(messages)

    def check_fits(self, messages, max_tokens):
        return self.engine.check_fits(messages, max_tokens)

    def stream(self, messages, sampling, completion):
        self.started.set()
        assert self.gate.wait(60)
        yield from self.engine.stream(messages, sampling, completion)


def test_a_full_queue_is_refused_with_429_and_the_queued_requests_are_answered(finetuned):
    served, engine = finetuned
    gated = _Gated(engine)
    with BackgroundServer(create_app(gated, served.data_version, Limits(queue=1))) as server:
        client = _client(server)
        hello = [{"role": "user", "content": "hello"}]
        answers = []

        def ask():
            answers.append(client.chat.completions.create(model=served.served_name, messages=hello, max_tokens=4))

        running = threading.Thread(target=ask)
        running.start()
        assert gated.started.wait(60)
        waiting = threading.Thread(target=ask)
        waiting.start()
        deadline = time.monotonic() + 30
        while server.server.config.app.state.admission.admitted < 2:
            assert time.monotonic() < deadline, "the second request never reached the queue"
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=served.served_name, messages=hello, max_tokens=4)
        assert refused.value.response.headers["retry-after"] == "1" and "busy" in refused.value.message
        gated.gate.set()
        running.join(60)
        waiting.join(60)
        assert len(answers) == 2


def test_a_variant_that_cannot_be_served_says_why_and_what_to_run(world, tmp_path):
    from helpers import copy_world, edit_yaml

    runner = _runner(world)
    with pytest.raises(NotServable, match="models.yaml defines: .*tiny-lora"):
        resolve_variant(runner, TASK, "tiny-nope", "finetuned")
    with pytest.raises(NotServable, match="no GGUF export .*virtual tokens"):
        resolve_variant(runner, TASK, "tiny-prefix", "gguf-q8_0")
    with pytest.raises(NotServable, match="its variants: gguf-"):
        resolve_variant(runner, TASK, "tiny-lora", "gguf-q2_k")
    with pytest.raises(NotServable, match="unknown variant"):
        resolve_variant(runner, TASK, "tiny-lora", "quantized")

    # A recipe edit makes the cell stale: serve refuses and names the command, unless told to serve it anyway.
    dagster_home, home = copy_world(world, tmp_path)
    config_dir = tmp_path / "configs"
    shutil.copytree(world["project"].config_dir, config_dir)
    edit_yaml(config_dir / "experiments.yaml", lambda data: data["recipes"]["lora"].update(learning_rate=1.0e-3))
    project = load_project_config(config_dir)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    from ftassets.defs.observe import observe_configuration

    observe_configuration(instance, project)
    stale_runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance)
    with pytest.raises(NotServable, match="not current .*ftassets run --tasks classification --models tiny-lora"):
        resolve_variant(stale_runner, TASK, "tiny-lora", "finetuned")
    served = resolve_variant(stale_runner, TASK, "tiny-lora", "finetuned", allow_stale=True)
    assert served.stale and served.data_version
    instance.dispose()


def test_ftassets_serve_serves_a_gguf_variant_on_the_command_line(world):
    """The user's path: `ftassets serve tiny-lora --task classification --variant gguf-q8_0`, then the SDK."""
    from ftassets.backends.llama_cpp_server import free_port

    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(world["dagster_home"]),
        "FTASSETS_HOME": str(world["home"]),
        "FTASSETS_CONFIG_DIR": str(world["project"].config_dir),
    }
    command = [sys.executable, "-m", "ftassets", "serve", "tiny-lora", "--task", TASK, "--variant", "gguf-q8_0"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = json.loads(wait_until_served(process, base + "/health", "ftassets serve"))
        assert health["model"] == "tiny-lora/classification/gguf-q8_0"
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
        max_new_tokens = world["project"].tasks[TASK].max_new_tokens
        for example in _recorded(world, "tiny-lora", "gguf-q8_0"):
            answer = client.chat.completions.create(
                model=health["model"], messages=example["messages"], max_tokens=max_new_tokens
            )
            assert answer.choices[0].message.content.strip() == example["answer"].strip()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "serving tiny-lora/classification/gguf-q8_0" in output and "gguf_export" in output, output
