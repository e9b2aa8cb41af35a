"""Resources: the project configuration, the artifact store, the trainer, and the table IO manager."""


from pathlib import Path
from typing import Any, Callable

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


class TrainerResource(dg.ConfigurableResource):
    """Runs training and local inference on the chosen device: ``auto`` picks cuda, then mps, then cpu."""

    device: str = "auto"

    def resolved_device(self) -> str:
        from ftassets.devices import resolve_device

        return resolve_device(self.device)

    def train(self, base_dir: Path, splits: dict, recipe: Any, out_dir: Path, checkpoint_dir: Path, log: Callable[[str], None]):
        from ftassets.training.trainer import train

        return train(base_dir, splits, recipe, out_dir, checkpoint_dir, device=self.resolved_device(), log=log)


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
