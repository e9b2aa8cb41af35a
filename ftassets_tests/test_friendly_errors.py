"""Errors a user causes by input end in one message naming the file, field, partition or endpoint and what to do;
the traceback stays in the Dagster run log (and on the console with ``--verbose``)."""

import logging
import os
import shutil
import socket
import subprocess
import sys

import pytest
from helpers import copy_project, edit_yaml

from ftassets.backends.factory import api_backend
from ftassets.backends.openai_compatible import BackendError
from ftassets.config.schemas import HuggingFaceBase, OpenAICompatibleBase
from ftassets.endpoints import openai_compatible_target
from ftassets.models.bases import BaseModelError, prepare_base

TASK = "classification"
TRACEBACKS = ("Traceback", "Stack Trace", 'File "')


@pytest.fixture
def truncated_base(tiny_base_dir, tmp_path):
    """A copy of the tiny base whose model.safetensors lost its second half (an interrupted download)."""
    folder = tmp_path / "truncated_base"
    shutil.copytree(tiny_base_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def test_a_truncated_safetensors_names_the_base_the_folder_and_the_file(truncated_base, tmp_path):
    base = HuggingFaceBase(source="huggingface", id=str(truncated_base))
    with pytest.raises(BaseModelError) as raised:
        prepare_base("local-llama", base, tmp_path / "out", lambda _: None)
    message = str(raised.value)
    assert "'local-llama'" in message and "bases.local-llama.id" in message, message
    assert f"model.safetensors in {truncated_base}" in message and "download it again" in message, message


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_endpoint_fails_at_once_naming_entry_endpoint_and_variable(caplog):
    """Connection refused: no retries with backoff by the openai client (only httpx's quick connection retries),
    and the queued requests fail with the first one instead of each trying again."""
    config = OpenAICompatibleBase(source="openai_compatible", base_url_env="VLLM_BASE_URL", model="qwen")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    backend = api_backend(openai_compatible_target("local-vllm", config, {"VLLM_BASE_URL": url}), "local-vllm")
    with caplog.at_level(logging.INFO, logger="openai"), pytest.raises(BackendError) as raised:
        backend.generate([[{"role": "user", "content": "hi"}]] * 20, max_new_tokens=4)
    message = str(raised.value)
    assert message.startswith(f"model backend 'local-vllm' (model 'qwen' at {url}/): cannot connect to ")
    assert "Connection refused; 3 attempts, connect timeout 10 s)" in message, message
    assert "$VLLM_BASE_URL (configs/models.yaml bases.local-vllm.base_url_env), then run again" in message
    assert not [r for r in caplog.records if r.getMessage().startswith("Retrying request")]


def test_ftassets_run_reports_a_corrupt_base_and_a_dead_endpoint_in_one_line_each(truncated_base, tmp_path):
    """The real command: each failed step is one line naming the entry and what to do; no stack trace on the
    terminal without --verbose; the other steps still run."""
    config_dir, home, dagster_home = copy_project(tmp_path)
    bases = {
        "local-llama": {"source": "huggingface", "id": str(truncated_base)},
        "local-vllm": {"source": "openai_compatible", "base_url_env": "VLLM_BASE_URL", "model": "qwen"},
    }
    models = {"llama-lora": {"base": "local-llama", "recipe": "lora"}, "vllm": {"base": "local-vllm"}}
    edit_yaml(config_dir / "models.yaml", lambda d: d.update(bases=bases, models=models))
    edit_yaml(config_dir / "tasks.yaml", lambda d: d.update(tasks={TASK: d["tasks"][TASK]}))
    edit_yaml(
        config_dir / "experiments.yaml",
        lambda d: d.update(experiments={"default": {"tasks": [TASK], "models": list(models)}}),
    )
    env = {
        **os.environ,
        "FTASSETS_CONFIG_DIR": str(config_dir),
        "FTASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "FTASSETS_MLFLOW": "0",
        "VLLM_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
    }
    command = [sys.executable, "-m", "ftassets", "run", "--tasks", TASK, "--models", "llama-lora", "vllm"]
    run = subprocess.run([*command, "--no-forgetting"], cwd=tmp_path, env=env, capture_output=True, text=True)
    printed = run.stdout + run.stderr
    assert run.returncode == 1, printed
    assert not any(trace in printed for trace in TRACEBACKS), printed
    failed = [line for line in run.stdout.splitlines() if line.startswith("  FAILED ")]
    assert len(failed) == 2, printed
    assert "base_model [llama-lora]" in failed[0] and f"model.safetensors in {truncated_base}" in failed[0]
    assert "evaluation [vllm|classification]" in failed[1] and "Connection refused" in failed[1]
    assert "$VLLM_BASE_URL" in failed[1] and "done     comparison [classification]" in run.stdout


def test_a_swapped_cell_key_in_dagster_asset_materialize_says_the_right_order(tmp_path):
    """Dagster refuses the key before any asset runs; the code location turns its stack trace into one line."""
    config_dir, home, dagster_home = copy_project(tmp_path)
    env = {**os.environ, "FTASSETS_CONFIG_DIR": str(config_dir), "FTASSETS_HOME": str(home)}
    command = ["dagster", "asset", "materialize", "-m", "ftassets.definitions", "--select", "adapter"]
    run = subprocess.run(
        [sys.executable, "-m", *command, "--partition", f"{TASK}|tiny-lora"],
        cwd=tmp_path,
        env={**env, "DAGSTER_HOME": str(dagster_home)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and not any(trace in run.stderr for trace in TRACEBACKS), run.stderr
    assert run.stderr.rstrip().endswith(
        f"dagster asset materialize: partition '{TASK}|tiny-lora': a (task, model) cell's key is <model>|<task> "
        f"(Dagster orders the dimensions by name), e.g. --partition 'tiny-lora|{TASK}'"
    ), run.stderr


def test_a_selection_naming_an_unknown_task_or_entry_lists_what_the_configuration_defines(tmp_path):
    import dagster as dg

    from ftassets.artifacts import ArtifactStore
    from ftassets.config import ConfigError, load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.runner import PipelineRunner

    config_dir, home, _ = copy_project(tmp_path)
    project = load_project_config(config_dir)
    with dg.instance_for_test() as instance:
        runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance)
        with pytest.raises(ConfigError, match=r"--models: unknown \['tiny-lroa'\]; defined in .*: .*tiny-lora"):
            runner.run([TASK], ["tiny-lroa"])
        with pytest.raises(ConfigError, match=r"--tasks: unknown \['clasification'\]; defined in .*classification"):
            runner.run(["clasification"], ["tiny-lora"])
        assert not (home / "artifacts").exists(), "nothing ran"
