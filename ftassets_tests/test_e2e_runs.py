"""End to end, in the shared world's instance: runs that change it or start processes (a failed training, the
Dagster CLI, an entry without a recipe, a killed and resumed training). Those that add entries or damage files
work on a copy of the world (``helpers.copy_world``), which the other worker's runs cannot change under them.
A module of their own so that pytest-xdist's loadscope runs them beside test_e2e.py, on the other worker."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.partitions import cell_key, sync_model_partitions
from ftassets.runner import PipelineRunner, root_cause_message

REPO = Path(__file__).resolve().parents[1]
HOOKS = Path(__file__).resolve().parent / "hooks"
pytestmark = pytest.mark.e2e


def test_a_failed_training_run_leaves_the_previous_adapter_intact(world):
    store = ArtifactStore(world["home"])
    adapter_dir = store.path("adapter", "tiny-lora", "classification")
    before = read_manifest(adapter_dir)
    result = (
        world["defs"]
        .resolve_implicit_job_def_def_for_assets([dg.AssetKey("adapter")])
        .execute_in_process(
            partition_key=cell_key("classification", "tiny-lora"),
            instance=world["instance"],
            asset_selection=[dg.AssetKey("adapter")],
            run_config={"ops": {"adapter": {"config": {"learning_rate": 1e30, "max_steps": 5}}}},
            raise_on_error=False,
        )
    )
    assert not result.success
    messages = " ".join(root_cause_message(e.step_failure_data.error) for e in result.get_step_failure_events())
    assert "nan" in messages.lower() or "inf" in messages.lower() or "diverged" in messages.lower(), messages
    assert read_manifest(adapter_dir) == before
    assert not [p for p in adapter_dir.parent.iterdir() if p.name.startswith(".")], "no staging directory left behind"


def test_dagster_cli_materializes_one_partition(world):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(world["dagster_home"]),
        "FTASSETS_HOME": str(world["home"]),
        "FTASSETS_CONFIG_DIR": str(world["project"].config_dir),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "ftassets.definitions",
            "--select",
            "dataset",
            "--partition",
            "qa",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert read_manifest(ArtifactStore(world["home"]).path("dataset", "qa"))["counts"]["test"] > 0
    instance = dg.DagsterInstance.from_config(str(world["dagster_home"]))
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("dataset"), asset_partitions=["qa"]), limit=1
    )
    assert records.records, "the CLI run is recorded in the persistent instance"


def test_an_entry_without_recipe_is_evaluated_as_base_only_and_leaves_the_comparison_once_removed(world, tmp_path):
    """On a copy of the world: an entry without a recipe is evaluated as its base only and joins the comparison;
    removed from models.yaml, it makes the comparison rebuild once (the entry list is its configuration), without
    it, and the run after that finds everything current."""
    import yaml
    from helpers import copy_world

    dagster_home, home = copy_world(world, tmp_path)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    config_dir = tmp_path / "configs"
    shutil.copytree(world["project"].config_dir, config_dir)
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["models"]["tiny-base"] = {"base": "tiny"}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))

    def runner(config_dir: Path, lines: list[str]) -> PipelineRunner:
        project, defs = load_project_config(config_dir), build_definitions(config_dir, home)
        return PipelineRunner(defs, project, ArtifactStore(home), instance, log=lines.append)

    added = []
    report = runner(config_dir, added).run(["classification"], ["tiny-base"])
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    table = report.comparisons["classification"].set_index(["model", "variant"])
    assert ("tiny-base", "finetuned") not in table.index or table.loc[("tiny-base", "finetuned")]["status"] == "missing"
    assert table.loc[("tiny-base", "base")]["accuracy"] == table.loc[("tiny-lora", "base")]["accuracy"]
    adapter = (
        instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("adapter"), asset_partitions=[cell_key("classification", "tiny-base")]
            ),
            limit=1,
        )
        .records[0]
        .asset_materialization
    )
    assert adapter.metadata["applicable"].value is False and "no recipe" in adapter.metadata["reason"].value
    assert not ArtifactStore(home).path("adapter", "tiny-base", "classification").exists(), "no placeholder files"

    removed = []
    report = runner(world["project"].config_dir, removed).run(["classification"], ["tiny-lora"], forgetting=False)
    assert [(o.assets, o.partition) for o in report.ran] == [
        (("comparison",), "classification"),
        (("leaderboard",), "all"),
    ]
    assert "config/comparison" in report.ran[0].reason, removed
    assert "tiny-base" not in set(report.comparisons["classification"].model)
    again = runner(world["project"].config_dir, []).run(["classification"], ["tiny-lora"], forgetting=False)
    assert not again.ran, [(o.assets, o.partition, o.reason) for o in again.ran]
    instance.dispose()


def test_a_killed_training_run_resumes_from_its_last_checkpoint(world, tmp_path):
    """A `dagster asset materialize` of an adapter SIGKILLed right after its step-30 checkpoint is saved (by the
    ``hooks/sitecustomize.py`` callback); materializing again resumes from that checkpoint and ends with the loss
    of an uninterrupted run. On a copy of the world: its new entry would otherwise be pruned from the world's
    ``models`` partitions by any ``ftassets run`` the other worker makes meanwhile."""
    import json
    import signal

    import yaml
    from helpers import copy_world

    from ftassets.defs.assets.adapter import AdapterConfig, resolve_recipe
    from ftassets.training.tokenize import load_tokenized
    from ftassets.training.trainer import train

    config_dir = tmp_path / "configs"
    shutil.copytree(world["project"].config_dir, config_dir)
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["models"]["tiny-resume"] = {"base": "tiny", "recipe": "lora"}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    project = load_project_config(config_dir)
    dagster_home, home = copy_world(world, tmp_path / "world")
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    sync_model_partitions(instance, project.models)  # what `ftassets sync` does before a CLI materialization
    defs = build_definitions(config_dir, home)
    for asset, partition in (
        ("base_model", "tiny-resume"),
        ("tokenized_splits", cell_key("classification", "tiny-resume")),
    ):
        defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey(asset)]).execute_in_process(
            partition_key=partition, instance=instance, asset_selection=[dg.AssetKey(asset)]
        )

    overrides = {"max_steps": 60, "save_steps": 10, "eval_steps": 20, "logging_steps": 10}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "ftassets.definitions",
        "--select",
        "adapter",
        "--partition",
        cell_key("classification", "tiny-resume"),
        "--config-json",
        json.dumps({"ops": {"adapter": {"config": overrides}}}),
    ]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FTASSETS_HOME": str(home),
        "FTASSETS_CONFIG_DIR": str(config_dir),
        "OMP_NUM_THREADS": "1",
    }
    store = ArtifactStore(home)
    checkpoints = store.work_path("adapter", "tiny-resume", "classification")
    adapter_dir = store.path("adapter", "tiny-resume", "classification")

    killed_at_step_30 = {**env, "PYTHONPATH": str(HOOKS), "FTASSETS_TEST_KILL_AFTER_SAVE_STEP": "30"}
    first = subprocess.run(
        command, cwd=REPO, env=killed_at_step_30, capture_output=True, text=True, start_new_session=True, timeout=600
    )
    assert first.returncode == -signal.SIGKILL, f"not killed: exit status {first.returncode}\n{first.stderr[-3000:]}"
    assert read_manifest(adapter_dir) is None, "a killed run materializes nothing"
    saved = sorted(int(path.name.rsplit("-", 1)[1]) for path in checkpoints.glob("checkpoint-*"))
    assert saved and saved[-1] == 30, saved
    # The killed run still holds its gpu pool slot; `ftassets recover` (also run by `ftassets run`) frees it.
    recover = subprocess.run(
        [sys.executable, "-m", "ftassets", "recover"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert recover.returncode == 0 and "1 orphaned run(s) released" in recover.stdout, recover.stdout + recover.stderr

    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed_from = [
        int(line.rsplit("checkpoint-", 1)[1].split()[0].rstrip("'\""))
        for line in second.stderr.splitlines()
        if "resuming from" in line
    ]
    assert resumed_from and set(resumed_from) == {30}, second.stderr[-3000:]
    resumed = read_manifest(adapter_dir)["training"]
    assert resumed["steps"] == 60

    recipe = resolve_recipe(project, "tiny-resume", AdapterConfig(**overrides))
    splits = load_tokenized(store.path("tokenized_splits", "tiny-resume", "classification"))
    uninterrupted = train(
        store.path("base_model", "tiny"),
        splits,
        recipe,
        tmp_path / "adapter",
        tmp_path / "checkpoints",
        device="cpu",
        log=lambda message: None,
    )
    assert resumed["final_train_loss"] == pytest.approx(uninterrupted.final_train_loss, abs=1e-3)
    assert resumed["final_val_loss"] == pytest.approx(uninterrupted.final_val_loss, abs=1e-3)
    instance.dispose()


def test_a_deleted_or_truncated_file_of_a_cell_rebuilds_exactly_that_artifact(world, tmp_path):
    """On a copy of the world: a merged model's weights deleted and a q8_0 GGUF truncated to 60 % are noticed
    against their manifests by the next ftassets run, which rebuilds those two artifacts and nothing else."""
    from helpers import copy_world

    dagster_home, home = copy_world(world, tmp_path)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    store = ArtifactStore(home)
    weights = store.path("merged_model", "tiny-lora", "classification") / "model.safetensors"
    weights.unlink()
    [gguf] = store.path("gguf_export", "tiny-full", "classification").glob("*q8_0*.gguf")
    content = gguf.read_bytes()
    gguf.write_bytes(content[: len(content) * 6 // 10])

    project = load_project_config(world["project"].config_dir)
    runner = PipelineRunner(build_definitions(world["project"].config_dir, home), project, store, instance, log=print)
    report = runner.run(["classification"], ["tiny-lora", "tiny-full"], forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    ran = {(o.assets[0], o.partition): o.reason for o in report.ran}
    assert set(ran) == {
        ("merged_model", str(cell_key("classification", "tiny-lora"))),
        ("gguf_export", str(cell_key("classification", "tiny-full"))),
    }, ran
    assert "model.safetensors missing" in ran[("merged_model", str(cell_key("classification", "tiny-lora")))]
    assert gguf.name in ran[("gguf_export", str(cell_key("classification", "tiny-full")))]
    assert weights.exists() and gguf.stat().st_size == len(content)
    assert not runner.run(["classification"], ["tiny-lora", "tiny-full"], forgetting=False).ran
    instance.dispose()
