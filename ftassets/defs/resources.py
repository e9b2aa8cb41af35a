"""Resources: the project configuration, the artifact store, the trainer, and the table IO manager."""

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_azure.blob import AzureBlobStorageResource
from pydantic import PrivateAttr

from ftassets.artifacts import ArtifactStore
from ftassets.config import ProjectConfig, load_project_config


class ProjectResource(dg.ConfigurableResource):
    """The validated contents of ``configs/``."""

    config_dir: str

    _project: ProjectConfig | None = PrivateAttr(default=None)

    @property
    def project(self) -> ProjectConfig:
        if self._project is None:
            self._project = load_project_config(self.config_dir)
        return self._project


class ArtifactStoreResource(dg.ConfigurableResource):
    """Where artifacts live: ``<root>/artifacts/<asset>/<partition>``; local disk by default."""

    root: str

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


LAUNCHERS = ("in_process", "subprocess", "accelerate", "azureml")


class TrainerResource(dg.ConfigurableResource):
    """Runs training and local inference on the chosen device: ``auto`` picks cuda, then mps, then cpu.

    ``launcher`` picks where training runs: ``in_process`` (the Dagster step's process), ``subprocess``
    (a child process through Dagster Pipes, which streams its logs into the run and frees GPU memory
    when it exits) or ``accelerate`` (``accelerate launch`` with ``num_processes`` processes, the same
    entry point; DDP over NCCL on GPUs, gloo on CPU).
    """

    device: str = "auto"
    launcher: str = "in_process"
    num_processes: int = 1

    def resolved_device(self) -> str:
        from ftassets.devices import resolve_device

        return resolve_device(self.device)

    def train(
        self,
        context: dg.AssetExecutionContext,
        base_dir: Path,
        splits_dir: Path,
        recipe: Any,
        out_dir: Path,
        checkpoint_dir: Path,
        mlflow_run: Any = None,
    ):
        from ftassets.training.entry import RESULT_FILE, TrainingRequest, run
        from ftassets.training.trainer import TrainingResult

        if self.launcher not in LAUNCHERS:
            raise ValueError(f"resource trainer.launcher: unknown {self.launcher!r}; use one of {', '.join(LAUNCHERS)}")
        if self.num_processes < 1 or (self.num_processes > 1 and self.launcher != "accelerate"):
            raise ValueError(
                f"resource trainer.num_processes: {self.num_processes} needs launcher 'accelerate' and >= 1"
            )
        request = TrainingRequest(
            base_dir=str(base_dir),
            splits_dir=str(splits_dir),
            recipe=recipe.model_dump(mode="json"),
            out_dir=str(out_dir),
            checkpoint_dir=str(checkpoint_dir),
            device=self.resolved_device(),
            mlflow_tracking_uri=mlflow_run.tracking_uri if mlflow_run else None,
            mlflow_run_id=mlflow_run.run_id if mlflow_run else None,
        )
        if self.launcher == "in_process":
            return run(request, context.log.info)
        if self.launcher == "azureml":
            return self._train_on_azure_ml(context, request, Path(out_dir))
        request_path = request.write(Path(checkpoint_dir) / "request.json")
        (request_path.parent / RESULT_FILE).unlink(missing_ok=True)
        if self.launcher == "subprocess":
            command = [sys.executable, "-m", "ftassets.training.entry", str(request_path)]
        else:
            # accelerate's --cpu flag means one process; its torchrun launcher (--multi_gpu) starts N processes, which
            # join over gloo when the device is the CPU (see TrainingArguments.ddp_backend in the trainer).
            launch = ["--multi_gpu"] if self.num_processes > 1 else (["--cpu"] if request.device == "cpu" else [])
            command = [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--num_processes",
                str(self.num_processes),
                "--num_machines",
                "1",
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                *launch,
                "-m",
                "ftassets.training.entry",
                str(request_path),
            ]
        context.log.info(f"training in a child process: {' '.join(command)}")
        dg.PipesSubprocessClient().run(command=command, context=context).get_results()
        return TrainingResult(**json.loads((request_path.parent / RESULT_FILE).read_text()))

    def _train_on_azure_ml(self, context: dg.AssetExecutionContext, request: Any, out_dir: Path):
        """A command job on the workspace's compute (``azure_ml`` in azure.yaml), followed through Dagster Pipes: the
        job's
        log lines arrive in this run, its result as a custom message; the adapter is the job's downloaded output."""
        from dagster_azure.pipes import (
            PipesAzureBlobStorageContextInjector,
            PipesAzureBlobStorageMessageReader,
            PipesAzureMLClient,
        )

        from ftassets.azure.azureml import (
            download_adapter,
            stage_code,
            training_command,
            workspace_clients,
            write_recipe,
        )
        from ftassets.training.trainer import TrainingResult

        azure = load_project_config().azure
        ml_client, blob, pipes_url = workspace_clients(azure)
        settings = azure.azure_ml
        partition = str(context.partition_key) if context.has_partition_key else ""
        command = training_command(
            settings,
            request,
            write_recipe(request, Path(request.checkpoint_dir)),
            stage_code(Path(request.checkpoint_dir) / "azureml_code"),
            display_name=f"ftassets {partition or context.asset_key.to_user_string()}",
            pipes_storage_url=pipes_url,
            tags={"dagster.run_id": context.run_id, "dagster.partition": partition},
        )
        pipes = PipesAzureMLClient(
            client=ml_client,
            poll_interval_seconds=settings.poll_interval_s,
            context_injector=PipesAzureBlobStorageContextInjector(container=settings.pipes_container, client=blob),
            message_reader=PipesAzureBlobStorageMessageReader(
                container=settings.pipes_container, client=blob, interval=settings.poll_interval_s
            ),
        )
        invocation = pipes.run(context=context, command=command)
        job_name = str(
            getattr(invocation.metadata["AzureML Job Name"], "value", invocation.metadata["AzureML Job Name"])
        )
        download_adapter(ml_client, job_name, out_dir)
        [result] = invocation.get_custom_messages()[-1:] or [None]
        if result is None:
            raise RuntimeError(f"Azure ML job {job_name} finished without reporting its training result through Pipes")
        return TrainingResult(**result)


