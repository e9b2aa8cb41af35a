"""Offline checks of the Azure ML command job (our strategies on Azure ML compute) and the Foundry fine-tuning
job: the specifications azure-ai-ml builds from our configuration, down to the REST body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftassets.config import load_project_config
from ftassets.config.schemas import AzureMLSettings
from ftassets.training.entry import TrainingRequest
from ftassets.training.recipes import parse_recipe

REPO = Path(__file__).resolve().parents[1]


def _request(tmp_path: Path) -> TrainingRequest:
    for name in ("base", "splits", "checkpoints"):
        (tmp_path / name).mkdir()
    return TrainingRequest(
        base_dir=str(tmp_path / "base"),
        splits_dir=str(tmp_path / "splits"),
        recipe={"method": "lora", "epochs": 1},
        out_dir=str(tmp_path / "out"),
        checkpoint_dir=str(tmp_path / "checkpoints"),
        device="cpu",
    )


def test_the_azure_ml_command_job_carries_distribution_processes_and_instances_from_config(tmp_path):
    from ftassets.azure.azureml import ENTRY, PIPES_URL_VARIABLE, training_command, write_recipe

    settings = AzureMLSettings(
        compute="a100-cluster", instance_count=2, process_count_per_instance=4, distribution="pytorch"
    )
    request = _request(tmp_path)
    recipe_path = write_recipe(request, tmp_path / "checkpoints")
    job = training_command(
        settings,
        request,
        recipe_path,
        REPO,
        display_name="ftassets tiny-lora|classification",
        pipes_storage_url="https://pipes.blob.core.windows.net",
        tags={"dagster.partition": "tiny-lora|classification"},
    )
    assert job.distribution.process_count_per_instance == 4 and job.resources.instance_count == 2
    assert job.compute == "a100-cluster" and job.environment == settings.environment
    assert f"python -m {ENTRY}" in job.command and "${{outputs.adapter}}" in job.command
    assert (
        job.inputs["base_model"].path == request.base_dir and job.inputs["tokenized_splits"].path == request.splits_dir
    )
    assert json.loads(Path(job.inputs["recipe"].path).read_text()) == request.recipe
    assert job.environment_variables[PIPES_URL_VARIABLE] == "https://pipes.blob.core.windows.net"
    body = job._to_job()._to_rest_object().as_dict()["properties"]
    assert body["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 4}
    assert body["resources"]["instanceCount"] == 2 and body["computeId"] == "a100-cluster"
    assert set(body["outputs"]) == {"adapter", "checkpoints"} and body["experimentName"] == "ftassets"

    mpi = training_command(
        settings.model_copy(update={"distribution": "mpi"}),
        request,
        recipe_path,
        REPO,
        display_name="x",
        pipes_storage_url="https://pipes.blob.core.windows.net",
    )
    assert mpi._to_job()._to_rest_object().as_dict()["properties"]["distribution"]["distributionType"] == "Mpi"


def test_the_azureml_launcher_without_workspace_variables_names_them(tmp_path, monkeypatch):
    from ftassets.defs.resources import TrainerResource
    from ftassets.endpoints import MissingCredentials

    monkeypatch.chdir(REPO)
    for name in (
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZUREML_WORKSPACE",
        "AZURE_STORAGE_ACCOUNT_URL",
        "FTASSETS_CONFIG_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    request = _request(tmp_path)
    with pytest.raises(
        MissingCredentials,
        match=r"Azure ML.*\$AZURE_SUBSCRIPTION_ID, \$AZURE_RESOURCE_GROUP, \$AZUREML_WORKSPACE, "
        r"\$AZURE_STORAGE_ACCOUNT_URL",
    ):
        TrainerResource(device="cpu", launcher="azureml").train(
            None,
            Path(request.base_dir),
            Path(request.splits_dir),
            parse_recipe(request.recipe),
            tmp_path / "out",
            tmp_path / "checkpoints",
        )


def test_the_foundry_job_rest_body_for_phi4_mini(tmp_path):
    from ftassets.azure.foundry import finetuning_job, rest_body

    recipe = parse_recipe(
        {
            "method": "foundry_sft",
            "model": "azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest",
            "epochs": 2,
            "learning_rate": 2e-5,
            "extra_hyperparameters": {"lora_r": "8"},
            "output_model_name_prefix": "ftassets-phi4",
        }
    )
    for name in ("train", "validation"):
        (tmp_path / f"{name}.jsonl").write_text(
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
        )
    body = rest_body(finetuning_job(recipe, tmp_path / "train.jsonl", tmp_path / "validation.jsonl", "ftassets phi4"))[
        "properties"
    ]
    details = body["fineTuningDetails"]
    assert body["jobType"] == "FineTuning" and details["taskType"] == "chatCompletion"
    assert details["model"]["uri"] == recipe.model and details["trainingData"]["uri"].endswith("train.jsonl")
    assert details["validationData"]["uri"].endswith("validation.jsonl")
    assert details["hyperParameters"] == {
        "num_train_epochs": "2",
        "learning_rate": "2e-05",
        "per_device_train_batch_size": "1",
        "lora_r": "8",
    }
    assert body["outputs"]["registered_model"]["assetName"] == "ftassets-phi4"
    assert body["resources"]["instanceTypes"] == ["Standard_NC24ads_A100_v4"] and body["displayName"] == "ftassets phi4"


def test_a_foundry_recipe_validates_the_registry_uri_and_needs_an_openai_compatible_base(tmp_path):
    import shutil

    import yaml
    from pydantic import ValidationError

    from ftassets.config import ConfigError

    with pytest.raises(ValidationError, match="model"):
        parse_recipe({"method": "foundry_sft", "model": "Phi-4-mini-instruct"})
    config_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", config_dir)
    experiments = yaml.safe_load((config_dir / "experiments.yaml").read_text())
    experiments["recipes"]["phi"] = {
        "method": "foundry_sft",
        "model": "azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest",
    }
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(experiments))
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["models"]["phi-sft"] = {"base": "gpt-4.1-mini", "recipe": "phi"}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    with pytest.raises(
        ConfigError, match=r"models\.phi-sft\.recipe: foundry_sft needs an openai_compatible base .*not 'azure_openai'"
    ):
        load_project_config(config_dir)
    assert load_project_config(REPO / "configs").recipe_of("phi-4-mini-foundry-sft").method == "foundry_sft"
