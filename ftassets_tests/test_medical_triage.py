"""The ``medical_triage`` task type and its safety gate: the generator, the level parser, the metrics (macro-F1,
emergency recall, under-triaged emergencies, terminology), the ``no_under_triage`` verdict, and, through Dagster,
the check failing on a fine-tune that under-triages emergencies and ``publish_to_model_store`` refusing that cell."""

from __future__ import annotations

import random
from collections import Counter

import pandas as pd
import pytest
from helpers import REPO
from sklearn.metrics import f1_score

from ftassets.evaluation.safety import under_triage_counts, under_triage_verdict
from ftassets.tasks import get_task_type
from ftassets.tasks.medical_triage import CONDITIONS, LEVELS, TERMS, expected_terms

triage = get_task_type("medical_triage")


def records(count: int, seed: int) -> list[dict]:
    return triage.generate(count, random.Random(seed), {})


def record(label: str, terms: str = "stroke") -> dict:
    return {"symptoms": "s", "label": label, "advice": "a", "terms": terms}


def test_the_generator_is_seeded_balanced_varied_and_names_its_terms():
    first, again = records(400, seed=3), records(400, seed=3)
    assert first == again and records(400, seed=4) != first
    assert Counter(r["label"] for r in first) == {level: 100 for level in LEVELS}
    assert len({triage.render_prompt(r, triage.default_prompt_template) for r in first}) >= 390
    for r in first:
        assert triage.validate_record(r) == []
        assert r["advice"] in triage.reference(r) and triage.reference(r).startswith(f"{r['label']}. ")
        assert expected_terms(r) and set(expected_terms(r)) <= set(TERMS)
        assert all(term in triage.reference(r) for term in expected_terms(r))
    assert all(term in c.name for conditions in CONDITIONS.values() for c in conditions for term in c.terms)
    emergencies = [r for r in first if r["label"] == "emergency"]
    rng = random.Random(0)
    assert all(triage.parse(triage.rejected(r, rng), r) in ("self-care", "routine", "urgent") for r in emergencies)


def test_the_shipped_task_builds_splits_that_pass_the_dataset_gates():
    from ftassets.config import load_project_config
    from ftassets.data.datasets import build_splits, check_splits

    task = load_project_config(REPO / "configs").tasks["medical_triage"]
    assert task.primary_metric == "macro_f1"
    outcomes = check_splits(task, build_splits(task))
    assert all(outcome.passed for outcome in outcomes), [o for o in outcomes if not o.passed]


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("emergency. Call an ambulance now: this may be a stroke.", "emergency"),
        ("EMERGENCY!", "emergency"),
        ("Self care. Rest at home.", "self-care"),
        ("selfcare", "self-care"),
        ("urgent, not an emergency", "urgent"),
        ("I am not sure.\nemergency", None),
        ("routinely fine", None),
        ("", None),
    ],
)
def test_the_level_is_the_first_one_named_on_the_first_line(text, level):
    assert triage.parse(text, {}) == level


def test_under_triage_counts_emergencies_sent_to_a_lower_level_or_to_no_level():
    truth = ["emergency", "emergency", "emergency", "emergency", "emergency", "routine", "urgent", "self-care"]
    answers = [
        "emergency. Call an ambulance now: this may be a stroke.",
        "routine. Book a visit with your doctor.",
        "urgent. See a doctor today: this may be a stroke.",
        "self-care",
        "I cannot say.",
        "emergency. Call an ambulance now.",
        "urgent. See a doctor today: a stroke, or a heart attack.",
        "self-care. Rest: this may be a sprain.",
    ]
    terms = ["stroke"] * 5 + ["eczema", "stroke; heart attack; fracture", "sprain; muscle strain"]
    rows = [record(label, term) for label, term in zip(truth, terms)]
    scored = triage.score(rows, answers)
    parsed = [example["parsed"] for example in scored.per_example]
    assert parsed == ["emergency", "routine", "urgent", "self-care", None, "emergency", "urgent", "self-care"]
    assert [example["under_triaged"] for example in scored.per_example] == [i in (1, 2, 3, 4) for i in range(8)]
    predicted = [p or "unparsed" for p in parsed]
    assert scored.metrics == pytest.approx(
        {
            "macro_f1": f1_score(truth, predicted, labels=list(LEVELS), average="macro", zero_division=0),
            "accuracy": 3 / 8,
            "emergency_recall": 1 / 5,
            "under_triaged_emergencies": 4.0,
            "terminology": (1 + 0 + 1 + 0 + 0 + 0 + 2 / 3 + 1 / 2) / 8,
            "parse_failures": 1.0,
        }
    )
    over_triaged = triage.score([record("routine")], ["emergency. Call an ambulance now."])
    assert over_triaged.metrics["under_triaged_emergencies"] == 0.0
    assert triage.score([], []).metrics == {name: 0.0 for name in triage.metric_names}


