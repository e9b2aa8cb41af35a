"""``ftassets run``: materialize comparisons with every missing or stale upstream partition.

One Dagster run cannot span assets with different partitions definitions, so the runner launches
runs in lineage order through Dagster's API, each recorded in the instance like a UI launch:
one run per task for ``dataset``, one per model entry for ``base_model``, one per (task, model)
cell for ``tokenized_splits -> adapter -> merged_model -> gguf_export -> evaluation``, and one per task for
``comparison``. A partition is skipped when its latest materialization and its artifact's
manifest both carry the fingerprint the configuration implies (``ftassets/lineage.py``); a cell
starts at its first stale asset. A failed step blocks only what depends on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from ftassets import lineage
from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import ConfigError, ProjectConfig
from ftassets.defs.assets import comparison_version
from ftassets.defs.partitions import cell_key, sync_model_partitions
from ftassets.evaluation.evaluate import markdown_table, summary_columns
from ftassets.export.variants import not_exportable_reason
from ftassets.training.recipes import is_cloud, is_mergeable

CELL_ASSETS = ("tokenized_splits", "adapter", "merged_model", "gguf_export", "evaluation")


@dataclass
class StepOutcome:
    assets: tuple[str, ...]
    partition: str
    status: str
    seconds: float = 0.0
    error: str | None = None


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

    def run(self, tasks: list[str], models: list[str], force: bool = False, forgetting: bool = True) -> RunReport:
        self._check_selection(tasks, models)
        sync_model_partitions(self.instance, self.project.models)
        report = RunReport()
        expected = {(t, m): lineage.expected_fingerprints(self.project, t, m) for t in tasks for m in models}
        broken: set[tuple[str, str]] = set()

        for task in tasks:
            version = lineage.fingerprint("dataset", lineage.dataset_params(self.project, task))
            if not self._step(
                report, ["dataset"], task, force or self._stale("dataset", task, version, ("dataset", task))
            ):
                broken |= {("dataset", task)}
        for model in models:
            base = self.project.base_of(model)
            version = expected[(tasks[0], model)]["base_model"]
            if not self._step(
                report, ["base_model"], model, force or self._stale("base_model", model, version, ("base_model", base))
            ):
                broken |= {("base_model", model)}
        for task in tasks:
            for model in models:
                key = cell_key(task, model)
                if ("dataset", task) in broken or ("base_model", model) in broken:
                    report.outcomes.append(
                        StepOutcome(CELL_ASSETS, key, "blocked", error="an upstream dataset or base_model failed")
                    )
                    continue
                stale = list(CELL_ASSETS) if force else self._stale_cell(task, model, expected[(task, model)])
                self._step(report, stale, key, bool(stale))
        compared = False
        for task in tasks:
            versions = self._evaluation_versions(task)
            stale = force or self._stale("comparison", task, comparison_version(versions), ("comparison", task))
            compared |= stale
            if self._step(report, ["comparison"], task, stale):
                report.comparisons[task] = self._load("comparison", task)
        if report.comparisons:
            self._step(report, ["leaderboard"], None, compared or self._latest_version("leaderboard", None) is None)
        if forgetting:
            self._forgetting(report, tasks, models, force)
        return report

    def _forgetting(self, report: RunReport, tasks: list[str], models: list[str], force: bool) -> None:
        """Each model entry's cross-task matrix, which needs every task's dataset (cheap to build)."""
        from ftassets.evaluation.runs import forgetting_version

        for task in self.project.tasks:
            if task not in tasks:
                version = lineage.fingerprint("dataset", lineage.dataset_params(self.project, task))
                self._step(report, ["dataset"], task, force or self._stale("dataset", task, version, ("dataset", task)))
        for model in models:
            if self.project.recipe_of(model) is None or any(
                o.partition == cell_key(t, model) for o in report.failed for t in tasks
            ):
                continue
            version = forgetting_version(self.project, self.store, model)
            self._step(report, ["forgetting"], model, force or self._stale("forgetting", model, version))

    def _load(self, asset: str, partition: str) -> pd.DataFrame:
        previous = logging.root.manager.disable
        logging.disable(logging.INFO if self.dagster_log_level != "DEBUG" else logging.NOTSET)
        try:
            return self.defs.load_asset_value(asset, partition_key=partition, instance=self.instance)
        finally:
            logging.disable(previous)

    def _check_selection(self, tasks: list[str], models: list[str]) -> None:
        for flag, chosen, known in (("--tasks", tasks, self.project.tasks), ("--models", models, self.project.models)):
            if unknown := [name for name in chosen if name not in known]:
                raise ConfigError(
                    f"{flag}: unknown {unknown}; defined in {self.project.config_dir}: {', '.join(known)}"
                )

    def _step(self, report: RunReport, assets: list[str], partition: str | None, needed: bool) -> bool:
        label = partition if partition is not None else "all"
        if not needed:
            report.outcomes.append(StepOutcome(tuple(assets), partition, "current"))
            self.log(f"  current  {'+'.join(assets)} [{label}]")
            return True
        self.log(f"  running  {'+'.join(assets)} [{label}]")
        started = time.perf_counter()
        keys = [dg.AssetKey(a) for a in assets]
        result = self.defs.resolve_implicit_job_def_def_for_assets(keys).execute_in_process(
            partition_key=partition,
            instance=self.instance,
            asset_selection=keys,
            raise_on_error=False,
            tags={"ftassets/launched_by": "ftassets run"},
            run_config={"loggers": {"console": {"config": {"log_level": self.dagster_log_level}}}},
        )
        seconds = time.perf_counter() - started
        if result.success:
            report.outcomes.append(StepOutcome(tuple(assets), partition, "ran", seconds))
            self.log(f"  done     {'+'.join(assets)} [{label}] in {seconds:.1f}s (run {result.run_id[:8]})")
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
        report.outcomes.append(StepOutcome(tuple(assets), partition, "failed", seconds, message))
        self.log(f"  FAILED   {'+'.join(assets)} [{label}] (run {result.run_id[:8]}): {message}")
        return False

    def _stale(self, asset: str, partition: str, version: str, artifact: tuple[str, ...] | None = None) -> bool:
        if self._latest_version(asset, partition) != version:
            return True
        if artifact is None:
            return False
        manifest = read_manifest(self.store.path(*artifact))
        return manifest is None or manifest.get("fingerprint") != version

    def _stale_cell(self, task: str, model: str, expected: dict[str, str]) -> list[str]:
        applicable = {
            "tokenized_splits": ("tokenized_splits", model, task),
            "adapter": ("adapter", model, task),
            "merged_model": ("merged_model", model, task),
            "gguf_export": ("gguf_export", model, task) if not_exportable_reason(self.project, model) is None else None,
            "evaluation": ("evaluation", model, task),
        }
        recipe = self.project.recipe_of(model)
        if recipe is None:
            applicable.update(tokenized_splits=None, adapter=None, merged_model=None)
        elif not is_mergeable(recipe):
            applicable["merged_model"] = None
        if is_cloud(recipe):
            applicable["tokenized_splits"] = None
        key = cell_key(task, model)
        for index, asset in enumerate(CELL_ASSETS):
            if self._stale(asset, key, expected[asset], applicable[asset]):
                return list(CELL_ASSETS[index:])
        return []

    def _evaluation_versions(self, task: str) -> dict[str, str]:
        versions = {}
        for model in self.project.models:
            if (version := self._latest_version("evaluation", cell_key(task, model))) is not None:
                versions[model] = version
        return versions

    def _latest_version(self, asset: str, partition: str) -> str | None:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition is not None else None
            ),
            limit=1,
        ).records
        return records[0].asset_materialization.tags.get("dagster/data_version") if records else None


def root_cause_message(error) -> str:
    """The innermost error's message: the user's problem, not Dagster's wrapping of it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def format_report(report: RunReport, project: ProjectConfig) -> str:
    lines = []
    for task, table in report.comparisons.items():
        missing = table.status == "missing"
        shown = table.loc[~missing, summary_columns(project.tasks[task], table)]
        lines += [
            f"\n## comparison: {task} (primary metric: {project.tasks[task].primary_metric})\n",
            markdown_table(shown),
        ]
        if missing.any():
            lines.append(f"not evaluated yet: {', '.join(dict.fromkeys(table.model[missing]))}")
    ran = len(report.ran)
    lines.append(
        f"\n{ran} step(s) ran, {sum(o.status == 'current' for o in report.outcomes)} current, {len(report.failed)} failed or blocked"
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
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(
            f"run {run.run_id} ({run.job_name}, {run.tags.get('dagster/partition', 'unpartitioned')}) marked failed: {message}"
        )
        released.append(run.run_id)
    return released


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
