"""Failures stay failed and damage is detected: a build whose blocking check fails is kept aside, never promoted
or recorded, and fails again on the next run until its input changes; an artifact whose files no longer match
its manifest is rebuilt."""

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from helpers import REPO, edit_yaml

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.partitions import cell_key
from ftassets.runner import PipelineRunner

TASK = "classification"


@pytest.fixture
def project(tmp_path, tiny_base_dir):
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    tasks = yaml.safe_load((REPO / "configs" / "tasks.yaml").read_text())["tasks"]
    task = {
        **tasks[TASK],
        "sizes": {"train": 60, "validation": 12, "test": 24},
        "checks": {"max_label_share_deviation": 0.5},
    }
    (config_dir / "tasks.yaml").write_text(yaml.safe_dump({"tasks": {TASK: task}}))
    (config_dir / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "bases": {"tiny": {"source": "huggingface", "id": str(tiny_base_dir)}},
                "models": {"tiny-lora": {"base": "tiny", "recipe": "lora"}},
            }
        )
    )
    (config_dir / "experiments.yaml").write_text(
        yaml.safe_dump(
            {
                "recipes": {"lora": {"method": "lora", "max_seq_length": 128}},
                "experiments": {"default": {"tasks": [TASK], "models": ["tiny-lora"]}},
            }
        )
    )
    with dg.instance_for_test() as instance:
        yield dict(config_dir=config_dir, home=tmp_path / "home", instance=instance)


def runner(project) -> PipelineRunner:
    config = load_project_config(project["config_dir"])
    defs = build_definitions(project["config_dir"], project["home"])
    run = PipelineRunner(defs, config, ArtifactStore(project["home"]), project["instance"], log=lambda line: None)
    from ftassets.defs.observe import observe_configuration

    observe_configuration(project["instance"], config)
    return run


def latest_version(instance, asset: str, partition) -> str | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)]), limit=1
    ).records
    return records[0].asset_materialization.tags["dagster/data_version"] if records else None


def test_a_dataset_failing_its_blocking_check_is_kept_aside_and_fails_again_until_its_input_changes(project):
    assert runner(project).materialize("dataset", TASK).status == "ran"
    store = ArtifactStore(project["home"])
    good = read_manifest(store.path("dataset", TASK))["fingerprint"]
    edit_yaml(
        project["config_dir"] / "tasks.yaml",
        lambda d: d["tasks"][TASK].update(seed=7, checks={"max_label_share_deviation": 0.001}),
    )
    for attempt in range(2):
        outcome = runner(project).materialize("dataset", TASK)
        assert outcome.status == "failed" and "label_balance" in outcome.error, (attempt, outcome)
        assert "kept for inspection at" in outcome.error and "previous dataset stays in place" in outcome.error
        assert read_manifest(store.path("dataset", TASK))["fingerprint"] == good, "the last good dataset stays"
        assert latest_version(project["instance"], "dataset", TASK) == good, "nothing recorded as current"
    rejected = list((project["home"] / "rejected" / "dataset" / TASK).iterdir())
    assert rejected and (rejected[0] / "train.jsonl").exists(), "what failed is there to inspect"
    edit_yaml(
        project["config_dir"] / "tasks.yaml",
        lambda d: d["tasks"][TASK].update(checks={"max_label_share_deviation": 0.5}),
    )
    assert runner(project).materialize("dataset", TASK).status == "ran", "a fixed input builds again"


def test_tokenized_splits_that_mask_every_label_fail_again_and_leave_the_previous_splits(project):
    cell = cell_key(TASK, "tiny-lora")
    first = runner(project)
    assert first.materialize("dataset", TASK).status == first.materialize("base_model", "tiny-lora").status == "ran"
    assert first.materialize("tokenized_splits", cell).status == "ran"
    store = ArtifactStore(project["home"])
    good = read_manifest(store.path("tokenized_splits", "tiny-lora", TASK))["fingerprint"]
    edit_yaml(project["config_dir"] / "experiments.yaml", lambda d: d["recipes"]["lora"].update(max_seq_length=1))
    for attempt in range(2):
        outcome = runner(project).materialize("tokenized_splits", cell)
        assert outcome.status == "failed" and "no_fully_masked_examples" in outcome.error, (attempt, outcome)
        assert read_manifest(store.path("tokenized_splits", "tiny-lora", TASK))["fingerprint"] == good
        assert latest_version(project["instance"], "tokenized_splits", cell) == good


