"""``ftassets run --plan``: each cell's parameters, trainable parameters, estimated peak memory and tokens, counted
without training or loading weights, and equal to what training builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_project, edit_yaml

from ftassets.artifacts import ArtifactStore
from ftassets.config import load_project_config
from ftassets.sizing import size_cells

REPO = Path(__file__).resolve().parents[1]
QWEN25_05B = dict(
    model_type="qwen2",
    architectures=["Qwen2ForCausalLM"],
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
)


def _project_with_base(tmp_path: Path, base_id: str, recipes: dict[str, str]):
    config_dir, home, _ = copy_project(tmp_path)

    def add(models):
        models["bases"]["local"] = {"source": "huggingface", "id": base_id}
        for entry, recipe in recipes.items():
            models["models"][entry] = {"base": "local", "recipe": recipe}

    edit_yaml(config_dir / "models.yaml", add)
    return load_project_config(config_dir), ArtifactStore(home)


def test_parameter_counts_are_those_of_the_models_training_builds(tiny_base_dir, tmp_path):
    from ftassets.training.strategies import count_parameters, load_causal_lm, strategy_for

    recipes = {"local-lora": "lora", "local-ia3": "ia3", "local-full": "full", "local-prefix": "prefix"}
    project, store = _project_with_base(tmp_path, str(tiny_base_dir), recipes)
    sizes = {s.model: s for s in size_cells(project, store, ["classification"], list(recipes))}
    total = sum(p.numel() for p in load_causal_lm(tiny_base_dir, "cpu").parameters())
    for entry in recipes:
        trained = strategy_for(project.recipe_of(entry)).prepare_model(tiny_base_dir, project.recipe_of(entry), "cpu")
        trainable, _ = count_parameters(trained)
        assert (sizes[entry].parameters, sizes[entry].trainable) == (total, trainable), entry
    assert sizes["local-full"].trainable == total
    assert sizes["local-lora"].architecture == "LlamaForCausalLM"
    assert sizes["local-lora"].train_examples == 40 and not sizes["local-lora"].tokens_measured


def test_a_half_billion_parameter_qwen2_is_sized_from_its_config_alone(tmp_path):
    """No weight file exists: the count comes from the architecture on the meta device (Qwen2.5-0.5B: 494,032,768
    parameters with its tied head). QLoRA needs less than LoRA, which needs less than full fine-tuning; gradient
    checkpointing cuts the activations."""
    folder = tmp_path / "qwen2.5-0.5b-config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN25_05B))
    recipes = {"q-lora": "lora", "q-qlora": "qlora", "q-full": "full"}
    project, store = _project_with_base(tmp_path, str(folder), recipes)
    sizes = {s.model: s for s in size_cells(project, store, ["classification"], list(recipes), device="cuda")}
    assert {s.parameters for s in sizes.values()} == {494_032_768}
    assert sizes["q-qlora"].trainable == sizes["q-lora"].trainable < sizes["q-full"].trainable == 494_032_768
    assert sizes["q-qlora"].weights_bytes < sizes["q-lora"].weights_bytes / 2
    assert sizes["q-qlora"].peak_bytes < sizes["q-lora"].peak_bytes < sizes["q-full"].peak_bytes
    assert sizes["q-full"].optimizer_bytes == 8 * 494_032_768
    assert sizes["q-lora"].precision == "bf16" and sizes["q-qlora"].precision == "nf4+bf16"

    edit_yaml(
        project.config_dir / "experiments.yaml", lambda d: d["recipes"]["lora"].update(gradient_checkpointing=True)
    )
    checkpointed = size_cells(load_project_config(project.config_dir), store, ["classification"], ["q-lora"], "cuda")
    assert checkpointed[0].activation_bytes < sizes["q-lora"].activation_bytes


def test_ftassets_run_plan_sizes_the_default_experiment_without_building_anything(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"FTASSETS_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "ftassets", "run", "--plan"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    project = load_project_config(REPO / "configs")
    _, models = project.default_selection()
    for model in models:
        assert f"\n{model} " in result.stdout, model
    assert "LlamaForCausalLM" in result.stdout and "served by an API" in result.stdout
    assert "nothing is trained" in result.stdout
    assert not home.exists() and not (tmp_path / ".dagster_home").exists(), "a plan builds and records nothing"


@pytest.mark.parametrize("argument", ["--models tiny-lroa", "--tasks clasification"])
def test_ftassets_run_plan_names_an_unknown_selection(tmp_path, monkeypatch, capsys, argument):
    from ftassets.cli import main

    monkeypatch.setenv("FTASSETS_HOME", str(tmp_path / "home"))
    assert main(["run", "--plan", *argument.split()]) == 2
    error = capsys.readouterr().err
    assert "unknown" in error and argument.split()[1] in error and "defined in" in error, error
