"""End to end: the real assets on the embedded model, in a temporary Dagster instance."""

from pathlib import Path

import dagster as dg
import pytest

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.defs.partitions import cell_key

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e
METHODS = {
    "tiny-lora": "lora",
    "tiny-qlora": "qlora",
    "tiny-dora": "dora",
    "tiny-full": "full",
    "tiny-ia3": "ia3",
    "tiny-prefix": "prefix",
    "tiny-ptuning": "ptuning",
    "tiny-dpo": "dpo",
}


def test_the_methods_experiment_has_one_shipped_entry_per_method(world):
    assert list(world["project"].experiments.experiments["methods"].models) == list(METHODS)


def test_full_lineage_materializes_and_fine_tuning_beats_base(world):
    report = world["first"]
    assert not report.failed, [(o.assets, o.partition, o.error) for o in report.failed]
    ran = {(asset, str(o.partition)) for o in report.ran for asset in o.assets}
    assert ("dataset", "classification") in ran and ("base_model", "tiny-lora") in ran
    assert ("adapter", "tiny-lora|classification") in ran and ("adapter", "tiny-full|classification") in ran
    assert ("comparison", "classification") in ran

    table = world["defs"].load_asset_value("comparison", partition_key="classification", instance=world["instance"])
    print(table.to_string())
    rows = table.set_index(["model", "variant"])
    assert rows.loc[("tiny-full", "finetuned")]["accuracy"] >= 0.80, table.to_string()
    for model in METHODS:
        base, tuned = rows.loc[(model, "base")], rows.loc[(model, "finetuned")]
        assert tuned["accuracy"] > base["accuracy"] and tuned["macro_f1"] > base["macro_f1"], model
        assert tuned["delta_accuracy"] == pytest.approx(tuned["accuracy"] - base["accuracy"])
    assert rows.loc[("tiny-lora", "base")]["accuracy"] == rows.loc[("tiny-full", "base")]["accuracy"], "one shared base"
    assert {"latency_p50_s", "latency_p95_s", "generated_tokens_per_s"} <= set(table.columns)
    evaluated = table[table.status == "ok"]
    for metric in ("accuracy", "macro_f1"):
        assert (evaluated[f"{metric}_ci_low"] <= evaluated[metric] + 1e-9).all() and (
            evaluated[metric] <= evaluated[f"{metric}_ci_high"] + 1e-9
        ).all()
    assert (evaluated.latency_p50_s <= evaluated.latency_p95_s).all() and (
        evaluated.latency_p95_s <= evaluated.latency_p99_s
    ).all()
    assert (evaluated.cost_per_1k_usd > 0).all() and set(evaluated.device) == {"cpu"}
    tuned = evaluated[evaluated.variant == "finetuned"].set_index("model")
    assert tuned.loc["tiny-full", "significant"] == True and tuned.loc["tiny-full", "delta_ci_low"] > 0  # noqa: E712
    assert tuned.significant.notna().all() and tuned.mcnemar_p.notna().all()


def test_leaderboard_ranks_every_evaluated_entry(world):
    board = world["defs"].load_asset_value("leaderboard", instance=world["instance"]).set_index("model")
    assert set(METHODS) <= set(board.index) and (board.tasks >= 1).all()
    best = board.classification.idxmax()
    assert board.loc[best, "average_rank"] == 1.0 and board.average_rank.is_monotonic_increasing


def test_comparison_report_is_self_contained_html_with_figures(world):
    directory = ArtifactStore(world["home"]).path("comparison", "classification")
    page = (directory / "report.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("src='data:image/png;base64,") == 3
    assert "Worst examples of each fine-tuned model" in page and "tiny-dpo" in page
    assert "http://" not in page and "https://" not in page, "nothing to fetch: it opens offline"
    report = (directory / "report.md").read_text()
    assert "accuracy_ci_low" in report and "cost_per_1k_usd" in report and "significant" in report
    assert sorted(p.name for p in (directory / "figures").iterdir()) == [
        "accuracy.png",
        "latency.png",
        "quality_vs_cost.png",
    ]


def test_comparison_report_and_figures_are_logged_to_mlflow(world):
    from mlflow import MlflowClient

    from ftassets.tracking import default_tracking_uri

    record = (
        world["instance"]
        .fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("comparison"), asset_partitions=["classification"]), limit=1
        )
        .records[0]
        .asset_materialization
    )
    client = MlflowClient(default_tracking_uri(world["home"]))
    run = client.get_run(record.metadata["mlflow_run_id"].value)
    assert run.info.status == "FINISHED" and run.data.tags["dagster.partition"] == "classification"
    assert run.data.metrics["accuracy/tiny-full/finetuned"] >= 0.8
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")} | {
        a.path for a in client.list_artifacts(run.info.run_id, "report/figures")
    }
    assert {
        "report/report.html",
        "report/report.md",
        "report/figures/accuracy.png",
        "report/figures/quality_vs_cost.png",
    } <= logged


def test_evaluation_loads_from_the_instance_with_predictions_beside_it(world):
    key = cell_key("classification", "tiny-lora")
    evaluation = world["defs"].load_asset_value("evaluation", partition_key=key, instance=world["instance"])
    assert list(evaluation.variant) == ["base", "finetuned", "gguf-q8_0", "gguf-q4_k_m"]
    predictions = world["home"] / "artifacts" / "evaluation" / "tiny-lora" / "classification" / "predictions.parquet"
    import pandas as pd

    frame = pd.read_parquet(predictions)
    assert len(frame) == len(evaluation) * world["project"].tasks["classification"].config.sizes.test
    assert list(frame.variant.unique()) == list(evaluation.variant)
    assert {"prompt", "reference", "prediction", "parsed", "correct", "latency_s"} <= set(frame.columns)