@pytest.mark.parametrize("damage", ["delete", "truncate", "change"])
def test_a_damaged_artifact_file_is_noticed_and_rebuilt(project, damage):
    assert runner(project).materialize("dataset", TASK).status == "ran"
    again = runner(project)
    assert again.needs("dataset", TASK) is None
    path = ArtifactStore(project["home"]).path("dataset", TASK) / "test.jsonl"
    content = path.read_bytes()
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(content[: len(content) * 6 // 10])
    else:
        path.write_bytes(content.replace(b"a", b"e", 1))
    why = again.needs("dataset", TASK)
    assert why and "test.jsonl" in why, why
    assert again.materialize("dataset", TASK).status == "ran"
    assert path.read_bytes() == content and again.needs("dataset", TASK) is None


def own_data_task(project) -> Path:
    """Task ``mine``: a two-label classification over ``configs/data/rows.jsonl``, 40 rows; returns the data folder."""
    data = project["config_dir"] / "data"
    data.mkdir()
    rows = [{"text": f"item {i} {'alpha' if i % 2 else 'beta'}", "label": "a" if i % 2 else "b"} for i in range(40)]
    (data / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = {"type": "classification", "source": {"path": "data/rows.jsonl", "format": "jsonl"}}
    edit_yaml(project["config_dir"] / "tasks.yaml", lambda d: d["tasks"].update(mine=task))
    return data


BAD_FILES = {
    "not JSON": ('{"text": "fine", "label": "a"}\n{"text": "broken"\n', "line 2"),
    "empty field": ('{"text": "fine", "label": "a"}\n{"text": "  ", "label": "b"}\n', "line 2"),
    "missing column": ('{"text": "fine", "label": "a"}\n{"label": "b"}\n', "line 2"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_data_file_is_refused_naming_file_and_line_and_the_previous_dataset_stays(project, case):
    """A task over the user's JSONL: a good file builds; the same file made bad is refused by the dataset asset with
    the file and line named, and the last good dataset stays in place and current in Dagster."""
    data = own_data_task(project)
    assert runner(project).materialize("dataset", "mine").status == "ran"
    store = ArtifactStore(project["home"])
    good = read_manifest(store.path("dataset", "mine"))["fingerprint"]
    content, where = BAD_FILES[case]
    (data / "rows.jsonl").write_text(content)
    outcome = runner(project).materialize("dataset", "mine")
    assert outcome.status == "failed" and "rows.jsonl" in outcome.error and where in outcome.error, outcome.error
    assert read_manifest(store.path("dataset", "mine"))["fingerprint"] == good
    assert latest_version(project["instance"], "dataset", "mine") == good


def test_the_incoming_drop_folder_feeds_a_task_with_its_own_data(project):
    """A JSONL dropped in incoming/<task>/ for a task over the user's file is accepted and joins its train split."""
    from ftassets.data.incoming import incoming_root, ingest

    own_data_task(project)
    config = load_project_config(project["config_dir"])
    drop = incoming_root(config) / "mine"
    drop.mkdir(parents=True)
    (drop / "more.jsonl").write_text(json.dumps({"text": "a brand new alpha row", "label": "a"}) + "\n")
    assert [(o.task, o.accepted) for o in ingest(config)] == [("mine", True)]
    assert runner(project).materialize("dataset", "mine").status == "ran"
    train = (ArtifactStore(project["home"]).path("dataset", "mine") / "train.jsonl").read_text()
    assert "a brand new alpha row" in train


def test_ftassets_validate_reports_each_sources_counts_labels_and_problems(project, capsys, monkeypatch):
    from ftassets.cli import main

    data = own_data_task(project)
    monkeypatch.setenv("FTASSETS_CONFIG_DIR", str(project["config_dir"]))
    assert main(["validate"]) == 0
    printed = capsys.readouterr().out
    assert "mine: fields rows from data/rows.jsonl" in printed and "labels ['a', 'b']" in printed, printed
    assert "train 32" in printed and "test 4" in printed, printed
    (data / "rows.jsonl").write_text('{"text": "fine", "label": "a"}\n{"text": "broken"\n')
    assert main(["validate"]) == 1
    printed = capsys.readouterr().out
    assert "mine: INVALID" in printed and "rows.jsonl:line 2" in printed, printed
