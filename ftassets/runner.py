"""``ftassets run``: observe the configuration, then materialize what Dagster reports missing or stale.

One Dagster run cannot span assets with different partitions definitions, so the runner launches runs in
lineage order through Dagster's API, each recorded in the instance like a UI launch: ``dataset`` per task,
``base_model`` per model entry, each asset of a (task, model) cell, ``comparison`` per task, the
``leaderboard``, and each entry's ``forgetting`` matrix. Before each, it asks Dagster's own stale status
(``ftassets/defs/staleness.py``) whether the partition is missing or stale, so it decides exactly as the
UI shows; the configuration was observed first (``ftassets/defs/observe.py``), so a YAML edit is already a
stale cause. Partitions where an asset does not apply (the cell plan, ``ftassets/plan.py``) are skipped.
A failed step blocks only what depends on it. Staging folders that killed runs left in the store are removed
first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from ftassets import plan
from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import ProjectConfig
from ftassets.defs.observe import observe_configuration
from ftassets.defs.partitions import cell_key
from ftassets.defs.staleness import Staleness

CELL_ASSETS = plan.CELL_ASSETS
ARTIFACT_PARTS = {"dataset": 1, "base_model": 1, "comparison": 1}


@dataclass
class StepOutcome:
    assets: tuple[str, ...]
    partition: str | None
    status: str
    seconds: float = 0.0
    error: str | None = None
    reason: str | None = None


@dataclass
class RunReport:
    outcomes: list[StepOutcome] = field(default_factory=list)
    comparisons: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def failed(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "blocked")]

    @property
    def ran(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.status == "ran"]


class PipelineRunner:
    def __init__(
        self,
        defs: dg.Definitions,
        project: ProjectConfig,
        store: ArtifactStore,
        instance: dg.DagsterInstance,
        log: Callable[[str], None] = print,
        dagster_log_level: str = "WARNING",
    ):
        self.defs, self.project, self.store, self.instance, self.log = defs, project, store, instance, log
        self.dagster_log_level = dagster_log_level
        self.staleness = Staleness(instance, defs.resolve_asset_graph())

    def run(self, tasks: list[str], models: list[str], force: bool = False, forgetting: bool = True) -> RunReport:
        """Build what the selection needs, an entry's seed repeats with it."""
        self.project.check_selection(tasks, models)
        models = self.project.with_repeats(models)
        for action, path in self.store.sweep_staging():
            why = "left by a killed run" if action == "removed" else "a killed run had set it aside unreplaced"
            self.log(f"  {action:<8} {path} ({why})")
        observe_configuration(self.instance, self.project, self.log)
        report = RunReport()
        failed_roots = set()
        for task in tasks:
            if not self._step(report, "dataset", task, force):
                failed_roots.add(("dataset", task))
        for model in models:
            if not self._step(report, "base_model", model, force):
                failed_roots.add(("base_model", model))
        for task in tasks:
            for model in models:
                key = cell_key(task, model)
                if ("dataset", task) in failed_roots or ("base_model", model) in failed_roots:
                    error = "an upstream dataset or base_model failed"
                    report.outcomes.append(StepOutcome(CELL_ASSETS, str(key), "blocked", error=error))
                    continue
                steps = plan.cell_plan(self.project, task, model)
                for asset in CELL_ASSETS:
                    if steps[asset].applies and not self._step(report, asset, key, force):
                        break
        for task in tasks:
            if self._step(report, "comparison", task, force):
                report.comparisons[task] = self._load("comparison", task)
        if report.comparisons:
            self._step(report, "leaderboard", None, force)
        if forgetting:
            self._forgetting(report, tasks, models, force)
        return report

    def _forgetting(self, report: RunReport, tasks: list[str], models: list[str], force: bool) -> None:
        """Each model entry's cross-task matrix, which needs every task's dataset (cheap to build)."""
        for task in self.project.tasks:
            if task not in tasks:
                self._step(report, "dataset", task, force)
        failed = {o.partition for o in report.failed}
        for model in models:
            if not plan.forgetting_step(self.project, model).applies:
                continue
            if any(str(cell_key(t, model)) in failed for t in tasks):
                continue
            self._step(report, "forgetting", model, force)

    def _load(self, asset: str, partition: str) -> pd.DataFrame:
        previous = logging.root.manager.disable
        logging.disable(logging.INFO if self.dagster_log_level != "DEBUG" else logging.NOTSET)
        try:
            return self.defs.load_asset_value(asset, partition_key=partition, instance=self.instance)
        finally:
            logging.disable(previous)

    def materialize(self, asset: str, partition, force: bool = False) -> StepOutcome:
        """One asset partition, if Dagster (or its artifact on disk) says it needs building: the outcome."""
        report = RunReport()
        self._step(report, asset, partition, force)
        return report.outcomes[0]

    def needs(self, asset: str, partition) -> str | None:
        """Why ``asset[partition]`` must be built: Dagster's stale status, or an artifact that is not the one
        Dagster recorded (deleted, replaced behind its back, or a file of it missing, truncated or changed against
        its manifest). None when it is current."""
        if (why := self.staleness.why(asset, partition)) is not None:
            return why
        if asset in ("leaderboard", "forgetting"):
            return None
        recorded = self.recorded_version(asset, partition)
        manifest = read_manifest(self.store.path(asset, *self._artifact_parts(asset, partition)))
        if not self._applies(asset, partition):
            return None
        if manifest is None:
            return "its artifact is missing"
        if manifest.get("fingerprint") != recorded:
            return "its artifact is not the one Dagster recorded"
        return self.store.damage(asset, *self._artifact_parts(asset, partition))

    def _applies(self, asset: str, partition) -> bool:
        if isinstance(partition, dg.MultiPartitionKey):
            keys = partition.keys_by_dimension
            return plan.cell_plan(self.project, keys["task"], keys["model"])[asset].applies
        return True

    def _artifact_parts(self, asset: str, partition) -> tuple[str, ...]:
        if isinstance(partition, dg.MultiPartitionKey):
            keys = partition.keys_by_dimension
            return keys["model"], keys["task"]
        if asset == "base_model":
            return (self.project.base_of(partition),)
        return (partition,)

    def _step(self, report: RunReport, asset: str, partition, force: bool) -> bool:
        label = str(partition) if partition is not None else "all"
        why = "forced" if force else self.needs(asset, partition)
        if why is None:
            report.outcomes.append(StepOutcome((asset,), label, "current"))
            self.log(f"  current  {asset} [{label}]")
            return True
        self.log(f"  running  {asset} [{label}] ({why})")
        started = time.perf_counter()
        key = dg.AssetKey(asset)
        result = self.defs.resolve_implicit_job_def_def_for_assets([key]).execute_in_process(
            partition_key=partition,
            instance=self.instance,
            asset_selection=[key],
            raise_on_error=False,
            tags={"ftassets/launched_by": "ftassets run"},
            run_config={"loggers": self._loggers()},
        )
        seconds = time.perf_counter() - started
        if result.success:
            report.outcomes.append(StepOutcome((asset,), label, "ran", seconds, reason=why))
            self.log(f"  done     {asset} [{label}] in {seconds:.1f}s (run {result.run_id[:8]})")
            return True
        errors = [
            root_cause_message(e.step_failure_data.error)
            for e in result.get_step_failure_events()
            if e.step_failure_data.error
        ]
        failed_checks = [
            f"check {e.asset_check_evaluation_data.check_name} failed: {e.asset_check_evaluation_data.description}"
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
        ]
        message = " | ".join(errors + failed_checks) or "run failed; see the run's logs in the Dagster UI"
        report.outcomes.append(StepOutcome((asset,), label, "failed", seconds, message, why))
        self.log(f"  FAILED   {asset} [{label}] (run {result.run_id[:8]}): {message}")
        return False

    def _loggers(self) -> dict:
        """Dagster's console logger at INFO or DEBUG (``--verbose``: every event, a failed step's stack trace
        included); else the steps' own messages only, a failure being the one line ``_step`` prints (its trace
        stays in the run's log in the instance)."""
        if self.dagster_log_level in ("INFO", "DEBUG"):
            return {"console": {"config": {"log_level": self.dagster_log_level}}}
        return {"progress": {}}

    def recorded_version(self, asset: str, partition) -> str | None:
        """The data version of ``asset[partition]``'s latest materialization (None if it has none)."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)] if partition is not None else None
            ),
            limit=1,
        ).records
        return records[0].asset_materialization.tags.get("dagster/data_version") if records else None


def root_cause_message(error) -> str:
    """The innermost error's message: the user's problem, not Dagster's wrapping of it. The class name is left out
    where the error is ftassets' own or a ``dg.Failure`` (their messages are written to be read alone)."""
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    where, _, text = message.partition(": ")
    own = where.startswith("ftassets.") or where == "dagster._core.definitions.events.Failure"
    return text if own and where.endswith(f".{error.cls_name}") else message


