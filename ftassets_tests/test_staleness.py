"""Dagster sees the configuration: a YAML edit marks stale, in Dagster's own stale status, exactly the partitions
whose result it changes; the nightly refresh asks for exactly those; partitions where an asset does not apply
read as settled, not missing. Each test works on a copy of the e2e world's instance and configs."""

import datetime
import shutil

import dagster as dg
import pytest
from helpers import edit_yaml, snapshot_dagster_home

from ftassets import plan
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.observe import config_key, observe_configuration
from ftassets.defs.partitions import cell_key
from ftassets.defs.staleness import Staleness

pytestmark = pytest.mark.e2e
TASK = "classification"
DEFAULT = ("tiny-lora", "tiny-qlora", "tiny-dora", "tiny-full")


@pytest.fixture
def copy(world, tmp_path):
    """The world's Dagster instance copied, with its configs, for a test to edit (artifacts stay the world's)."""
    snapshot_dagster_home(world["dagster_home"], tmp_path / "dagster_home")
    shutil.copytree(world["project"].config_dir, tmp_path / "configs")
    instance = dg.DagsterInstance.from_config(str(tmp_path / "dagster_home"))
    yield dict(
        config_dir=tmp_path / "configs",
        instance=instance,
        home=world["home"],
        models=list(world["project"].experiments.experiments["methods"].models),
    )
    instance.dispose()


def statuses(copy) -> dict[tuple[str, str], str | None]:
    """Dagster's verdict on every materialized partition of the world's lineage (None: fresh)."""
    project = load_project_config(copy["config_dir"])
    observe_configuration(copy["instance"], project)
    staleness = Staleness(copy["instance"], build_definitions(copy["config_dir"], copy["home"]).resolve_asset_graph())
    found = {("dataset", TASK): staleness.why("dataset", TASK)}
    for model in copy["models"]:
        found[("base_model", model)] = staleness.why("base_model", model)
        for asset, step in plan.cell_plan(project, TASK, model).items():
            if asset in plan.CELL_ASSETS and step.applies:
                found[(asset, model)] = staleness.why(asset, cell_key(TASK, model))
    return found


def test_the_world_is_fresh_in_dagster_before_any_edit(copy):
    assert {key: why for key, why in statuses(copy).items() if why} == {}


def test_a_recipe_change_stales_exactly_its_entries_training_lineage(copy):
    edit_yaml(copy["config_dir"] / "experiments.yaml", lambda d: d["recipes"]["lora"].update(learning_rate=0.0042))
    stale = {key: why for key, why in statuses(copy).items() if why}
    expected = {(asset, "tiny-lora") for asset in ("adapter", "merged_model", "gguf_export", "evaluation")}
    assert set(stale) == expected, stale
    assert all("new dependency data version" in why and "config/" in why for why in stale.values()), stale
    observation = copy["instance"].fetch_observations(
        dg.AssetRecordsFilter(asset_key=config_key("adapter"), asset_partitions=[str(cell_key(TASK, "tiny-lora"))]),
        limit=1,
    )
    assert observation.records[0].asset_observation.metadata["parameters"].value["learning_rate"] == 0.0042


def test_a_task_change_stales_that_tasks_whole_lineage_and_no_base(copy):
    edit_yaml(copy["config_dir"] / "tasks.yaml", lambda d: d["tasks"][TASK]["sizes"].update(train=301))
    found = statuses(copy)
    stale = {key for key, why in found.items() if why}
    assert stale == {key for key in found if key[0] != "base_model"}, found


def test_an_unchanged_configuration_observed_again_records_nothing_new(copy):
    project = load_project_config(copy["config_dir"])
    observe_configuration(copy["instance"], project)
    before = copy["instance"].get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_OBSERVATION), limit=1)
    assert observe_configuration(copy["instance"], project) == {}
    after = copy["instance"].get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.ASSET_OBSERVATION), limit=1)
    assert before[0].storage_id == after[0].storage_id


def test_cells_where_an_asset_does_not_apply_read_as_not_applicable_with_the_reason(copy):
    project = load_project_config(copy["config_dir"])
    observe_configuration(copy["instance"], project)
    instance = copy["instance"]
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("adapter"), asset_partitions=[str(cell_key("qa", "gpt-5"))]),
        limit=1,
    ).records[0]
    metadata = record.asset_materialization.metadata
    assert metadata["applicable"].value is False and "no recipe" in metadata["reason"].value
    materialized = {str(key) for key in instance.get_materialized_partitions(dg.AssetKey("adapter"))}
    never_trainable = {
        str(cell_key(t, m)) for t in project.tasks for m in project.models if project.recipe_of(m) is None
    }
    assert never_trainable <= materialized, "API entries' adapters never read as missing work"


def test_the_nightly_refresh_asks_for_exactly_what_dagster_reports_stale(copy, monkeypatch):
    from dagster._core.definitions.events import AssetKeyPartitionKey

    import ftassets.defs.schedules as schedules

    edit_yaml(copy["config_dir"] / "experiments.yaml", lambda d: d["recipes"]["lora"].update(learning_rate=0.0042))
    monkeypatch.setenv("FTASSETS_CONFIG_DIR", str(copy["config_dir"]))
    monkeypatch.setattr(schedules, "utc_now", lambda: datetime.datetime(2026, 12, 4, 2, 30, tzinfo=datetime.UTC))
    defs = build_definitions(copy["config_dir"], copy["home"])
    sensor = defs.resolve_sensor_def("nightly_stale_refresh")
    with dg.build_sensor_context(instance=copy["instance"], definitions=defs, resources=defs.resources) as context:
        result = sensor.evaluate_tick(context)
    assert result.cursor == "2026-12-04" and len(result.run_requests) == 1
    requested = set(result.run_requests[0].asset_graph_subset.iterate_asset_partitions())
    cell = cell_key(TASK, "tiny-lora")
    expected = {
        AssetKeyPartitionKey(dg.AssetKey(a), cell) for a in ("adapter", "merged_model", "gguf_export", "evaluation")
    }
    expected |= {
        AssetKeyPartitionKey(dg.AssetKey("comparison"), TASK),
        AssetKeyPartitionKey(dg.AssetKey("leaderboard")),
    }
    expected |= {AssetKeyPartitionKey(dg.AssetKey("forgetting"), "tiny-lora")}
    assert requested == expected, requested
    with dg.build_sensor_context(
        instance=copy["instance"], definitions=defs, cursor="2026-12-04", resources=defs.resources
    ) as context:
        assert not sensor.evaluate_tick(context).run_requests, "once a night"
