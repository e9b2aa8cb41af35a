"""A fine-tune made worse on emergencies, for real: the safety gate end to end on the embedded model.

First a fully fine-tuned triage model is trained from the user's own triage files (``files:`` one JSONL per split)
through the whole lineage; its merged model then becomes the base of a second project, whose train file sends every
emergency to routine care (the careless labelling the check exists for). The second fine-tune, trained and evaluated
by the real assets on the same correct test file, under-triages more emergencies than its base, so ``no_under_triage``
fails and ``publish_to_model_store`` refuses the cell, naming the check; the first cell publishes.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import dagster as dg
import pytest
from helpers import REPO, edit_yaml

from ftassets.artifacts import ArtifactStore
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.runner import PipelineRunner, root_cause_message
from ftassets.tasks import get_task_type
from ftassets.tasks.medical_triage import ACTIONS, EMERGENCY

pytestmark = pytest.mark.e2e
TASK = "triage"
SIZES = {"train": 240, "validation": 16, "test": 48}
RECIPE = {
    "method": "full",
    "learning_rate": 1.0e-3,  # 2e-3 learned the levels less well on the test's tiny base, 5e-3 not at all
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.1,
    "batch_size": 8,
    "max_seq_length": 256,
}


def triage_rows() -> dict[str, list[dict]]:
    """Generated triage rows cut into splits, no symptom text in two splits."""
    rows, seen = [], set()
    for row in get_task_type("medical_triage").generate(4 * sum(SIZES.values()), random.Random(23), {}):
        if row["symptoms"] not in seen:
            seen.add(row["symptoms"])
            rows.append(row)
    splits, start = {}, 0
    for name, size in SIZES.items():
        splits[name], start = rows[start : start + size], start + size
    assert len(splits["test"]) == SIZES["test"]
    return splits


def careless(row: dict) -> dict:
    """An emergency labelled routine, its advice rewritten to match."""
    if row["label"] != EMERGENCY:
        return row
    return {**row, "label": "routine", "advice": row["advice"].replace(ACTIONS[EMERGENCY], ACTIONS["routine"])}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def project(root: Path, base: dict, model: str, train: list[dict], splits: dict[str, list[dict]], epochs: int) -> Path:
    """The shipped configs with one own-data triage task and one fully fine-tuned entry on ``base``."""
    config_dir = root / "configs"
    shutil.copytree(REPO / "configs", config_dir)
    files = {name: write_jsonl(root / f"{name}.jsonl", train if name == "train" else splits[name]) for name in SIZES}
    edit_yaml(
        config_dir / "tasks.yaml",
        lambda d: d.update(
            tasks={
                TASK: {
                    "type": "medical_triage",
                    "source": {"files": files},
                    "max_new_tokens": 8,  # the level is the answer's first word
                    "checks": {"max_label_share_deviation": None},  # the careless file has no emergency left
                }
            }
        ),
    )
    edit_yaml(
        config_dir / "models.yaml",
        lambda d: d.update(bases={"base": base}, models={model: {"base": "base", "recipe": "triage-full"}}),
    )

    def experiments(d: dict) -> None:
        d["recipes"]["triage-full"] = {**RECIPE, "epochs": epochs}
        d["experiments"] = {"default": {"tasks": [TASK], "models": [model]}}
        d["evaluation"]["bootstrap_resamples"] = 50

    edit_yaml(config_dir / "experiments.yaml", experiments)
    return config_dir


def run(config_dir: Path, home: Path, instance: dg.DagsterInstance, model: str):
    runner = PipelineRunner(
        build_definitions(config_dir, home), load_project_config(config_dir), ArtifactStore(home), instance
    )
    report = runner.run([TASK], [model], forgetting=False)
    assert not report.failed, [(o.assets, o.partition, o.error) for o in report.failed]
    return report.comparisons[TASK].set_index("variant")


def publish(config_dir: Path, home: Path, instance: dg.DagsterInstance, model: str, store: Path):
    from ftassets.defs.publishing import publish_to_model_store
    from ftassets.defs.resources import ArtifactStoreResource, LocalModelStoreResource, ProjectResource

    return publish_to_model_store.execute_in_process(
        run_config={"ops": {"publish_artifact": {"config": {"model": model, "task": TASK}}}},
        resources={
            "project": ProjectResource(config_dir=str(config_dir)),
            "artifacts": ArtifactStoreResource(root=str(home)),
            "model_store": LocalModelStoreResource(root=str(store)),
        },
        instance=instance,
        raise_on_error=False,
    )


def latest_checks(instance: dg.DagsterInstance, model: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION), ascending=True
    )
    checks = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if model in str(evaluation.partition):
            checks[evaluation.check_name] = evaluation
    return checks


def test_a_fine_tune_trained_to_send_emergencies_home_fails_the_safety_gate_and_is_not_published(
    tmp_path, tiny_base_dir
):
    splits = triage_rows()
    store = tmp_path / "store"
    with dg.instance_for_test() as instance:
        careful_dir, careful_home = tmp_path / "careful", tmp_path / "careful" / "home"
        careful_dir.mkdir()
        careful_config = project(
            careful_dir,
            {"source": "huggingface", "id": str(tiny_base_dir)},
            "tiny-triage",
            splits["train"],
            splits,
            epochs=12,
        )
        careful = run(careful_config, careful_home, instance, "tiny-triage")
        assert careful.loc["finetuned", "emergency_recall"] > 0, careful.T
        assert careful.loc["finetuned", "under_triaged_emergencies"] < careful.loc["base", "under_triaged_emergencies"]
        assert latest_checks(instance, "tiny-triage")["no_under_triage"].passed
        assert publish(careful_config, careful_home, instance, "tiny-triage", store).success

        merged = careful_home / "artifacts" / "merged_model" / "tiny-triage" / TASK
        careless_dir, careless_home = tmp_path / "careless", tmp_path / "careless" / "home"
        careless_dir.mkdir()
        train = [careless(row) for row in splits["train"]]
        assert EMERGENCY not in {row["label"] for row in train}
        careless_config = project(
            careless_dir, {"source": "huggingface", "id": str(merged)}, "triage-careless", train, splits, epochs=4
        )
        worse = run(careless_config, careless_home, instance, "triage-careless")
        base_misses = careful.loc["finetuned", "under_triaged_emergencies"]
        assert worse.loc["base", "under_triaged_emergencies"] == base_misses, "its base is the careful fine-tune"
        assert worse.loc["finetuned", "under_triaged_emergencies"] > base_misses, worse.T
        assert worse.loc["finetuned", "emergency_recall"] < worse.loc["base", "emergency_recall"]

        checks = latest_checks(instance, "triage-careless")
        gate = checks["no_under_triage"]
        assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
        assert gate.description.startswith("UNDER-TRIAGE: finetuned"), gate.description
        assert "under-triaged more emergencies than the base (worst: finetuned" in gate.description

        refused = publish(careless_config, careless_home, instance, "triage-careless", store)
        assert not refused.success
        error = root_cause_message(refused.get_step_failure_events()[0].step_failure_data.error)
        assert "refusing to publish adapter/triage-careless/triage" in error
        assert "no_under_triage: UNDER-TRIAGE: finetuned" in error
        assert not (store / "adapter" / "triage-careless").exists()
        assert (store / "adapter" / "tiny-triage" / TASK / "manifest.json").exists(), "the careful cell stays published"
