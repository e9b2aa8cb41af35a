"""The code location: ``dagster dev``, ``dagster asset materialize -m ftassets.definitions`` and the UI load
``defs``. Its runs refuse to start on an instance that keeps nothing (``ftassets/home.py``): with DAGSTER_HOME
unset, Dagster's CLIs record into a temporary home deleted on exit."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from ftassets.artifacts import default_home
from ftassets.config import load_project_config
from ftassets.defs.assets import build_assets
from ftassets.defs.azure import azure_teardown
from ftassets.defs.checks import build_checks
from ftassets.defs.loggers import progress_logger
from ftassets.defs.partitions import build_partitions
from ftassets.defs.publishing import publish_to_model_store
from ftassets.defs.resources import (
    ArtifactStoreResource,
    MlflowResource,
    ProjectResource,
    TableIOManager,
    TrainerResource,
    model_store_from_env,
)
from ftassets.defs.schedules import build_automation_sensor, build_schedules
from ftassets.defs.sensors import build_sensors
from ftassets.home import not_set_message

# Multi-to-single-dimension partition mappings and user data versions are beta in Dagster 1.13; the
# graph relies on both on purpose (see README), so their warnings would only be noise in every run.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


@dg.executor(
    name="configured_home_executor",
    config_schema=dg.multi_or_in_process_executor.config_schema,
    requirements=dg.multi_or_in_process_executor.get_requirements,
)
def configured_home_executor(init_context: dg.InitExecutorContext):
    """Dagster's default executor, once the run's instance is the configured $DAGSTER_HOME."""
    if init_context.instance.is_ephemeral or not os.environ.get("DAGSTER_HOME"):
        raise dg.DagsterInvariantViolationError(
            not_set_message("this run records into a temporary Dagster instance, deleted when the command exits")
        )
    return dg.multi_or_in_process_executor.executor_creation_fn(init_context)


def build_definitions(config_dir: Path | str | None = None, home: Path | str | None = None) -> dg.Definitions:
    project = load_project_config(config_dir)
    home = Path(home) if home else default_home()
    partitions = build_partitions(project)
    schedules, refresh_sensors, jobs = build_schedules(partitions)
    return dg.Definitions(
        assets=build_assets(partitions),
        asset_checks=build_checks(partitions),
        sensors=[*build_sensors(partitions), *refresh_sensors, build_automation_sensor()],
        schedules=schedules,
        jobs=[*jobs, azure_teardown, publish_to_model_store],
        loggers={**dg.default_loggers(), "progress": progress_logger},
        executor=configured_home_executor,
        resources={
            "project": ProjectResource(config_dir=str(project.config_dir)),
            "artifacts": ArtifactStoreResource(root=str(home)),
            "trainer": TrainerResource(
                device=os.environ.get("FTASSETS_DEVICE", "auto"),
                launcher=os.environ.get("FTASSETS_TRAINER_LAUNCHER", "in_process"),
                num_processes=int(os.environ.get("FTASSETS_TRAINER_PROCESSES", "1")),
            ),
            "mlflow": MlflowResource(
                home=str(home),
                tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""),
                enabled=os.environ.get("FTASSETS_MLFLOW", "1") != "0",
            ),
            "table_io_manager": TableIOManager(base_dir=str(home / "tables")),
            "model_store": model_store_from_env(home),
        },
    )


defs = build_definitions()
