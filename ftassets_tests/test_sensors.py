"""The new-data and models-config sensors, ticked against a real Dagster instance (no daemon needed)."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ftassets import plan
from ftassets.config import load_project_config
from ftassets.data.incoming import accepted_rows, incoming_root
from ftassets.definitions import build_definitions
from ftassets.defs.partitions import MODEL_PARTITIONS, cell_key, sync_model_partitions

REPO = Path(__file__).resolve().parents[1]
CELL_ASSETS = {"tokenized_splits", "adapter", "merged_model", "evaluation"}


def cell_assets(defs: dg.Definitions) -> set[str]:
    """Every task x model asset (others may join the four of the spine, e.g. an export between merge and evaluation)."""
    return {
        s.key.to_user_string()
        for s in defs.resolve_all_asset_specs()
        if isinstance(s.partitions_def, dg.MultiPartitionsDefinition) and s.group_name != "configuration"
    }


@pytest.fixture
def project_dir(tmp_path) -> Path:
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def tick(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None = None):
    """One tick as the daemon evaluates it (``evaluate_tick`` also validates backfill requests against the
    sensor's asset selection, which calling the sensor function directly skips)."""
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, definitions=defs, cursor=cursor, sensor_name=name, resources=defs.resources
    ) as context:
        result = sensor.evaluate_tick(context)
    return result, result.cursor or cursor


def requested(result) -> dict[str, set]:
    """Asset -> requested partition keys (None for unpartitioned) of the one backfill a tick asked for."""
    (request,) = result.run_requests
    subset = request.asset_graph_subset
    assert subset is not None, "the lineage is requested as one asset backfill"
    by_asset: dict[str, set] = {}
    for asset_partition in subset.iterate_asset_partitions():
        by_asset.setdefault(asset_partition.asset_key.to_user_string(), set()).add(asset_partition.partition_key)
    return by_asset


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


GOOD_ROWS = [
    {"text": "The blender arrived broken and support never answered.", "label": "negative"},
    {"text": "Battery lasts two days and the screen is sharp.", "label": "positive"},
]


def test_a_dropped_file_requests_exactly_its_tasks_lineage_once_and_a_bad_file_is_moved_aside(project_dir, instance):
    config_dir = project_dir / "configs"
    project = load_project_config(config_dir)
    defs = build_definitions(config_dir, project_dir / "home")
    drop = incoming_root(project) / "classification"
    assert drop == project_dir / "incoming" / "classification"
    before = plan.dataset_step(project, "classification").fingerprint
    write_jsonl(drop / "good.jsonl", GOOD_ROWS)
    write_jsonl(
        drop / "bad.jsonl", [GOOD_ROWS[0], "{not json", {"text": "no label here"}, {"text": "x", "label": "maybe"}]
    )
    write_jsonl(project_dir / "incoming" / "translation" / "rows.jsonl", GOOD_ROWS)
    sync_model_partitions(instance, project.models)
    evaluated = ["tiny-lora", "tiny-ia3"]
    for model in evaluated:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("evaluation", partition=cell_key("classification", model))
        )
    instance.report_runless_asset_event(dg.AssetMaterialization("evaluation", partition=cell_key("qa", "tiny-full")))

    result, cursor = tick(defs, "incoming_data_sensor", instance)

    partitions = requested(result)
    models = evaluated
    assert partitions.pop("dataset") == {"classification"}
    assert CELL_ASSETS <= cell_assets(defs)
    for asset in cell_assets(defs):
        assert partitions.pop(asset) == {cell_key("classification", m) for m in models}, asset
    assert partitions.pop("comparison") == {"classification"}
    assert partitions.pop("leaderboard") == {None}
    assert not partitions, f"nothing else is requested (no other task, no base_model, no forgetting): {partitions}"

    assert not list(drop.glob("*.jsonl")), "every dropped file was handled"
    (accepted,) = (drop / "accepted").glob("*.jsonl")
    assert accepted.name.endswith("-good.jsonl") and accepted.read_text() == "".join(
        json.dumps(r) + "\n" for r in GOOD_ROWS
    )
    (rejected,) = (drop / "rejected").glob("*-bad.jsonl")
    assert rejected.read_text().count("\n") == 4, "a rejected file is kept untouched"
    reason = rejected.with_name(rejected.name + ".reason.txt").read_text()
    assert (
        "line 2: not valid JSON" in reason
        and "line 3: field 'label'" in reason
        and "line 4: label 'maybe' is not one of the task's labels" in reason
    ), reason
    assert "nothing from it entered the dataset" in reason
    unknown_reason = next((project_dir / "incoming" / "translation" / "rejected").glob("*.reason.txt")).read_text()
    assert "folder 'translation' is not a task" in unknown_reason

    assert accepted_rows(project, "classification") == GOOD_ROWS
    assert plan.dataset_step(project, "classification").fingerprint != before, "new data, new dataset version"

    again, cursor = tick(defs, "incoming_data_sensor", instance, cursor)
    assert not again.run_requests, "each file triggers once"
    write_jsonl(drop / "good-again.jsonl", GOOD_ROWS)
    duplicate, _ = tick(defs, "incoming_data_sensor", instance, cursor)
    assert not duplicate.run_requests
    assert "already accepted" in next((drop / "rejected").glob("*-good-again.jsonl.reason.txt")).read_text()