class TrackedRun:
    """An MLflow run in progress: ``ref`` for the trainer's step logger, ``finish`` for its final figures."""

    def __init__(self, tracker: Any, ref: Any) -> None:
        self.tracker, self.ref = tracker, ref
        self.metrics: dict[str, float] = {}
        self.artifact_dir: Path | None = None

    @property
    def run_id(self) -> str:
        return self.ref.run_id

    @property
    def tracking_uri(self) -> str:
        return self.ref.tracking_uri

    def finish(self, metrics: dict[str, float], artifact_dir: Path | None = None) -> None:
        self.metrics, self.artifact_dir = metrics, artifact_dir


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking: one run per adapter materialization (recipe as params, per-step and final metrics,
    the adapter as an artifact, Dagster run id and partition as tags). ``tracking_uri`` empty means a
    sqlite store under the project's home; ``enabled: false`` turns tracking off."""

    home: str
    tracking_uri: str = ""
    experiment: str = "ftassets"
    enabled: bool = True

    def tracker(self):
        from ftassets.tracking import MlflowTracker, default_tracking_uri

        if not self.enabled:
            return None
        return MlflowTracker(
            self.tracking_uri or default_tracking_uri(Path(self.home)),
            self.experiment,
            None if self.tracking_uri else Path(self.home) / "mlflow" / "artifacts",
        )

    @contextlib.contextmanager
    def tracked_run(
        self, context: dg.AssetExecutionContext, name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> Iterator[TrackedRun | None]:
        """One MLflow run around a training: started with the recipe as params and the Dagster run and partition
        as tags, marked FAILED (with the error) if the block raises, FINISHED with ``run.finish(...)``'s metrics
        and files otherwise. Yields None when tracking is off."""
        tracker = self.tracker()
        if tracker is None:
            yield None
            return
        tags = {"dagster.run_id": context.run_id, "dagster.partition": str(context.partition_key), **tags}
        run = TrackedRun(tracker, tracker.start_run(name, tags=tags, params=params))
        try:
            yield run
        except BaseException as error:
            tracker.fail(run.ref, f"{type(error).__name__}: {error}")
            raise
        tracker.finish(run.ref, run.metrics, run.artifact_dir)

    def log_report(self, context: dg.AssetExecutionContext, name: str, directory: Path, metrics: dict[str, float]):
        """One MLflow run with a report's files and its metrics, tagged with the Dagster run and partition."""
        tracker = self.tracker()
        if tracker is None:
            return None
        tags = {
            "dagster.run_id": context.run_id,
            "dagster.asset": context.asset_key.to_user_string(),
            "dagster.partition": context.partition_key if context.has_partition_key else "",
        }
        return tracker.log_files(name, tags, directory, metrics)


class LocalModelStoreResource(dg.ConfigurableResource):
    """The model store on a local or mounted folder (``ftassets/storage/local.py``)."""

    root: str

    @contextlib.contextmanager
    def store(self) -> Iterator[Any]:
        from ftassets.storage import LocalModelStore

        yield LocalModelStore(self.root)


class BlobModelStoreResource(dg.ConfigurableResource):
    """The model store in an Azure Blob Storage container, through dagster-azure's ``AzureBlobStorageResource``
    (key, SAS, DefaultAzureCredential or anonymous; ``ftassets/storage/blob.py``)."""

    blob_storage: AzureBlobStorageResource
    container: str = "ftassets-models"
    prefix: str = ""

    @contextlib.contextmanager
    def store(self) -> Iterator[Any]:
        from ftassets.storage import BlobModelStore

        with self.blob_storage.get_client() as service:
            yield BlobModelStore(service.get_container_client(self.container), self.prefix)


def model_store_from_env(home: Path) -> dg.ConfigurableResource:
    """Blob storage when ``$FTASSETS_MODEL_STORE_BLOB_URL`` names an account (https://<account>.blob.core.windows.net,
    DefaultAzureCredential; container ``$FTASSETS_MODEL_STORE_CONTAINER``), else ``<home>/model_store``."""
    import os

    from dagster_azure.blob import AzureBlobStorageDefaultCredential

    if url := os.environ.get("FTASSETS_MODEL_STORE_BLOB_URL"):
        return BlobModelStoreResource(
            blob_storage=AzureBlobStorageResource(account_url=url, credential=AzureBlobStorageDefaultCredential()),
            container=os.environ.get("FTASSETS_MODEL_STORE_CONTAINER", "ftassets-models"),
        )
    return LocalModelStoreResource(root=str(Path(home) / "model_store"))


class ParquetTableIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        obj.to_parquet(staging, index=False)
        staging.rename(path)

    def load_from_path(self, context: dg.InputContext, path) -> pd.DataFrame:
        return pd.read_parquet(path)


class TableIOManager(dg.ConfigurableIOManagerFactory):
    """Stores DataFrame assets (evaluation, comparison) as Parquet under ``base_dir``."""

    base_dir: str

    def create_io_manager(self, context) -> ParquetTableIOManager:
        from upath import UPath

        return ParquetTableIOManager(base_path=UPath(self.base_dir))
