"""The trainer's ``azureml`` launcher end to end against the loopback Azure ML workspace (``fakes/azureml.py``) and
Azurite: azure-ai-ml's real ``MLClient`` uploads the code and the inputs, submits the command job, and
dagster-azure's ``PipesAzureMLClient`` follows it while the fake runs the job's command (two PyTorch processes
on the tiny base); the job's log lines reach the Dagster run through the Pipes blob container, and the adapter
comes back through ``ml_client.jobs.download``."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from fakes.azureml import (
    AZURITE,
    DEV_ACCOUNT,
    DEV_KEY,
    FakeAzureML,
    account_sas_url,
    azurite,
    route_datastores_to_azurite,
)
from helpers import quick_lora_recipe

from ftassets.defs.resources import TrainerResource

REPO = Path(__file__).resolve().parents[1]
ARM_TOKEN = "armtoken-azureml-do-not-log-5d2c"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    if not AZURITE.exists():
        pytest.skip(f"{AZURITE} missing: run `bash scripts/install_test_tools.sh` (the README's test command does)")
    from azure.storage.blob import BlobServiceClient

    root = tmp_path_factory.mktemp("azureml")
    with azurite(root / "azurite") as account:
        BlobServiceClient(account, credential={"account_name": DEV_ACCOUNT, "account_key": DEV_KEY}).create_container(
            "dagster-pipes"
        )
        with (
            FakeAzureML(account, token=ARM_TOKEN, workspace_dir=root / "compute") as fake,
            route_datastores_to_azurite(account),
        ):
            config_dir = root / "configs"
            shutil.copytree(REPO / "configs", config_dir)
            azure = yaml.safe_load((config_dir / "azure.yaml").read_text())
            azure["management_url"] = fake.url
            azure["azure_ml"].update(
                compute="cpu-cluster",
                instance_count=1,
                process_count_per_instance=2,
                distribution="pytorch",
                poll_interval_s=0.5,
            )
            (config_dir / "azure.yaml").write_text(yaml.safe_dump(azure, sort_keys=False))
            sas_url = account_sas_url(account)
            env = {
                "AZURE_SUBSCRIPTION_ID": "sub-0000",
                "AZURE_RESOURCE_GROUP": "rg-ftassets",
                "AZUREML_WORKSPACE": "ws-ftassets",
                "AZURE_STORAGE_ACCOUNT_URL": sas_url,
                "AZURE_MANAGEMENT_TOKEN": ARM_TOKEN,
                "FTASSETS_CONFIG_DIR": str(config_dir),
                "OMP_NUM_THREADS": "1",
            }
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv(
                    "AZUREML_CURRENT_CLOUD", "AzureCloud"
                )  # MLClient records its cloud here; undone afterwards
                for name, value in env.items():
                    patch.setenv(name, value)
                yield dict(root=root, fake=fake, sas_url=sas_url)


def test_an_adapter_trains_as_an_azure_ml_command_job_followed_through_pipes(
    workspace, tiny_base_dir, color_splits_dir, tmp_path
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = quick_lora_recipe()
    outcome = {}

    @dg.asset
    def adapter(context: dg.AssetExecutionContext, trainer: TrainerResource):
        outcome["result"] = trainer.train(
            context, tiny_base_dir, color_splits_dir, recipe, tmp_path / "adapter", tmp_path / "work"
        )
        return dg.MaterializeResult(metadata={"steps": outcome["result"].steps})

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [adapter],
        resources={"trainer": TrainerResource(device="cpu", launcher="azureml")},
        instance=instance,
        raise_on_error=False,
    )
    fake = workspace["fake"]
    [name] = fake.state.jobs
    assert result.success, fake.state.job_logs.get(name, "")[-3000:]

    spec = fake.state.job_bodies[name]["properties"]
    assert spec["jobType"] == "Command" and spec["distribution"] == {
        "distributionType": "PyTorch",
        "processCountPerInstance": 2,
    }
    assert spec["resources"]["instanceCount"] == 1 and spec["computeId"].endswith("/computes/cpu-cluster")
    assert "python -m ftassets.azure.azureml_entry" in spec["command"] and set(spec["outputs"]) == {
        "adapter",
        "checkpoints",
    }
    assert spec["environmentId"].startswith("azureml://registries/azureml/environments/acpt-pytorch")
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES", "FTASSETS_PIPES_STORAGE_URL"} <= set(
        spec["environmentVariables"]
    )
    assert fake.state.statuses[name] == ["Queued", "Preparing", "Running", "Completed"]
    assert all(
        spec["inputs"][key]["uri"].startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
        for key in ("base_model", "tokenized_splits", "recipe")
    )
    [code] = fake.state.codes.values()
    container, snapshot = fake.locate(code["properties"]["codeUri"])
    assert fake.container_client(container).get_blob_client(f"{snapshot}/ftassets/azure/azureml_entry.py").exists()
    uploaded = {blob.name.removeprefix(f"{snapshot}/") for blob in fake.container_client(container).list_blobs()}
    assert uploaded and all(name.startswith("ftassets/") and "__pycache__" not in name for name in uploaded), (
        "the package alone: no repository, virtual environment or bytecode"
    )

    training = outcome["result"]
    assert training.world_size == 2 and training.steps == 6 and training.final_val_loss is not None
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("external process successfully opened dagster pipes" in line for line in logs)
    assert any(line.startswith("step 6/6: loss") for line in logs), "the job's log lines streamed into the run"
    assert any(f"Azure ML job {name} observed state transition to JobStatus.COMPLETED" in line for line in logs)
    secrets = [ARM_TOKEN, DEV_KEY, workspace["sas_url"].split("sig=")[1].split("&")[0]]
    rendered = "".join(repr(event) for event in instance.all_logs(result.run_id))
    assert not [secret for secret in secrets if secret in rendered]

    assert (tmp_path / "adapter" / "adapter_config.json").exists(), "downloaded through ml_client.jobs.download"
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base_dir), tmp_path / "adapter").eval()
    prompt = tokenizer("color: red", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(
            **prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 4


def test_a_failing_azure_ml_job_fails_the_step_with_its_status(workspace, tiny_base_dir, tmp_path):
    from ftassets.training.recipes import parse_recipe

    bogus = tmp_path / "splits"
    bogus.mkdir()
    (bogus / "README.txt").write_text("not tokenized splits")
    recipe = parse_recipe(dict(method="lora", max_steps=2))

    @dg.asset
    def adapter(context: dg.AssetExecutionContext, trainer: TrainerResource):
        trainer.train(context, tiny_base_dir, bogus, recipe, tmp_path / "adapter", tmp_path / "work")

    fake = workspace["fake"]
    before = set(fake.state.jobs)
    result = dg.materialize(
        [adapter],
        resources={"trainer": TrainerResource(device="cpu", launcher="azureml")},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    [name] = set(fake.state.jobs) - before
    assert not result.success and fake.state.statuses[name][-1] == "Failed"
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "Error running Azure ML job: JobStatus.FAILED" in failure.step_failure_data.error.to_string()
    assert "Traceback" in fake.state.job_logs[name] and not (tmp_path / "adapter").exists()