def format_report(report: RunReport, project: ProjectConfig, store: ArtifactStore, verbose: bool = False) -> str:
    """Each compared task's summary (``ftassets/summary.py``), then what ran and what failed."""
    from ftassets.summary import format_summary

    tasks = list(report.comparisons)
    summary = format_summary(
        report.comparisons,
        {task: project.tasks[task].primary_metric for task in tasks},
        {task: str(store.path("comparison", task) / "report.html") for task in tasks},
        verbose=verbose,
    )
    lines = [summary] if summary else []
    lines.append(
        f"\n{len(report.ran)} step(s) ran, {sum(o.status == 'current' for o in report.outcomes)} current, "
        f"{len(report.failed)} failed or blocked"
    )
    for outcome in report.failed:
        lines.append(f"  {outcome.status}: {'+'.join(outcome.assets)} [{outcome.partition}]: {outcome.error}")
    return "\n".join(lines)


def release_orphaned_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Mark failed the runs whose process on this machine is gone (killed), and free their pool slots.

    A run killed with SIGKILL stays "started" and keeps its ``gpu`` pool slot, so every later training
    run would wait for that slot forever. The daemon's run monitoring frees slots of finished runs
    (``dagster.yaml``), but nothing marks a killed CLI run finished; this does, for local processes.
    """
    released = []
    for record in instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    ):
        run = record.dagster_run
        pids = {
            int(event.event_log_entry.dagster_event.engine_event_data.metadata["pid"].value)
            for event in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
            if "pid" in (event.event_log_entry.dagster_event.engine_event_data.metadata or {})
        }
        if not pids or any(_process_alive(pid) for pid in pids):
            continue
        message = f"its process (pid {', '.join(map(str, sorted(pids)))}) is gone: killed or crashed"
        end_run(instance, run, message)
        log(
            f"run {run.run_id} ({run.job_name}, {run.tags.get('dagster/partition', 'unpartitioned')}) "
            f"marked failed: {message}"
        )
        released.append(run.run_id)
    return released


def end_run(instance: dg.DagsterInstance, run: dg.DagsterRun, message: str) -> None:
    """Mark ``run`` failed with ``message`` and free the pool slots it holds, for a run that will never end itself."""
    instance.report_run_failed(run, message)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