def test_the_dataset_asset_adds_accepted_rows_to_train_and_keeps_test_frozen(project_dir):
    config_dir = project_dir / "configs"
    project = load_project_config(config_dir)
    drop = incoming_root(project) / "classification" / "accepted"
    write_jsonl(drop / "20260101T000000-abcd-new.jsonl", GOOD_ROWS)
    home = project_dir / "home"
    defs = build_definitions(config_dir, home)
    result = defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey("dataset")]).execute_in_process(
        partition_key="classification",
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey("dataset")],
    )
    assert result.success
    metadata = result.asset_materializations_for_node("dataset")[0].metadata
    sizes = project.tasks["classification"].config.sizes
    assert metadata["incoming_rows_added"].value == 2 and metadata["train_rows"].value == sizes.train + 2
    assert metadata["test_rows"].value == sizes.test
    train = (home / "artifacts" / "dataset" / "classification" / "train.jsonl").read_text()
    assert GOOD_ROWS[0]["text"] in train
    manifest = json.loads((home / "artifacts" / "dataset" / "classification" / "manifest.json").read_text())
    assert manifest["fingerprint"] == plan.dataset_step(project, "classification").fingerprint


def test_a_new_models_yaml_entry_gets_its_partitions_and_lineage_without_a_code_change(project_dir, instance):
    config_dir = project_dir / "configs"
    defs = build_definitions(config_dir, project_dir / "home")
    project = load_project_config(config_dir)

    baseline, cursor = tick(defs, "models_config_sensor", instance)
    assert not baseline.run_requests, "turning the sensor on trains nothing"
    assert instance.get_dynamic_partitions(MODEL_PARTITIONS) == list(project.models)

    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["models"]["tiny-lora-wide"] = {
        "base": "tiny",
        "recipe": "lora",
        "description": "added while the sensor runs",
    }
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    result, cursor = tick(defs, "models_config_sensor", instance, cursor)

    assert "tiny-lora-wide" in instance.get_dynamic_partitions(MODEL_PARTITIONS)
    partitions = requested(result)
    assert partitions.pop("base_model") == {"tiny-lora-wide"}
    tasks = project.default_selection()[0]
    for asset in cell_assets(defs):
        assert partitions.pop(asset) == {cell_key(t, "tiny-lora-wide") for t in tasks}, asset
    assert partitions.pop("comparison") == set(tasks)
    assert partitions.pop("leaderboard") == {None}
    assert not partitions, partitions

    quiet, cursor = tick(defs, "models_config_sensor", instance, cursor)
    assert not quiet.run_requests
    del models["models"]["tiny-lora-wide"]
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    tick(defs, "models_config_sensor", instance, cursor)
    assert "tiny-lora-wide" not in instance.get_dynamic_partitions(MODEL_PARTITIONS), (
        "a removed entry's partition goes too"
    )


def test_a_new_entry_joins_the_tasks_already_compared(project_dir, instance):
    config_dir = project_dir / "configs"
    defs = build_definitions(config_dir, project_dir / "home")
    instance.report_runless_asset_event(dg.AssetMaterialization("comparison", partition="qa"))
    _, cursor = tick(defs, "models_config_sensor", instance)
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["models"]["tiny-full-2"] = {"base": "tiny", "recipe": "full"}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    result, _ = tick(defs, "models_config_sensor", instance, cursor)
    assert requested(result)["comparison"] == {"qa"}


def test_new_data_for_a_task_never_evaluated_requests_the_default_experiments_entries(
    project_dir, instance, monkeypatch
):
    from ftassets.azure.settings import required_variables

    config_dir = project_dir / "configs"
    project = load_project_config(config_dir)
    defaults = project.default_selection()[1]
    for model in defaults:
        for variable in required_variables(project, project.base_of(model)):
            monkeypatch.delenv(variable, raising=False)
    defs = build_definitions(config_dir, project_dir / "home")
    write_jsonl(incoming_root(project) / "classification" / "rows.jsonl", GOOD_ROWS)
    result, _ = tick(defs, "incoming_data_sensor", instance)
    local = [m for m in defaults if not required_variables(project, project.base_of(m))]
    assert local and requested(result)["evaluation"] == {cell_key("classification", m) for m in local}, (
        "API entries without credentials are left out, as in `ftassets run`"
    )


def test_files_the_drop_folder_never_reads_are_logged_once_each_and_a_withdrawn_file_dropped_again_triggers(
    project_dir, instance, capfd
):
    """A ``*.json`` or ``*.csv`` in a task folder and a file directly in ``incoming/`` are named with what to do on
    the first tick and not again (the cursor keeps them while they are there); an accepted file withdrawn and
    dropped again is new data."""
    from ftassets.cli import main

    config_dir = project_dir / "configs"
    defs = build_definitions(config_dir, project_dir / "home")
    root = incoming_root(load_project_config(config_dir))
    write_jsonl(root / "classification" / "good.jsonl", GOOD_ROWS)
    for stray in ("classification/rows.json", "classification/rows.csv", "rows.jsonl"):
        (root / stray).write_text("{}\n")
    sync_model_partitions(instance, load_project_config(config_dir).models)

    first, cursor = tick(defs, "incoming_data_sensor", instance)
    logged = [line for line in capfd.readouterr().err.splitlines() if ": ignored: " in line]
    assert len(logged) == 3 and first.run_requests, logged
    assert any("rows.json: ignored: only *.jsonl files are read" in line for line in logged), logged
    assert any(f"rows.jsonl: ignored: a file directly in {root} is never read" in line for line in logged), logged
    second, cursor = tick(defs, "incoming_data_sensor", instance, cursor)
    assert not second.run_requests and ": ignored: " not in capfd.readouterr().err

    assert main(["incoming", "withdraw", "classification", "good.jsonl", "--config-dir", str(config_dir)]) == 0
    write_jsonl(root / "classification" / "good.jsonl", GOOD_ROWS)
    third, _ = tick(defs, "incoming_data_sensor", instance, cursor)
    assert requested(third)["dataset"] == {"classification"}, "the same rows back after a withdrawal are new data"