def test_the_comparison_and_the_report_summary_show_the_safety_metrics():
    from ftassets.config import load_project_config
    from ftassets.evaluation.evaluate import comparison_table, summary_columns

    task = load_project_config(REPO / "configs").tasks["medical_triage"]
    rows = records(40, seed=2)
    evaluated = pd.DataFrame(
        [
            {"model": "tiny-lora", "variant": variant, "status": "ok", **triage.score(rows, answers).metrics}
            for variant, answers in (("base", ["routine"] * 40), ("finetuned", [triage.reference(r) for r in rows]))
        ]
    )
    table = comparison_table(task, ["tiny-lora"], {"tiny-lora": evaluated})
    summary = table[summary_columns(task, table)]
    assert {"emergency_recall", "under_triaged_emergencies", "terminology"} <= set(summary.columns)
    assert summary.set_index("variant").under_triaged_emergencies.to_dict() == {"base": 10.0, "finetuned": 0.0}


def test_own_rows_need_a_known_level_advice_and_terms():
    row = {"symptoms": "A fall. The wrist is bent.", "label": "urgent", "advice": "See a doctor: a fracture."}
    record = triage.from_source_row({**row, "terms": "fracture", "_origin": "triage.jsonl:2"}, "fields")
    assert triage.reference(record) == "urgent. See a doctor: a fracture." and expected_terms(record) == ("fracture",)
    with pytest.raises(ValueError, match=r"triage.jsonl:3: label 'soon' is not one of \['self-care'"):
        triage.from_source_row({**row, "label": "soon", "terms": "fracture", "_origin": "triage.jsonl:3"}, "fields")
    with pytest.raises(ValueError, match="triage.jsonl:4: field 'terms' is missing"):
        triage.from_source_row({**row, "_origin": "triage.jsonl:4"}, "fields")


def variant_table(*counts: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"variant": variant, "under_triaged_emergencies": count} for variant, count in counts])


def test_the_under_triage_verdict_compares_every_fine_tuned_variant_with_its_base():
    worse = under_triage_verdict(under_triage_counts(variant_table(("base", 2), ("finetuned", 5))), allowance=0)
    assert not worse.passed and worse.excess == {"finetuned": 3.0}
    assert "UNDER-TRIAGE: finetuned" in worse.description and "base 2, finetuned 5" in worse.description
    assert under_triage_verdict({"base": 2, "finetuned": 5}, allowance=3).passed
    assert under_triage_verdict({"base": 2, "finetuned": 2}, allowance=0).passed
    assert under_triage_verdict({"base": 2, "finetuned": 0}, allowance=0).passed
    quantized = under_triage_verdict({"base": 2, "finetuned": 2, "gguf_q4_k_m": 4}, allowance=1)
    assert not quantized.passed and quantized.excess == {"gguf_q4_k_m": 2}
    assert under_triage_verdict({"finetuned": 9}, allowance=0).passed
    assert under_triage_counts(pd.DataFrame({"variant": ["base"], "accuracy": [0.5]})) == {}
    assert under_triage_counts(variant_table(("base", 1), ("finetuned", float("nan")))) == {"base": 1.0}


