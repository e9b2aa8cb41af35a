"""Schedules, declarative automation and the regression check, against a real Dagster instance."""

import datetime
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ftassets.artifacts import ArtifactStore
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs import schedules
from ftassets.defs.partitions import cell_key, sync_model_partitions
from ftassets.regression import compare, variant_scores
from ftassets.runner import PipelineRunner

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config_dir(tmp_path) -> Path:
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path / "configs"


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_comparison_and_leaderboard_refresh_after_a_new_evaluation_and_only_then(config_dir, instance):
    defs = build_definitions(config_dir, config_dir.parent / "home")
    sync_model_partitions(instance, ["tiny-lora", "tiny-full"])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0, "nothing is requested on the first evaluation"

    instance.report_runless_asset_event(
        dg.AssetMaterialization("evaluation", partition=cell_key("summarization", "tiny-lora"))
    )
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey("comparison")) == {"summarization"}
    assert second.total_requested == 1, "nothing upstream (no retraining), no other task"

    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.total_requested == 0, "requested once, not on every tick"

    instance.report_runless_asset_event(dg.AssetMaterialization("comparison", partition="summarization"))
    fourth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=third.cursor)
    assert fourth.get_num_requested(dg.AssetKey("leaderboard")) == 1 and fourth.total_requested == 1


def test_the_weekly_schedule_re_evaluates_only_api_baselines_on_compared_tasks(config_dir, instance, monkeypatch):
    def add_api_entries(models):
        models["bases"]["local-server"] = {
            "source": "openai_compatible",
            "base_url_env": "LOCAL_LLM_BASE_URL",
            "model": "qwen",
        }
        models["bases"]["local-server-sft"] = {
            "source": "openai_compatible",
            "base_url_env": "LOCAL_LLM_BASE_URL",
            "model": "qwen-ft",
        }
        models["models"]["local-server"] = {"base": "local-server"}

    edit_yaml(config_dir / "models.yaml", add_api_entries)
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    baselines = [
        name
        for name, entry in models["models"].items()
        if models["bases"][entry["base"]]["source"] in ("azure_openai", "openai_compatible") and not entry.get("recipe")
    ]
    from ftassets.azure.settings import required_variables
    from ftassets.config import load_project_config

    project = load_project_config(config_dir)
    for name in baselines:
        for variable in required_variables(project, project.base_of(name)):
            monkeypatch.setenv(variable, "http://127.0.0.1:9/v1")
    defs = build_definitions(config_dir, config_dir.parent / "home")
    schedule = defs.resolve_schedule_def("weekly_api_baselines")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED, "API calls cost money: opt in"
    instance.report_runless_asset_event(dg.AssetMaterialization("comparison", partition="qa"))
    monday = datetime.datetime(2026, 11, 30, 6, tzinfo=datetime.UTC)
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=monday,
        resources=defs.resources,
        repository_def=defs.get_repository_def(),
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests)
    assert "local-server" in baselines and not any(name.startswith("tiny") for name in baselines)
    assert [r.partition_key for r in requests] == [cell_key("qa", name) for name in baselines]
    assert "2026-11-30:local-server|qa" in {r.run_key for r in requests}, "one run per cell and week"
    assert defs.resolve_job_def(schedule.job_name).asset_layer.executable_asset_keys == {dg.AssetKey("evaluation")}

    monkeypatch.delenv("LOCAL_LLM_BASE_URL")
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=monday,
        resources=defs.resources,
        repository_def=defs.get_repository_def(),
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests)
    assert "local-server" not in {r.partition_key.split("|")[0] for r in requests}, (
        "no run that can only fail on missing credentials"
    )


def test_default_statuses_are_the_documented_ones():
    from ftassets.definitions import defs

    sensors = {s.name: s.default_status for s in defs.sensors}
    assert sensors == {
        "incoming_data_sensor": dg.DefaultSensorStatus.RUNNING,
        "models_config_sensor": dg.DefaultSensorStatus.RUNNING,
        "automation_condition_sensor": dg.DefaultSensorStatus.RUNNING,
        "configuration_sensor": dg.DefaultSensorStatus.RUNNING,
        "nightly_stale_refresh": dg.DefaultSensorStatus.STOPPED,
    }
    assert {s.name: s.default_status for s in defs.schedules} == {
        "weekly_api_baselines": dg.DefaultScheduleStatus.STOPPED,
    }


def evaluate_with_scores(
    config_dir: Path, instance: dg.DagsterInstance, partition: str, finetuned: float
) -> dg.ExecuteInProcessResult:
    """A real run of the real regression check after an ``evaluation`` that reports the given scores (the
    evaluation's own computation is tested elsewhere; here only its metadata matters)."""
    from ftassets.config import load_project_config
    from ftassets.defs.checks import build_checks
    from ftassets.defs.partitions import build_partitions
    from ftassets.defs.resources import ProjectResource

    partitions = build_partitions(load_project_config(config_dir))

    @dg.asset(name="evaluation", partitions_def=partitions.task_model)
    def evaluation_reporting_scores() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"base_accuracy": 0.0, "finetuned_accuracy": finetuned})

    return dg.materialize(
        [evaluation_reporting_scores, *build_checks(partitions)],
        instance=instance,
        partition_key=partition,
        resources={"project": ProjectResource(config_dir=str(config_dir))},
        raise_on_error=False,
    )


