"""Resources: the project configuration, the artifact store, the trainer, and the table IO manager."""


import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
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


LAUNCHERS = ("in_process", "subprocess", "accelerate")


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

    def train(self, context: dg.AssetExecutionContext, base_dir: Path, splits_dir: Path, recipe: Any, out_dir: Path,
              checkpoint_dir: Path, mlflow_run: Any = None):
        from ftassets.training.entry import RESULT_FILE, TrainingRequest, run
        from ftassets.training.trainer import TrainingResult

        if self.launcher not in LAUNCHERS:
            raise ValueError(f"resource trainer.launcher: unknown {self.launcher!r}; use one of {', '.join(LAUNCHERS)}")
        if self.num_processes < 1 or (self.num_processes > 1 and self.launcher != "accelerate"):
            raise ValueError(f"resource trainer.num_processes: {self.num_processes} needs launcher 'accelerate' and >= 1")
        request = TrainingRequest(
            base_dir=str(base_dir), splits_dir=str(splits_dir), recipe=recipe.model_dump(mode="json"), out_dir=str(out_dir),
            checkpoint_dir=str(checkpoint_dir), device=self.resolved_device(),
            mlflow_tracking_uri=mlflow_run.tracking_uri if mlflow_run else None, mlflow_run_id=mlflow_run.run_id if mlflow_run else None,
        )
        if self.launcher == "in_process":
            return run(request, context.log.info)
        request_path = request.write(Path(checkpoint_dir) / "request.json")
        (request_path.parent / RESULT_FILE).unlink(missing_ok=True)
        if self.launcher == "subprocess":
            command = [sys.executable, "-m", "ftassets.training.entry", str(request_path)]
        else:
            # accelerate's --cpu flag means one process; its torchrun launcher (--multi_gpu) starts N processes, which
            # join over gloo when the device is the CPU (see TrainingArguments.ddp_backend in the trainer).
            launch = ["--multi_gpu"] if self.num_processes > 1 else (["--cpu"] if request.device == "cpu" else [])
            command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(self.num_processes),
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *launch,
                       "-m", "ftassets.training.entry", str(request_path)]
        context.log.info(f"training in a child process: {' '.join(command)}")
        dg.PipesSubprocessClient().run(command=command, context=context).get_results()
        return TrainingResult(**json.loads((request_path.parent / RESULT_FILE).read_text()))


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
        return MlflowTracker(self.tracking_uri or default_tracking_uri(Path(self.home)), self.experiment,
                             None if self.tracking_uri else Path(self.home) / "mlflow" / "artifacts")


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
