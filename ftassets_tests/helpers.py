"""Plain functions and constants the test modules share (their fixtures are in ``conftest.py``): the tiny base's
spec, a quick LoRA recipe, training on the CPU into one folder, editing a copied config, a small copy of the
shipped project, and a responder for the loopback fakes that answers from the classification test split."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_SPEC = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    pretrain_steps=40,
    pretrain_batch_size=8,
    pretrain_seq_length=64,
    corpus_documents=800,
)


QUICK_PREFIX = {
    "method": "prefix",
    "max_steps": 2,
    "batch_size": 8,
    "learning_rate": 0.2,
    "lr_scheduler": "constant",
    "logging_steps": 1,
    "eval_steps": 2,
    "save_steps": 2,
    "prefix": {"num_virtual_tokens": 4},
}
"""Two steps of prefix tuning, for an end-to-end test that needs a trained cell, not a good one: cheap, and not
mergeable, so the cell has no merge, GGUF export or GGUF rows."""


def benchmark_module(name: str):
    """``benchmarks/<name>.py`` imported as the module ``name`` (registered in ``sys.modules``, as its dataclasses
    need), for tests of a benchmark script's own logic."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def quick_lora_recipe():
    """Six LoRA steps on the color splits, with a checkpoint, a validation pass and a log line every two steps."""
    from ftassets.training.recipes import parse_recipe

    return parse_recipe(
        dict(
            method="lora",
            max_steps=6,
            batch_size=8,
            learning_rate=1e-2,
            logging_steps=2,
            eval_steps=6,
            save_steps=6,
            lr_scheduler="constant",
            lora={"r": 4, "alpha": 8, "dropout": 0.0},
        )
    )


def train_on_cpu(base_dir: Path, splits: dict, recipe, root: Path, log: Callable[[str], None] = lambda message: None):
    """``train`` on the CPU, saving to ``root / "adapter"`` with its checkpoints in ``root / "checkpoints"``."""
    from ftassets.training.trainer import train

    return train(base_dir, splits, recipe, root / "adapter", root / "checkpoints", device="cpu", log=log)


def copy_project(root: Path) -> tuple[Path, Path, Path]:
    """The shipped configs copied to ``root / "configs"`` with a 40/10/20-example classification task (its intervals
    from 50 bootstrap resamples: twenty examples support no finer ones), an empty ``root / "home"`` for artifacts and
    ``root / "dagster_home"`` with the shipped dagster.yaml."""
    config_dir, home, dagster_home = root / "configs", root / "home", root / "dagster_home"
    shutil.copytree(REPO / "configs", config_dir)
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    edit_yaml(
        config_dir / "tasks.yaml",
        lambda d: d["tasks"]["classification"].update(
            sizes={"train": 40, "validation": 10, "test": 20}, checks={"max_label_share_deviation": 0.5}
        ),
    )
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["evaluation"].update(bootstrap_resamples=50))
    return config_dir, home, dagster_home


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    """Apply ``change`` to the YAML file at ``path`` in place, keeping its key order."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def split_oracle(home: Path, is_finetuned: Callable[[str], bool]) -> Callable[[str, list[dict[str, str]]], str]:
    """A fake's responder: models ``is_finetuned`` accepts always give the test split's answer, the others are
    wrong on every 4th example (and on prompts not in the split)."""
    answers: dict[str, tuple[int, str]] = {}

    def respond(model: str, messages: list[dict[str, str]]) -> str:
        if not answers:
            rows = [
                json.loads(line)
                for line in (home / "artifacts/dataset/classification/test.jsonl").read_text().splitlines()
            ]
            answers.update({row["prompt"]: (index, row["answer"]) for index, row in enumerate(rows)})
        index, answer = answers.get(messages[-1]["content"], (0, "unsure"))
        return answer if is_finetuned(model) or index % 4 else "I cannot tell."

    return respond


def snapshot_dagster_home(source, target) -> None:
    """A consistent copy of a Dagster (or ftassets) home that other tests may be writing to: each SQLite database
    through SQLite's backup API (its write-ahead log included), every other file as it is."""
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".db":
            destination.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path) as original, sqlite3.connect(destination) as copied:
                original.backup(copied)
        elif not path.name.endswith(("-wal", "-shm", "-journal")):
            destination.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # a compute log the other worker just removed
                shutil.copy2(path, destination)


def copy_world(world: dict, root: Path) -> tuple[Path, Path]:
    """A copy of the e2e world (its Dagster home and its ftassets home, some 70 MB) that a test may change without
    touching the world the other tests read. Returns (dagster_home, ftassets_home)."""
    dagster_home, home = root / "dagster_home", root / "ftassets_home"
    snapshot_dagster_home(world["dagster_home"], dagster_home)
    snapshot_dagster_home(world["home"], home)
    _end_runs_copied_mid_flight(dagster_home)
    return dagster_home, home


def _end_runs_copied_mid_flight(dagster_home: Path) -> None:
    """A run the other worker had in flight when the world was copied is, in the copy, a run that will never end:
    its process is alive (that worker), so ``release_orphaned_runs`` keeps it, and it holds the ``gpu`` pool slot
    that every training step in the copy would wait for forever. Mark such runs failed and free their slots."""
    import dagster as dg

    from ftassets.runner import end_run

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        in_flight = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
        for record in instance.get_run_records(dg.RunsFilter(statuses=in_flight)):
            end_run(instance, record.dagster_run, "in flight in the world when it was copied")


def wait_until_served(process, url: str, what: str, timeout_s: float = 120) -> bytes:
    """The body of ``url`` once the server ``process`` (a ``subprocess.Popen`` with stdout piped) answers it; fails
    with the process's output if it exits first, or naming ``what`` after ``timeout_s``."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return urllib.request.urlopen(url).read()
        except OSError:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, f"{what} did not answer {url} within {timeout_s:.0f} s"
            time.sleep(0.5)
