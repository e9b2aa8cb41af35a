"""The domain task types end to end on the embedded model: ``code``, ``code_review`` and ``medical_triage`` each run
from ``dataset`` through ``comparison`` (small splits, two steps of prefix tuning on the shared tiny base, in a
temporary Dagster instance), and each comparison holds a base and a fine-tuned row with the task's own metrics. The
entry's forgetting matrix then scores each of the three fine-tunes on every task, the general classification task
included."""

import shutil

import dagster as dg
import pytest
from helpers import QUICK_PREFIX, REPO, edit_yaml

from ftassets.artifacts import ArtifactStore
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.runner import PipelineRunner

pytestmark = pytest.mark.e2e
TASK_METRICS = {
    "code": ("pass_at_1", "syntax_valid_rate"),
    "code_review": ("category_accuracy", "rougeL"),
    "medical_triage": ("macro_f1", "emergency_recall", "under_triaged_emergencies"),
}
MAX_NEW_TOKENS = {"code": 48, "code_review": 32, "medical_triage": 24}
"""Enough for the untrained tiny model to show each metric; the shipped limits fit whole answers."""
SIZES = {"train": 24, "validation": 4, "test": 8}
FORGETTING_EXAMPLES = 6
DOMAIN_PREFIX = {**QUICK_PREFIX, "max_seq_length": 512}
"""``QUICK_PREFIX`` with room for the code prompts: no GGUF export (the tiny base's 256-token context would not hold
these prompts in llama.cpp, and they cost a minute)."""


def small_project(config_dir, tiny_base_dir) -> None:
    """The shipped configs with only the three tasks (small splits, short answers) and the general classification
    task (for the forgetting matrix only), and one entry: the tiny base with a two-step prefix tuning."""
    edit_yaml(
        config_dir / "tasks.yaml",
        lambda d: d.update(
            tasks={
                task: {
                    **d["tasks"][task],
                    "sizes": SIZES,
                    "max_new_tokens": MAX_NEW_TOKENS.get(task, 4),
                    "checks": {"max_label_share_deviation": 0.5},
                }
                for task in (*TASK_METRICS, "classification")
            }
        ),
    )
    edit_yaml(
        config_dir / "models.yaml",
        lambda d: d.update(
            bases={"tiny": {"source": "huggingface", "id": str(tiny_base_dir)}},
            models={"tiny-prefix": {"base": "tiny", "recipe": "quick-prefix"}},
        ),
    )

    def experiments(d: dict) -> None:
        d["recipes"]["quick-prefix"] = DOMAIN_PREFIX
        d["experiments"] = {"default": {"tasks": list(TASK_METRICS), "models": ["tiny-prefix"]}}
        d["evaluation"]["bootstrap_resamples"] = 50
        d["evaluation"]["forgetting_examples"] = FORGETTING_EXAMPLES

    edit_yaml(config_dir / "experiments.yaml", experiments)


@pytest.fixture(scope="module")
def domain_run(tmp_path_factory, tiny_base_dir) -> dict:
    """One run of the three lineages through comparison, then the entry's forgetting matrix; on the session's tiny
    base. Returns the run's report and the matrix."""
    root = tmp_path_factory.mktemp("domain_tasks")
    config_dir, home = root / "configs", root / "home"
    shutil.copytree(REPO / "configs", config_dir)
    small_project(config_dir, tiny_base_dir)
    lines: list[str] = []
    with dg.instance_for_test() as instance:
        runner = PipelineRunner(
            build_definitions(config_dir, home),
            load_project_config(config_dir),
            ArtifactStore(home),
            instance,
            log=lines.append,
        )
        report = runner.run(list(TASK_METRICS), ["tiny-prefix"])
        assert not report.failed, [(o.assets, o.partition, o.error) for o in report.failed] + lines[-20:]
        forgetting = runner.defs.load_asset_value("forgetting", partition_key="tiny-prefix", instance=instance)
    return {"report": report, "forgetting": forgetting}


@pytest.mark.parametrize("task", list(TASK_METRICS))
def test_the_task_runs_through_comparison_with_base_and_finetuned_rows_and_its_metrics(domain_run, task):
    table = domain_run["report"].comparisons[task]
    rows = table[(table.model == "tiny-prefix") & table.variant.isin(["base", "finetuned"])].set_index("variant")
    assert sorted(rows.index) == ["base", "finetuned"] and (rows.status == "ok").all(), table
    for metric in TASK_METRICS[task]:
        assert rows[metric].notna().all(), (metric, rows[metric])
    primary = load_project_config(REPO / "configs").tasks[task].primary_metric
    assert primary == TASK_METRICS[task][0] and rows.loc["finetuned", f"delta_{primary}"] == pytest.approx(
        rows.loc["finetuned", primary] - rows.loc["base", primary]
    )


def test_the_forgetting_matrix_scores_each_domain_fine_tune_on_every_task_the_general_one_included(domain_run):
    """What fine-tuning on medical triage cost on code, code review and classification (and each other way)."""
    matrix = domain_run["forgetting"]
    tasks = load_project_config(REPO / "configs").tasks
    assert sorted(matrix.trained_on.unique()) == sorted(TASK_METRICS)
    assert sorted(matrix.evaluated_on.unique()) == sorted([*TASK_METRICS, "classification"])
    assert len(matrix) == len(TASK_METRICS) * (len(TASK_METRICS) + 1), matrix
    assert (matrix.n == FORGETTING_EXAMPLES).all()
    for row in matrix.itertuples():
        assert row.metric == tasks[row.evaluated_on].primary_metric, row
        assert row.delta == pytest.approx(row.finetuned - row.base), row
    triage = matrix[matrix.trained_on == "medical_triage"].set_index("evaluated_on")
    assert {"code", "classification"} <= set(triage.index) and triage[["base", "finetuned"]].notna().all().all()
