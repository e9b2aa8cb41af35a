import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from helpers import benchmark_module

from ftassets.definitions import defs
from ftassets.defs.partitions import build_partitions

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"


def _partitions(spec: dg.AssetSpec) -> object:
    pdef = spec.partitions_def
    if pdef is None:
        return None
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return {d.name: _keys(d.partitions_def) for d in pdef.partitions_defs}
    return _keys(pdef)


def _keys(pdef: dg.PartitionsDefinition) -> object:
    """Static keys come from the YAML; the dynamic model dimension lives in the instance (named here)."""
    if isinstance(pdef, dg.DynamicPartitionsDefinition):
        return {"dynamic": pdef.name}
    return sorted(pdef.get_partition_keys())


def spec_snapshot() -> dict:
    snapshot = {}
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        assets_def = defs.resolve_assets_def(spec.key)
        snapshot[spec.key.to_user_string()] = {
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
            "partitions": _partitions(spec),
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "owners": list(spec.owners),
            "code_version": spec.code_version,
            "pool": assets_def.op.pool,
            "checks": sorted(c.name for c in assets_def.check_specs),
            "has_description": bool(spec.description),
        }
    return snapshot


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_matches_snapshot():
    """An accidental change to keys, partitions, deps, pools or checks shows up here (and in review)."""
    current = spec_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), "asset graph changed; rerun with UPDATE_SNAPSHOTS=1 if intended"


LINEAGE = (
    "dataset",
    "base_model",
    "tokenized_splits",
    "adapter",
    "merged_model",
    "gguf_export",
    "evaluation",
    "comparison",
    "leaderboard",
    "forgetting",
)
CONFIGURED = (
    "dataset",
    "base_model",
    "tokenized_splits",
    "adapter",
    "merged_model",
    "gguf_export",
    "evaluation",
    "comparison",
    "forgetting",
)


def test_the_dagster_layer_is_one_module_per_asset_in_lineage_order():
    from ftassets.defs import assets

    assert [module.__name__.rsplit(".", 1)[1] for module in assets.LINEAGE] == list(LINEAGE)
    for module in assets.LINEAGE:
        built = module.build(build_partitions(_project()))
        assert built.key.to_user_string() == module.__name__.rsplit(".", 1)[1]


def _project():
    from ftassets.config import load_project_config

    return load_project_config()


def test_every_configured_asset_depends_on_its_configuration_source_partitioned_like_it():
    graph = defs.resolve_asset_graph()
    for asset in CONFIGURED:
        source, node = graph.get(dg.AssetKey(["config", asset])), graph.get(dg.AssetKey(asset))
        assert source.is_observable and source.group_name == "configuration"
        assert dg.AssetKey(["config", asset]) in node.parent_keys, asset
        assert source.partitions_def == node.partitions_def, asset


def test_keys_and_partitions_are_the_documented_ones():
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs() if s.group_name != "configuration"}
    assert set(specs) == set(LINEAGE)
    for name in ("tokenized_splits", "adapter", "merged_model", "gguf_export", "evaluation"):
        pdef = specs[name].partitions_def
        assert isinstance(pdef, dg.MultiPartitionsDefinition)
        assert sorted(d.name for d in pdef.partitions_defs) == ["model", "task"]
    assert isinstance(specs["dataset"].partitions_def, dg.StaticPartitionsDefinition)
    assert specs["comparison"].partitions_def == specs["dataset"].partitions_def
    assert specs["base_model"].partitions_def == dg.DynamicPartitionsDefinition(name="models"), (
        "models.yaml entries, synced into the instance"
    )
    for name in ("base_model", "adapter", "evaluation"):
        assert defs.resolve_assets_def(name).op.pool == "gpu"


def test_dagster_cli_validates_the_code_location():
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "ftassets.definitions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_loading_the_code_location_imports_no_training_or_metric_library():
    """Every process that loads the definitions pays for their imports: the code server, each run's worker,
    ``dagster asset materialize``, a sensor tick. The training, inference and metric libraries load when a step
    needs them (a task type's score, a trainer), not with the asset graph. The check is benchmarks/load_time.py's
    (its STEP_LIBRARIES, imported in a fresh interpreter)."""
    loaded = benchmark_module("load_time").loaded_with_definitions()
    assert loaded == [], f"imported with the definitions: {loaded}"
