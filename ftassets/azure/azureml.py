"""Our own training strategies on Azure ML compute: the command job that runs ``ftassets.azure.azureml_entry``.

The trainer resource (launcher ``azureml``) submits it through dagster-azure's ``PipesAzureMLClient``, which
passes the Dagster Pipes bootstrap in the job's environment variables; the job's rank 0 streams its log
lines and result back through a blob container (``azure_ml.pipes_container``). The base model and the
tokenized splits are the job's inputs (uploaded by azure-ai-ml), the trained adapter its output.
Distribution, process count and instance count come from ``azure_ml`` in configs/azure.yaml: users who
outgrow one GPU use Azure ML's scheduler, not one of ours.

The job's environment must provide ftassets' dependencies (torch, transformers, peft, trl, dagster-pipes,
azure-identity, azure-storage-blob). The code uploaded is the ``ftassets`` package alone (``stage_code``), copied from
where this process imports it, so an installed ftassets submits jobs as a checkout does, and azure-ai-ml neither walks
nor uploads a repository, its virtual environment or its docs; the job runs the entry module from that folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ftassets.config.schemas import AzureFile, AzureMLSettings
from ftassets.endpoints import require_variables

ENTRY = "ftassets.azure.azureml_entry"
PIPES_URL_VARIABLE = "FTASSETS_PIPES_STORAGE_URL"


def training_command(
    settings: AzureMLSettings,
    request: Any,
    recipe_path: Path,
    code_dir: Path,
    *,
    display_name: str,
    pipes_storage_url: str,
    tags: dict[str, str] | None = None,
):
    """The ``azure.ai.ml`` command job training ``request`` (a ``TrainingRequest``) with the settings' distribution."""
    from azure.ai.ml import Input, MpiDistribution, Output, PyTorchDistribution, command

    per_instance = settings.process_count_per_instance
    distribution = (
        PyTorchDistribution(process_count_per_instance=per_instance)
        if settings.distribution == "pytorch"
        else MpiDistribution(process_count_per_instance=per_instance)
    )
    return command(
        code=str(code_dir),
        command=(
            "python -m " + ENTRY + " --recipe ${{inputs.recipe}} "
            "--base ${{inputs.base_model}} --splits ${{inputs.tokenized_splits}} "
            "--out ${{outputs.adapter}} --checkpoints ${{outputs.checkpoints}}"
        ),
        inputs={
            "base_model": Input(type="uri_folder", path=str(request.base_dir)),
            "tokenized_splits": Input(type="uri_folder", path=str(request.splits_dir)),
            "recipe": Input(type="uri_file", path=str(recipe_path)),
        },
        outputs={"adapter": Output(type="uri_folder"), "checkpoints": Output(type="uri_folder")},
        environment=settings.environment,
        compute=settings.compute,
        instance_count=settings.instance_count,
        distribution=distribution,
        environment_variables={PIPES_URL_VARIABLE: pipes_storage_url, "PYTHONUNBUFFERED": "1"},
        display_name=display_name,
        experiment_name="ftassets",
        tags=tags or {},
    )


def stage_code(directory: Path) -> Path:
    """``directory`` holding a fresh copy of the ``ftassets`` package this process runs (no bytecode caches): the
    job's code snapshot."""
    import ftassets

    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(
        Path(ftassets.__file__).resolve().parent,
        directory / "ftassets",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return directory


def write_recipe(request: Any, directory: Path) -> Path:
    path = Path(directory) / "recipe.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(request.recipe, indent=2))
    return path


def workspace_clients(azure: AzureFile) -> tuple[Any, Any, str]:
    """(``MLClient`` of the workspace, ``BlobServiceClient`` of the Pipes account, the account's URL for the job).

    The Pipes account URL may carry a SAS token (``https://<account>.blob.core.windows.net/?sv=...``) for a compute
    without a managed identity; it then travels to the job in its environment variables. Without one, both sides
    use azure-identity (DefaultAzureCredential; on Azure ML compute, the compute's managed identity)."""
    from ftassets.azure.clients import blob_service, ml_client

    settings = azure.azure_ml
    values = require_variables(
        [azure.subscription_id_env, azure.resource_group_env, settings.workspace_env, settings.pipes_storage_url_env],
        "training on Azure ML (configs/azure.yaml azure_ml)",
    )
    pipes_url = values[settings.pipes_storage_url_env]
    return ml_client(azure, values[settings.workspace_env]), blob_service(pipes_url), pipes_url


def download_adapter(ml_client: Any, job_name: str, out_dir: Path) -> None:
    """The job's ``adapter`` output into ``out_dir`` (azure-ai-ml puts it under named-outputs/adapter)."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        ml_client.jobs.download(job_name, output_name="adapter", download_path=scratch)
        source = next(Path(scratch).rglob("adapter"), None)
        if source is None or not source.is_dir():
            raise FileNotFoundError(f"Azure ML job {job_name}: no 'adapter' output to download")
        shutil.copytree(source, out_dir, dirs_exist_ok=True)
