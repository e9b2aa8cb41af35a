"""The GGUF exports of the session's materialized world (every method's entry on classification): each file
loads in llama.cpp and generates, the blocking parity checks passed, entries without mergeable weights
record "not applicable" without files, and the comparison carries the q8_0 and q4_k_m rows."""

from __future__ import annotations

import dagster as dg
import pytest

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.defs.partitions import cell_key
from ftassets.evaluation.gguf_variants import EVALUATED_QUANT_TYPES, variant_name
from ftassets.export.export import CHECKS
from ftassets.export.llama_runtime import load_llama
from ftassets.plan import not_exportable_reason

pytestmark = pytest.mark.e2e
TASK = "classification"


def _models(world, exportable: bool) -> list[str]:
    models = world["project"].experiments.experiments["methods"].models
    return [m for m in models if (not_exportable_reason(world["project"], m) is None) == exportable]


def _latest(world, asset: str, model: str):
    records = (
        world["instance"]
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[cell_key(TASK, model)]), limit=1
        )
        .records
    )
    assert records, f"{asset} was never materialized for {model}"
    return records[0].asset_materialization


def test_every_exported_gguf_loads_in_llama_cpp_and_generates(world):
    store = ArtifactStore(world["home"])
    for model in _models(world, exportable=True):
        directory = store.path("gguf_export", model, TASK)
        files = sorted(directory.glob("*.gguf"))
        assert [f.name.rsplit("-", 1)[-1] for f in files] == ["f16.gguf", "q4_k_m.gguf", "q8_0.gguf"], (model, files)
        for path in files:
            llm = load_llama(path, n_ctx=256, threads=1, logits_all=False)
            try:
                answer = llm.create_chat_completion(
                    [{"role": "user", "content": "Great product, would buy again."}], max_tokens=8, temperature=0
                )
                assert answer["usage"]["completion_tokens"] > 0, path
            finally:
                llm.close()


def test_parity_checks_passed_and_are_recorded_in_dagster(world):
    store = ArtifactStore(world["home"])
    for model in _models(world, exportable=True):
        summary = read_manifest(store.path("gguf_export", model, TASK))["summary"]
        assert summary["checks"] == {name: True for name in CHECKS}, model
        assert summary["parity"]["greedy"]["q8_0"]["agreement"] >= 0.95
        assert set(summary["parity"]["logits"]) == {"f16", "q8_0", "q4_k_m"}
        metadata = _latest(world, "gguf_export", model).metadata
        assert metadata["q8_0_greedy_agreement"].value >= 0.95 and metadata["q4_k_m_size_mb"].value > 0
        for name in CHECKS:
            evaluation = world["instance"].event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(dg.AssetKey("gguf_export"), name)]
            )
            assert evaluation, name
    assert not [o for o in world["first"].failed if "gguf_export" in o.assets]


def test_entries_without_mergeable_weights_record_not_applicable_and_write_no_files(world):
    store = ArtifactStore(world["home"])
    models = [m for m in _models(world, exportable=False)]
    assert {"tiny-prefix", "tiny-ptuning"} <= set(models)
    for model in models:
        metadata = _latest(world, "gguf_export", model).metadata
        assert metadata["applicable"].value is False and "virtual tokens" in metadata["reason"].value
        assert not store.path("gguf_export", model, TASK).exists()


def test_comparison_has_gguf_rows_with_size_latency_and_quality_against_the_merged_model(world):
    comparison = world["defs"].load_asset_value("comparison", partition_key=TASK, instance=world["instance"])
    for model in _models(world, exportable=True):
        rows = comparison[comparison.model == model].set_index("variant")
        for quant_type in EVALUATED_QUANT_TYPES:
            row = rows.loc[variant_name(quant_type)]
            assert row.status == "ok" and row.n == rows.loc["finetuned"].n and row.latency_p50_s > 0
    evaluation = world["defs"].load_asset_value(
        "evaluation", partition_key=cell_key(TASK, "tiny-lora"), instance=world["instance"]
    )
    rows = evaluation.set_index("variant")
    q8, q4, merged = rows.loc["gguf-q8_0"], rows.loc["gguf-q4_k_m"], rows.loc["finetuned"]
    assert q8.file_size_mb > q4.file_size_mb > 0 and q8.merged_size_mb > q8.file_size_mb
    assert q8.delta_vs_merged_accuracy == pytest.approx(q8.accuracy - merged.accuracy)
    assert abs(q8.delta_vs_merged_accuracy) <= 0.05
    assert q8.prompt_tokens == merged.prompt_tokens