def regression_check(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_regression"]
    return evaluation


def test_the_regression_check_fails_with_an_alert_when_the_primary_metric_drops(config_dir, instance):
    edit_yaml(
        config_dir / "experiments.yaml", lambda e: e.setdefault("automation", {}).update(regression_threshold=0.1)
    )
    partition = cell_key("classification", "tiny-lora")
    sync_model_partitions(instance, ["tiny-lora"])

    first = evaluate_with_scores(config_dir, instance, partition, 0.80)
    assert regression_check(first).passed, "a first evaluation has nothing to regress from"
    assert regression_check(evaluate_with_scores(config_dir, instance, partition, 0.75)).passed, "0.05 is within 0.1"
    result = evaluate_with_scores(config_dir, instance, partition, 0.50)
    evaluation = regression_check(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "REGRESSION: accuracy of finetuned dropped by more than 0.1" in evaluation.description
    assert evaluation.metadata["drops"].value == {"finetuned": pytest.approx(0.25)}
    alerts = [
        e.message for e in instance.all_logs(result.run_id) if e.level >= 40 and "REGRESSION" in (e.message or "")
    ]
    assert alerts and partition in alerts[0], "the run logs the alert at ERROR level"


def test_compare_reads_each_variant_of_the_primary_metric():
    metadata = {
        "base_accuracy": 0.1,
        "finetuned_accuracy": 0.8,
        "finetuned_macro_f1": 0.7,
        "predictions": "/x",
        "applicable": True,
    }
    assert variant_scores(metadata, "accuracy") == {"base": 0.1, "finetuned": 0.8}
    verdict = compare({"base": 0.5, "finetuned": 0.8}, {"base": 0.2, "finetuned": 0.8}, "accuracy", 0.05)
    assert not verdict.passed and set(verdict.drops) == {"base"}, (
        "a provider-side change of a baseline is a regression too"
    )
    assert compare({"finetuned": 0.8}, {"gguf": 0.1}, "accuracy", 0.05).passed, "nothing in common, nothing to compare"
    assert compare(None, {"finetuned": 0.8}, "accuracy", 0.05).passed


@pytest.mark.e2e
def test_the_nightly_refresh_rebuilds_only_what_the_configuration_made_stale(
    tmp_path, tiny_base_dir, instance, monkeypatch
):
    """The nightly refresh sensor, ticked for real after a real run of a base-only entry: nothing while everything
    is current, then exactly the lineage a task edit made stale in Dagster (the base stays)."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    tasks = yaml.safe_load((REPO / "configs" / "tasks.yaml").read_text())["tasks"]
    task = {
        **tasks["classification"],
        "sizes": {"train": 60, "validation": 12, "test": 24},
        "checks": {"max_label_share_deviation": 0.5},
    }
    (config_dir / "tasks.yaml").write_text(yaml.safe_dump({"tasks": {"classification": task}}))
    (config_dir / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "bases": {"tiny": {"source": "huggingface", "id": str(tiny_base_dir)}},
                "models": {"tiny-base": {"base": "tiny"}},
            }
        )
    )
    (config_dir / "experiments.yaml").write_text(
        yaml.safe_dump(
            {
                "recipes": {"full": {"method": "full"}},
                "experiments": {"default": {"tasks": ["classification"], "models": ["tiny-base"]}},
                "evaluation": {"bootstrap_resamples": 50},
            }
        )
    )
    defs = build_definitions(config_dir, tmp_path / "home")
    monkeypatch.setenv("FTASSETS_CONFIG_DIR", str(config_dir))
    project = load_project_config(config_dir)
    runner = PipelineRunner(defs, project, ArtifactStore(tmp_path / "home"), instance, log=lambda line: None)
    assert not runner.run(["classification"], ["tiny-base"]).failed
    checked = instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION))
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in checked]
    regression = [e for e in evaluations if e.check_name == "no_regression"]
    assert [(e.partition, e.passed) for e in regression] == [(str(cell_key("classification", "tiny-base")), True)], (
        "every evaluation run also runs the regression check"
    )

    def refresh(night: int) -> set[str]:
        at = datetime.datetime(2026, 12, night, 2, 5, tzinfo=datetime.UTC)
        monkeypatch.setattr(schedules, "utc_now", lambda: at)
        sensor = defs.resolve_sensor_def("nightly_stale_refresh")
        with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as context:
            result = sensor.evaluate_tick(context)
        return {
            key.asset_key.to_user_string()
            for request in result.run_requests
            for key in request.asset_graph_subset.iterate_asset_partitions()
        }

    assert refresh(1) == set(), "everything is current: nothing is rebuilt"
    edit_yaml(config_dir / "tasks.yaml", lambda t: t["tasks"]["classification"].update(seed=99))
    rebuilt = refresh(2)
    assert {"dataset", "evaluation", "comparison", "leaderboard"} <= rebuilt and "base_model" not in rebuilt, rebuilt