def test_every_artifact_has_a_manifest_with_its_fingerprint(world):
    store = ArtifactStore(world["home"])
    for parts in (
        ("dataset", "classification"),
        ("base_model", "tiny"),
        ("tokenized_splits", "tiny-lora", "classification"),
        ("adapter", "tiny-lora", "classification"),
        ("merged_model", "tiny-lora", "classification"),
    ):
        manifest = read_manifest(store.path(*parts))
        assert manifest and manifest["fingerprint"] and manifest["files"] and "torch" in manifest["libraries"], parts
    merged = store.path("merged_model", "tiny-lora", "classification")
    assert (merged / "tokenizer.json").exists() and (merged / "config.json").exists()


def test_ptuning_trains_on_its_own_base_and_learns_to_answer_with_a_label(world):
    """tiny-ptuning sits on `tiny-words` (the embedded model pre-trained on a corpus that uses the label words);
    its comparison rows are against that base, and its virtual tokens turn free-form text into labels."""
    assert world["project"].base_of("tiny-ptuning") == "tiny-words"
    training = read_manifest(ArtifactStore(world["home"]).path("adapter", "tiny-ptuning", "classification"))["training"]
    assert training["final_val_loss"] < training["val_loss"][0][1] - 0.3
    table = world["defs"].load_asset_value("comparison", partition_key="classification", instance=world["instance"])
    rows = table.set_index(["model", "variant"])
    tuned, base = rows.loc[("tiny-ptuning", "finetuned")], rows.loc[("tiny-ptuning", "base")]
    assert tuned["parse_failures"] < base["parse_failures"] / 2, (tuned["parse_failures"], base["parse_failures"])


def test_every_method_materializes_its_adapter_and_merges_where_it_can(world):
    store, instance = ArtifactStore(world["home"]), world["instance"]
    for model, method in METHODS.items():
        adapter = read_manifest(store.path("adapter", model, "classification"))
        assert adapter["recipe"]["method"] == method and adapter["training"]["final_train_loss"] > 0, model
        record = (
            instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("merged_model"), asset_partitions=[cell_key("classification", model)]
                ),
                limit=1,
            )
            .records[0]
            .asset_materialization
        )
        if method in ("prefix", "ptuning"):
            assert (
                record.metadata["applicable"].value is False and "cannot be merged" in record.metadata["reason"].value
            )
            assert not store.path("merged_model", model, "classification").exists(), "no placeholder files"
        else:
            assert read_manifest(store.path("merged_model", model, "classification"))["summary"]["method"] == method


def test_each_adapter_is_one_mlflow_run_with_step_metrics(world):
    from mlflow import MlflowClient

    from ftassets.tracking import default_tracking_uri

    manifest = read_manifest(ArtifactStore(world["home"]).path("adapter", "tiny-qlora", "classification"))
    client = MlflowClient(default_tracking_uri(world["home"]))
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["dagster.partition"] == cell_key(
        "classification", "tiny-qlora"
    )
    assert run.data.params["method"] == "qlora" and run.data.params["bnb_4bit_compute_dtype"] == "float32"
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(losses) >= 10 and losses[-1].step == manifest["training"]["steps"]
    assert run.data.metrics["final_train_loss"] == pytest.approx(manifest["training"]["final_train_loss"])
    assert any(a.path == "adapter/adapter_config.json" for a in client.list_artifacts(run.info.run_id, "adapter"))


def test_forgetting_matrix_scores_each_fine_tune_on_every_task(world):
    report = world["runner"].run(["classification"], ["tiny-lora", "tiny-full"])
    assert not report.failed, [(o.assets, o.partition, o.error) for o in report.failed]
    assert {o.partition for o in report.ran if o.assets == ("forgetting",)} == {"tiny-lora", "tiny-full"}
    table = world["defs"].load_asset_value("forgetting", partition_key="tiny-full", instance=world["instance"])
    tasks = set(world["project"].tasks)
    assert set(table.evaluated_on) == tasks and set(table.trained_on) == {"classification"}
    diagonal = table.set_index("evaluated_on").loc["classification"]
    assert diagonal["delta"] > 0.5 and diagonal["n"] == world["project"].experiments.evaluation.forgetting_examples
    assert table["delta"].notna().all()
    again = world["runner"].run(["classification"], ["tiny-lora", "tiny-full"])
    assert not again.ran, [(o.assets, o.partition) for o in again.ran]


def test_second_run_retrains_nothing(world):
    report = world["runner"].run(["classification"], list(METHODS), forgetting=False)
    assert not report.failed and not report.ran, [(o.assets, o.partition, o.status) for o in report.outcomes]
    assert {o.status for o in report.outcomes} == {"current"}


def test_entries_on_one_base_share_one_build(world):
    instance = world["instance"]
    built = {}
    for model in ("tiny-lora", "tiny-full"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("base_model"), asset_partitions=[model]), limit=1
        ).records
        built[model] = records[0].asset_materialization.metadata["built_in_this_run"].value
    assert sorted(built.values()) == [False, True], built


def test_adapter_metadata_reads_well_in_the_ui(world):
    records = (
        world["instance"]
        .fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("adapter"), asset_partitions=[cell_key("classification", "tiny-full")]
            ),
            limit=1,
        )
        .records
    )
    metadata = records[0].asset_materialization.metadata
    assert "data:image/png;base64," in metadata["loss_curve"].value
    assert metadata["trainable_parameters"].value == metadata["total_parameters"].value > 0
    assert metadata["strategy"].value == "full" and metadata["final_train_loss"].value > 0
