"""An entry with ``repeats: 3`` end to end on the embedded model: one small classification task and three two-step
prefix tunings of the tiny base with seeds s, s + 1 and s + 2 (in a temporary Dagster instance), through
``comparison``, whose row for the group has the mean and standard deviation over the seeds and the seed-aware test."""

import dagster as dg
import numpy as np
import pytest
import yaml
from helpers import QUICK_PREFIX, REPO

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.runner import PipelineRunner
from ftassets.summary import format_summary

pytestmark = pytest.mark.e2e
GROUP = ["tiny-prefix", "tiny-prefix.seed1", "tiny-prefix.seed2"]
SEEDED_PREFIX = {**QUICK_PREFIX, "seed": 5}


def small_project(config_dir, tiny_base_dir) -> None:
    """A project of its own (not a copy of the shipped configs, whose recipes may be mid-edit): the shipped
    classification task cut to 24/4/12 examples, and one entry on the tiny base with three seed repeats."""
    config_dir.mkdir()
    classification = yaml.safe_load((REPO / "configs" / "tasks.yaml").read_text())["tasks"]["classification"]
    classification |= {
        "sizes": {"train": 24, "validation": 4, "test": 12},
        "checks": {"max_label_share_deviation": 0.5},
    }
    files = {
        "tasks.yaml": {"tasks": {"classification": classification}},
        "models.yaml": {
            "bases": {"tiny": {"source": "huggingface", "id": str(tiny_base_dir)}},
            "models": {"tiny-prefix": {"base": "tiny", "recipe": "quick-prefix", "repeats": 3}},
        },
        "experiments.yaml": {
            "recipes": {"quick-prefix": SEEDED_PREFIX},
            "experiments": {"default": {"tasks": ["classification"], "models": ["tiny-prefix"]}},
            "evaluation": {"bootstrap_resamples": 200},
        },
    }
    for name, content in files.items():
        (config_dir / name).write_text(yaml.safe_dump(content, sort_keys=False))


def test_an_entry_with_three_repeats_shows_their_mean_spread_and_seed_aware_significance(tmp_path, tiny_base_dir):
    config_dir, home = tmp_path / "configs", tmp_path / "home"
    small_project(config_dir, tiny_base_dir)
    project = load_project_config(config_dir)
    lines: list[str] = []
    with dg.instance_for_test() as instance:
        defs = build_definitions(config_dir, home)
        runner = PipelineRunner(defs, project, ArtifactStore(home), instance, lines.append)
        report = runner.run(["classification"], ["tiny-prefix"], forgetting=False)
    assert not report.failed, [(o.assets, o.partition, o.error) for o in report.failed] + lines[-20:]

    store = ArtifactStore(home)
    seeds = [read_manifest(store.path("adapter", model, "classification"))["recipe"]["seed"] for model in GROUP]
    assert seeds == [5, 6, 7]
    table = report.comparisons["classification"]
    tuned = table[(table.variant == "finetuned") & table.model.isin(GROUP)]
    assert list(tuned.model) == GROUP and (tuned.status == "ok").all(), table
    summary = table[table.variant == "finetuned-3-seeds"]
    assert len(summary) == 1, table[["model", "variant"]]
    summary = summary.iloc[0]
    assert summary.model == "tiny-prefix" and summary.seeds == 3
    assert summary.accuracy_seed_mean == pytest.approx(tuned.accuracy.mean())
    assert summary.accuracy_seed_std == pytest.approx(np.std(tuned.accuracy, ddof=1))
    assert isinstance(summary.significant, bool | np.bool_) and 0 < summary.seed_aware_p <= 1
    assert summary.delta_ci_low <= summary.delta_accuracy <= summary.delta_ci_high

    notes = (store.path("comparison", "classification") / "report.md").read_text()
    assert "tiny-prefix (3 seeds)" in notes and "resamples seeds" in notes
    text = format_summary({"classification": table}, {"classification": "accuracy"})
    line = next(line for line in text.splitlines() if "finetuned-3-seeds" in line)
    assert f"{summary.accuracy:.3f} ±{summary.accuracy_seed_std:.3f}" in line, text
