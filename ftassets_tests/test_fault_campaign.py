"""Faults on purpose: 429 storms and 5xx bursts from a loopback API (the real openai SDK), a disk that fills during
an artifact write, runs killed in the middle of a merge, a GGUF export and an evaluation, and a damaged checkpoint
on resume. Each ends either completed (within a stated budget) or with one clear line, never with half an artifact."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.openai_v1 import FakeOpenAI

from ftassets.backends.openai_compatible import BackendError, OpenAICompatibleBackend
from ftassets.config.schemas import EvaluationSettings

ROWS = [{"id": f"t{i}", "prompt": f"text {i}", "answer": "positive", "label": "positive"} for i in range(6)]


@pytest.fixture(scope="module")
def classification():
    from ftassets.config import load_project_config

    return load_project_config().tasks["classification"]


def evaluate_against(fake: FakeOpenAI, task, max_retries: int):
    from ftassets.evaluation.evaluate import evaluate_variant

    backend = OpenAICompatibleBackend.for_base_url(
        fake.base_url, "key", "local", max_retries=max_retries, stream=False, concurrency=2, name="storm-base"
    )
    return evaluate_variant(backend, task, ROWS, "storm-base", "base", EvaluationSettings(bootstrap_resamples=20))


def storm(fake: FakeOpenAI, fault: str, count: int) -> None:
    """``count`` 429s, or ``count`` 503s, each asking the client to wait 10 ms."""
    if fault == "429 storm":
        fake.throttle(count, retry_after_s="0.01")
    else:
        fake.fail(count, status=503, retry_after_s="0.01")


@pytest.mark.parametrize("fault", ["429 storm", "503 burst"])
def test_a_storm_within_the_retry_budget_is_ridden_out_and_its_retries_are_recorded(classification, fault):
    with FakeOpenAI(lambda body: "positive") as fake:
        storm(fake, fault, 5)
        result = evaluate_against(fake, classification, max_retries=4)
        retried = [r for r in fake.chat_requests() if r["headers"].get("x-stainless-retry-count", "0") != "0"]

    row = result.row
    assert row["accuracy"] == 1.0 and row["n"] == len(ROWS)
    assert len(fake.chat_requests()) == len(ROWS) + 5 and row["retries"] == len(retried) == 5
    assert row["retry_wait_s"] == pytest.approx(5 * 0.01)


@pytest.mark.parametrize("fault", ["429 storm", "503 burst"])
def test_a_storm_beyond_the_retry_budget_fails_naming_the_endpoint_and_scores_nothing(classification, fault):
    with FakeOpenAI(lambda body: "positive") as fake:
        storm(fake, fault, 1000)
        with pytest.raises(BackendError) as raised:
            evaluate_against(fake, classification, max_retries=2)
        sent = len(fake.chat_requests())

    message = str(raised.value)
    assert "\n" not in message and fake.base_url in message and fault.split()[0] in message
    assert "still refused after" in message and "raise max_retries" in message
    assert sent <= len(ROWS) * 3, "every request stops at its retry budget of 2"


def test_a_damaged_checkpoint_is_never_resumed(tiny_base_dir, color_splits_dir, tmp_path):
    """The last checkpoint garbled (same size): resumed from the one before, ending where an unbroken run ends;
    every checkpoint truncated: started over, with a log line saying why."""
    from helpers import quick_lora_recipe, train_on_cpu

    from ftassets.training.tokenize import load_tokenized

    splits = load_tokenized(color_splits_dir)
    recipe = quick_lora_recipe().model_copy(update={"max_steps": 4, "save_steps": 2, "eval_steps": 4})
    checkpoints = tmp_path / "checkpoints"
    finished = train_on_cpu(tiny_base_dir, splits, recipe, tmp_path)
    weights = checkpoints / "checkpoint-4" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)
    weights.write_bytes(bytes(data))

    lines: list[str] = []
    resumed = train_on_cpu(tiny_base_dir, splits, recipe, tmp_path, log=lines.append)
    assert any("checkpoint-4: adapter_model.safetensors is damaged" in line for line in lines), lines
    assert any(line.startswith("resuming from") and line.endswith("checkpoint-2") for line in lines)
    assert resumed.steps == 4 and resumed.final_train_loss == pytest.approx(finished.final_train_loss, abs=1e-4)

    for checkpoint in checkpoints.glob("checkpoint-*"):
        with open(checkpoint / "adapter_model.safetensors", "r+b") as handle:
            handle.truncate(100)
    lines.clear()
    restarted = train_on_cpu(tiny_base_dir, splits, recipe, tmp_path, log=lines.append)
    assert sum("is damaged" in line for line in lines) == 2 and not any("resuming" in line for line in lines)
    assert any(line.startswith("starting over from step 0") for line in lines)
    assert restarted.steps == 4 and restarted.final_train_loss == pytest.approx(finished.final_train_loss, abs=1e-4)


# Killed and starved writers: each runs in a child process (the hooks folder on its path) through ``run_child``.

HOOKS = Path(__file__).parent / "hooks"
KILL_AT = "FTASSETS_TEST_KILL_AT"
CELL = ("tiny-lora", "colors")


def run_child(call: str, env: dict[str, str] | None = None, file_size_limit: int | None = None):
    """``call`` (an expression on this module, imported as ``campaign``) in a new session, with ``env`` added and
    files larger than ``file_size_limit`` bytes refused (EFBIG, as on a full disk)."""

    def starve():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return subprocess.run(
        [sys.executable, "-c", f"import test_fault_campaign as campaign; {call}"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HOOKS), str(Path(__file__).parent)]), **(env or {})},
        capture_output=True,
        text=True,
        start_new_session=True,
        preexec_fn=starve if file_size_limit else None,
        timeout=300,
    )


def merge_cell(root: str, adapter_dir: str, base_dir: str, version: str) -> None:
    """What the merged_model asset does: merge into a staging folder, manifest, rename into place."""
    from ftassets.artifacts import ArtifactStore, write_manifest
    from ftassets.training.recipes import parse_recipe
    from ftassets.training.strategies import strategy_for

    store = ArtifactStore(root)
    recipe = parse_recipe(json.loads((Path(adapter_dir) / "recipe.json").read_text()))
    with store.writing(store.path("merged_model", *CELL)) as staging:
        summary = strategy_for(recipe).merge(Path(adapter_dir), Path(base_dir), staging)
        write_manifest(staging, asset="merged_model", fingerprint=version, summary=summary)


@pytest.fixture(scope="module")
def tiny_adapter(tiny_base_dir, color_splits_dir, tmp_path_factory) -> Path:
    """A two-step LoRA adapter of the tiny base."""
    from helpers import quick_lora_recipe, train_on_cpu

    from ftassets.training.tokenize import load_tokenized

    root = tmp_path_factory.mktemp("fault_adapter")
    recipe = quick_lora_recipe().model_copy(update={"max_steps": 2, "save_steps": 2, "eval_steps": 2})
    train_on_cpu(tiny_base_dir, load_tokenized(color_splits_dir), recipe, root)
    return root / "adapter"


def half_written(store, asset: str) -> list[Path]:
    """The files a killed run left in its one staging folder beside the artifact (no manifest among them)."""
    [staging] = store.path(asset, CELL[0]).glob(f".{CELL[1]}.tmp-*")
    files = sorted(staging.iterdir())
    assert "manifest.json" not in [p.name for p in files]
    return files


def assert_intact(store, asset: str, version: str) -> None:
    from ftassets.artifacts import read_manifest

    assert read_manifest(store.path(asset, *CELL))["fingerprint"] == version
    assert store.damage(asset, *CELL) is None


def test_a_merge_killed_before_its_manifest_leaves_the_previous_merge_and_a_rerun_completes(
    tiny_adapter, tiny_base_dir, tmp_path
):
    from ftassets.artifacts import ArtifactStore

    store, args = ArtifactStore(tmp_path), (str(tmp_path), str(tiny_adapter), str(tiny_base_dir))
    merge_cell(*args, version="first")

    killed = run_child(
        f"campaign.merge_cell(*{args!r}, version='second')", {KILL_AT: "ftassets.artifacts:write_manifest"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "model.safetensors" in [p.name for p in half_written(store, "merged_model")]
    assert_intact(store, "merged_model", "first")

    merge_cell(*args, version="third")
    assert_intact(store, "merged_model", "third")


def test_a_disk_full_during_a_merge_is_one_line_and_keeps_the_previous_merge(tiny_adapter, tiny_base_dir, tmp_path):
    from ftassets.artifacts import ArtifactStore

    store, args = ArtifactStore(tmp_path), (str(tmp_path), str(tiny_adapter), str(tiny_base_dir))
    merge_cell(*args, version="first")

    full = run_child(f"campaign.merge_cell(*{args!r}, version='second')", file_size_limit=1 << 20)
    error = full.stderr.strip().splitlines()[-1]
    assert full.returncode == 1 and error.startswith("ftassets.artifacts.DiskFull: "), full.stderr[-2000:]
    assert f"{store.path('merged_model', *CELL)}: no room to write it (File too large)" in error
    assert "previous version is kept" in error and "free space" in error
    assert_intact(store, "merged_model", "first")
    assert not list(store.path("merged_model", CELL[0]).glob(".*")), "the failed write left its staging folder"


GGUF_SETTINGS = dict(quant_types=("f16", "q8_0"), parity_prompts=2, parity_new_tokens=8, threads=1)


def export_cell(root: str, merged_dir: str, version: str) -> None:
    """What the gguf_export asset does: export, parity gate and manifest in a staging folder, renamed into place."""
    from ftassets.artifacts import ArtifactStore, write_manifest
    from ftassets.export.export import ExportSettings, export_gguf
    from ftassets.training.tokenize import chat_messages

    store = ArtifactStore(root)
    conversations = [chat_messages(p, system_prompt="Name the color.") for p in ("color: red", "color: blue")]
    with store.writing(store.path("gguf_export", *CELL)) as staging:
        result = export_gguf(
            Path(merged_dir), staging, "-".join(CELL), conversations, ExportSettings(**GGUF_SETTINGS), print
        )
        write_manifest(staging, asset="gguf_export", fingerprint=version, summary=result.summary)


def test_a_gguf_export_killed_while_quantizing_leaves_the_previous_export_and_a_rerun_completes(
    tiny_base_dir, tmp_path
):
    from ftassets.artifacts import ArtifactStore

    store, args = ArtifactStore(tmp_path), (str(tmp_path), str(tiny_base_dir))
    export_cell(*args, version="first")

    killed = run_child(
        f"campaign.export_cell(*{args!r}, version='second')", {KILL_AT: "ftassets.export.quantize:quantize"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in half_written(store, "gguf_export")] == ["tiny-lora-colors-f16.gguf"]
    assert_intact(store, "gguf_export", "first")

    export_cell(*args, version="third")
    assert_intact(store, "gguf_export", "third")


API_ENTRY = "phi-api"


def evaluate_api_cell(config_dir: str, home: str) -> None:
    """The evaluation asset's work for an API entry (its base's endpoint read from the environment)."""
    from ftassets.artifacts import ArtifactStore
    from ftassets.config import load_project_config
    from ftassets.evaluation.runs import evaluate_cell

    evaluate_cell(load_project_config(Path(config_dir)), ArtifactStore(home), "classification", API_ENTRY, "cpu", print)


def test_an_evaluation_killed_while_writing_leaves_the_previous_one_and_a_rerun_completes(tmp_path, monkeypatch):
    """Killed with its predictions staged: the previous evaluation stays; the rerun reuses the base's scores
    (stored whole before the kill) without asking the endpoint again."""
    from helpers import copy_project, edit_yaml

    from ftassets.artifacts import ArtifactStore, read_manifest, write_manifest
    from ftassets.evaluation.runs import TABLE_FILE

    config_dir, home, _ = copy_project(tmp_path)
    edit_yaml(config_dir / "models.yaml", lambda d: d["models"].update({API_ENTRY: {"base": "phi-4-mini"}}))
    store = ArtifactStore(home)
    with store.writing(store.path("dataset", "classification")) as staging:
        for split in ("train", "validation", "test"):
            (staging / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
        write_manifest(staging, fingerprint="dataset-v1")
    with store.writing(store.path("base_model", "phi-4-mini")) as staging:
        write_manifest(staging, fingerprint="phi-4-mini-v1")

    with FakeOpenAI(lambda body: "positive") as fake:
        endpoint = {"AZURE_AI_PHI4_MINI_ENDPOINT": fake.base_url, "AZURE_AI_PHI4_MINI_KEY": "key"}
        for name, value in endpoint.items():
            monkeypatch.setenv(name, value)
        fake.throttle(2, retry_after_s="0.01")
        evaluate_api_cell(str(config_dir), str(home))
        evaluated = store.path("evaluation", API_ENTRY, "classification")
        first = read_manifest(evaluated)["rows"]
        assert first[0]["retries"] == 2 and first[0]["accuracy"] == 1.0

        # The base's scores are cached by their own key; drop that cache so the killed run asks the endpoint again.
        for cache in (home / "cache" / "base_evaluation").iterdir():
            shutil.rmtree(cache)
        killed = run_child(
            f"campaign.evaluate_api_cell({str(config_dir)!r}, {str(home)!r})",
            {KILL_AT: "ftassets.artifacts:write_manifest", **endpoint},
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        [staging] = evaluated.parent.glob(f".{evaluated.name}.tmp-*")
        assert sorted(p.name for p in staging.iterdir()) == ["predictions.parquet", TABLE_FILE]
        assert (
            read_manifest(evaluated)["rows"] == first
            and store.damage("evaluation", API_ENTRY, "classification") is None
        )

        asked = len(fake.chat_requests())
        evaluate_api_cell(str(config_dir), str(home))
        assert len(fake.chat_requests()) == asked, "the rerun reuses the base's scores the killed run stored"
    rerun = read_manifest(evaluated)["rows"]
    assert rerun[0]["accuracy"] == 1.0 and rerun[0]["retries"] == 0
    assert store.damage("evaluation", API_ENTRY, "classification") is None