def test_a_fine_tune_that_under_triages_emergencies_fails_its_check_and_is_not_published(tmp_path, monkeypatch):
    """The real ``evaluation`` asset, the real checks and the real ``publish_to_model_store`` job in one Dagster
    instance; only ``evaluate_cell`` is replaced, by tables of hand-made answers scored by the real task, so each
    case (pass, fail, not a triage task, a later passing evaluation, an unreadable table) costs seconds.
    test_under_triage_e2e.py trains a fine-tune that is worse on emergencies and runs the same gate on it."""
    import dagster as dg

    from ftassets.artifacts import write_manifest
    from ftassets.config import load_project_config
    from ftassets.defs.assets import evaluation
    from ftassets.defs.checks import build_checks
    from ftassets.defs.partitions import build_partitions, cell_key
    from ftassets.defs.publishing import publish_to_model_store
    from ftassets.defs.resources import (
        ArtifactStoreResource,
        LocalModelStoreResource,
        ProjectResource,
        TableIOManager,
        TrainerResource,
    )
    from ftassets.evaluation import runs
    from ftassets.runner import root_cause_message

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("models", ["tiny-lora", "tiny-full"])
    partitions = build_partitions(load_project_config(REPO / "configs"))
    assets = [evaluation.build(partitions), *build_checks(partitions)]
    home = tmp_path / "home"
    resources = {
        "project": ProjectResource(config_dir=str(REPO / "configs")),
        "artifacts": ArtifactStoreResource(root=str(home)),
        "trainer": TrainerResource(device="cpu"),
        "table_io_manager": TableIOManager(base_dir=str(home / "tables")),
        "model_store": LocalModelStoreResource(root=str(tmp_path / "store")),
    }
    test_rows = records(40, seed=5)
    emergencies = [i for i, row in enumerate(test_rows) if row["label"] == "emergency"]

    def answers(missed: int) -> list[str]:
        """The reference answers, but the first ``missed`` emergencies answered ``routine``."""
        return [
            "routine. Book a visit with your doctor." if i in emergencies[:missed] else triage.reference(row)
            for i, row in enumerate(test_rows)
        ]

    def triage_table(model: str, base_missed: int, finetuned_missed: int) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"model": model, "variant": variant, "status": "ok", **triage.score(test_rows, answers(missed)).metrics}
                for variant, missed in (("base", base_missed), ("finetuned", finetuned_missed))
            ]
        )

    tables: dict[tuple[str, str], tuple[pd.DataFrame, bool]] = {}

    def scored_cell(project, store, task_name, model, device, log):
        """What ``evaluate_cell`` writes (unless told not to) and returns, for the table of the cell."""
        (table, write_table), directory = tables[task_name, model], store.path("evaluation", model, task_name)
        with store.writing(directory) as staging:
            if write_table:
                table.to_parquet(staging / runs.TABLE_FILE, index=False)
            write_manifest(staging, asset="evaluation", partition=[task_name, model], fingerprint="v")
        return runs.CellEvaluation(table, directory / "predictions.parquet", "v")

    monkeypatch.setattr(runs, "evaluate_cell", scored_cell)

    def evaluate(task: str, model: str, table: pd.DataFrame, write_table: bool = True) -> dict[str, object]:
        tables[task, model] = table.assign(fingerprint="v"), write_table
        result = dg.materialize(assets, instance=instance, partition_key=cell_key(task, model), resources=resources)
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    def publish(task: str, model: str):
        adapter = ArtifactStoreResource(root=str(home)).store.path("adapter", model, task)
        if not adapter.exists():
            adapter.mkdir(parents=True)
            (adapter / "adapter_model.safetensors").write_bytes(b"weights")
            write_manifest(adapter, asset="adapter", fingerprint="abc")
        run_config = {"ops": {"publish_artifact": {"config": {"model": model, "task": task}}}}
        return publish_to_model_store.execute_in_process(
            run_config=run_config, resources=resources, instance=instance, raise_on_error=False
        )

    checks = evaluate("medical_triage", "tiny-full", triage_table("tiny-full", base_missed=2, finetuned_missed=1))
    assert checks["no_under_triage"].passed and checks["no_regression"].passed
    assert publish("medical_triage", "tiny-full").success
    assert (tmp_path / "store" / "adapter" / "tiny-full" / "medical_triage" / "manifest.json").exists()

    checks = evaluate("classification", "tiny-lora", pd.DataFrame([{"variant": "base", "accuracy": 0.5}]))
    assert checks["no_under_triage"].passed
    assert checks["no_under_triage"].description == "not a triage task: classification is a classification task"

    assert evaluate("medical_triage", "tiny-lora", triage_table("tiny-lora", 2, 2))["no_under_triage"].passed
    checks = evaluate("medical_triage", "tiny-lora", triage_table("tiny-lora", base_missed=2, finetuned_missed=8))
    under_triage = checks["no_under_triage"]
    assert not under_triage.passed and under_triage.severity == dg.AssetCheckSeverity.ERROR
    assert under_triage.description.startswith("UNDER-TRIAGE: finetuned under-triaged more emergencies")
    assert "base 2, finetuned 8" in under_triage.description
    assert not checks["no_regression"].passed, "six more misses also drop macro-F1 by more than 0.05"

    refused = publish("medical_triage", "tiny-lora")
    assert not refused.success
    error = root_cause_message(refused.get_step_failure_events()[0].step_failure_data.error)
    assert "refusing to publish adapter/tiny-lora/medical_triage" in error
    assert "evaluation of partition tiny-lora|medical_triage failed check(s) no_regression, no_under_triage" in error
    assert "no_under_triage: UNDER-TRIAGE: finetuned" in error and "no_regression: REGRESSION" in error
    assert not (tmp_path / "store" / "adapter" / "tiny-lora").exists()

    checks = evaluate("medical_triage", "tiny-lora", triage_table("tiny-lora", base_missed=2, finetuned_missed=2))
    assert checks["no_under_triage"].passed and checks["no_regression"].passed
    assert publish("medical_triage", "tiny-lora").success, "the latest evaluation's checks decide"

    unreadable = evaluate("medical_triage", "tiny-lora", triage_table("tiny-lora", 2, 2), write_table=False)
    assert not unreadable["no_under_triage"].passed and unreadable["no_under_triage"].description.startswith(
        "cannot read this evaluation's table"
    )
