"""The cell plan: one rule for which asset applies to a (task, model) cell, with which parameters, and why not."""

from helpers import edit_yaml

from ftassets import plan
from ftassets.config import load_project_config


def test_fingerprints_move_only_with_their_inputs(config_dir):
    before = plan.cell_plan(load_project_config(config_dir), "classification", "tiny-lora")
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["recipes"]["lora"].update(learning_rate=0.001))
    after = plan.cell_plan(load_project_config(config_dir), "classification", "tiny-lora")
    unchanged = ("dataset", "base_model", "tokenized_splits")
    assert all(before[a].fingerprint == after[a].fingerprint for a in unchanged)
    assert all(before[a].fingerprint != after[a].fingerprint for a in plan.CELL_ASSETS if a not in unchanged)


def test_a_recipe_change_moves_the_cells_of_the_entries_that_use_it_and_no_other(config_dir):
    project = load_project_config(config_dir)
    before = {(t, m): plan.cell_plan(project, t, m) for t in project.tasks for m in project.models}
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["recipes"]["lora"].update(learning_rate=0.001))
    project = load_project_config(config_dir)
    moved = {
        (t, m, asset)
        for t in project.tasks
        for m in project.models
        for asset, step in plan.cell_plan(project, t, m).items()
        if step.fingerprint != before[(t, m)][asset].fingerprint
    }
    users = {m for m, entry in project.models.items() if entry.recipe == "lora"}
    assert users == {"tiny-lora"}
    assert moved == {
        (t, "tiny-lora", a) for t in project.tasks for a in ("adapter", "merged_model", "gguf_export", "evaluation")
    }


def test_a_task_change_moves_that_tasks_whole_lineage(config_dir):
    project = load_project_config(config_dir)
    before = plan.cell_plan(project, "classification", "tiny-lora")
    other = plan.cell_plan(project, "qa", "tiny-lora")
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["classification"]["sizes"].update(train=300))
    project = load_project_config(config_dir)
    after = plan.cell_plan(project, "classification", "tiny-lora")
    assert all(before[a].fingerprint != after[a].fingerprint for a in after if a != "base_model")
    assert before["base_model"].fingerprint == after["base_model"].fingerprint
    assert plan.cell_plan(project, "qa", "tiny-lora") == other


def test_an_api_entry_has_no_adapter_merge_or_export_and_says_why(config_dir):
    project = load_project_config(config_dir)
    steps = plan.cell_plan(project, "classification", "gpt-5")
    assert [a for a in plan.CELL_ASSETS if steps[a].applies] == ["evaluation"]
    assert "no recipe" in steps["adapter"].reason and "API" in steps["gguf_export"].reason
    assert steps["adapter"].fingerprint == plan.not_applicable("adapter")
    assert not plan.forgetting_step(project, "gpt-5").applies


def test_methods_that_cannot_merge_or_train_in_the_cloud_skip_what_they_cannot_build(config_dir):
    project = load_project_config(config_dir)
    prefix = plan.cell_plan(project, "classification", "tiny-prefix")
    assert prefix["adapter"].applies and not prefix["merged_model"].applies and not prefix["gguf_export"].applies
    assert "virtual tokens" in prefix["gguf_export"].reason
    cloud = plan.cell_plan(project, "classification", "gpt-4.1-mini-sft")
    assert not cloud["tokenized_splits"].applies and cloud["adapter"].applies
    assert set(cloud["adapter"].upstream) == {"dataset", "base_model"}
    dpo = plan.cell_plan(project, "classification", "tiny-dpo")
    assert dpo["tokenized_splits"].params["preference_pairs"] is True
    assert (
        plan.cell_plan(project, "classification", "tiny-lora")["tokenized_splits"].params["preference_pairs"] is False
    )


def test_only_what_matters_invalidates(config_dir):
    """A description changes no fingerprint; a generation limit changes only the evaluation's."""
    before = plan.cell_plan(load_project_config(config_dir), "classification", "tiny-lora")
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["classification"].update(description="reworded"))
    assert plan.cell_plan(load_project_config(config_dir), "classification", "tiny-lora") == before
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["classification"].update(max_new_tokens=9))
    after = plan.cell_plan(load_project_config(config_dir), "classification", "tiny-lora")
    assert [a for a in after if after[a].fingerprint != before[a].fingerprint] == ["evaluation"]


def test_a_generation_limit_has_an_upper_bound(config_dir):
    import pytest

    from ftassets.config import ConfigError

    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"]["classification"].update(max_new_tokens=10**9))
    with pytest.raises(ConfigError, match="max_new_tokens"):
        load_project_config(config_dir)
