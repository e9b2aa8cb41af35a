"""The ``ftassets`` command: ``ftassets run`` materializes the comparison and its stale lineage."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

from ftassets.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ftassets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize comparison with every missing or stale upstream partition")
    run.add_argument("--tasks", nargs="+", help="tasks (default: the default experiment's)")
    run.add_argument("--models", nargs="+", help="model entries (default: the default experiment's)")
    run.add_argument("--experiment", help="a named experiment in configs/experiments.yaml")
    run.add_argument("--force", action="store_true", help="re-materialize everything selected, current or not")
    run.add_argument(
        "--no-forgetting", action="store_true", help="skip the cross-task forgetting matrix of each model entry"
    )
    run.add_argument(
        "--plan",
        action="store_true",
        help="train nothing: print each cell's parameters, trainable parameters, estimated peak memory and tokens",
    )
    run.add_argument(
        "--device", default="cpu", help="with --plan: the device to estimate training memory for (cpu, cuda)"
    )
    run.add_argument("--verbose", action="store_true", help="show Dagster's INFO logs")
    run.add_argument("--config-dir", help="configuration folder (default: $FTASSETS_CONFIG_DIR or ./configs)")
    validate = commands.add_parser(
        "validate", help="load and cross-check configs/*.yaml and read each task's own data: counts, labels, problems"
    )
    validate.add_argument("--config-dir")
    commands.add_parser("recover", help="mark runs whose process was killed as failed and free their gpu pool slots")
    sync = commands.add_parser(
        "sync", help="record configs/*.yaml in the Dagster instance: model partitions and what an edit made stale"
    )
    sync.add_argument("--config-dir")
    incoming = commands.add_parser(
        "incoming", help="the drop folder incoming/<task>/: list its files, withdraw an accepted one from the dataset"
    )
    incoming_commands = incoming.add_subparsers(dest="incoming_command", required=True)
    listed = incoming_commands.add_parser("list", help="pending, accepted, rejected and withdrawn files of each task")
    listed.add_argument("--task", help="only this task")
    listed.add_argument("--config-dir")
    withdrawn = incoming_commands.add_parser(
        "withdraw", help="move an accepted file to incoming/<task>/withdrawn/: its rows leave the task's dataset"
    )
    withdrawn.add_argument("task")
    withdrawn.add_argument("file", help="the accepted file's name (as listed), or the name it was dropped as")
    withdrawn.add_argument("--config-dir")
    report = commands.add_parser(
        "report", help="the recorded comparisons as Markdown with where their figures came from (commit, machine)"
    )
    report.add_argument("--tasks", nargs="+", help="tasks (default: the default experiment's)")
    report.add_argument("--readme", help="rewrite the generated block of this Markdown file (e.g. README.md)")
    report.add_argument("--config-dir")
    serve = commands.add_parser(
        "serve",
        help="serve one cell (a model entry's fine-tune, base or GGUF on a task) as an OpenAI-compatible HTTP API",
    )
    serve.add_argument("model", help="the model entry (models.yaml)")
    serve.add_argument("--task", required=True, help="the task it was fine-tuned on")
    serve.add_argument(
        "--variant", default="finetuned", help="finetuned (default), base, or gguf-<quant> such as gguf-q8_0"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--queue", type=int, default=4, help="requests that may wait for the one generating (then 429)")
    serve.add_argument("--max-tokens", type=int, default=512, help="the most tokens one answer may ask for")
    serve.add_argument("--device", default="auto", help="torch device for transformers variants (auto, cpu, cuda)")
    serve.add_argument(
        "--allow-stale", action="store_true", help="serve the last materialized version of a cell that is not current"
    )
    serve.add_argument("--config-dir")
    playground = commands.add_parser(
        "playground",
        help="a Gradio app: evaluated variants of a task answer side by side; where their stored answers disagree",
    )
    playground.add_argument("--host", default="127.0.0.1")
    playground.add_argument("--port", type=int, default=7860)
    playground.add_argument("--device", default="auto", help="torch device for transformers variants (auto, cpu, cuda)")
    playground.add_argument(
        "--allow-stale", action="store_true", help="offer the last materialized version of cells that are not current"
    )
    playground.add_argument("--config-dir")
    args = parser.parse_args(argv)
    if getattr(args, "config_dir", None):
        os.environ["FTASSETS_CONFIG_DIR"] = str(Path(args.config_dir).resolve())
    try:
        return {
            "validate": _validate,
            "recover": _recover,
            "sync": _sync,
            "incoming": lambda: _incoming(args),
            "serve": lambda: _serve(args),
            "playground": lambda: _playground(args),
            "report": lambda: _report(args),
        }.get(args.command, lambda: _run(args))()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


def _validate() -> int:
    """Load and cross-check the configuration, then read every task's own data as the dataset asset would (without
    writing or training, and without calling a teacher LLM): row counts per split, labels, and every problem."""
    from ftassets.config import load_project_config

    project = load_project_config()
    repeats = sum(len(members) - 1 for members in project.repeat_groups.values())
    print(
        f"{project.config_dir}: {len(project.tasks)} tasks, {len(project.models)} model entries"
        f"{f' ({repeats} of them seed repeats)' if repeats else ''}, {len(project.recipes)} recipes: valid"
    )
    failed = 0
    for name, task in project.tasks.items():
        source = task.config.source
        if source is None:
            continue
        if source.teacher is not None:
            teacher = source.teacher
            print(
                f"  {name}: teacher {teacher.base!r}, {teacher.count} rows, budget ${teacher.budget_usd:g} (not called)"
            )
            continue
        from ftassets.data.user_data import build_splits_from_source

        try:
            with tempfile.TemporaryDirectory() as cache:
                rows, facts = build_splits_from_source(project, task, Path(cache), lambda line: None)
        except ValueError as error:
            failed += 1
            print(f"  {name}: INVALID\n    " + str(error).replace("\n", "\n    "))
            continue
        counts = ", ".join(f"{split} {len(split_rows)}" for split, split_rows in rows.items())
        labels = f"; labels {facts['labels']}" if facts.get("labels") else ""
        dropped = f"; {facts['duplicates_removed']} duplicate(s) removed" if facts["duplicates_removed"] else ""
        print(f"  {name}: {facts['schema']} rows from {source.path or source.files}: {counts}{labels}{dropped}")
    return 1 if failed else 0


def _incoming(args: argparse.Namespace) -> int:
    """``incoming list``: each task's drop-folder files by state (a rejected file with its reason's first lines, and
    the files the sensor ignores); ``incoming withdraw``: an accepted file taken back out of the dataset."""
    from ftassets.config import load_project_config
    from ftassets.data.incoming import IncomingError, ignored_files, incoming_root, listing, withdraw

    project = load_project_config()
    try:
        if args.incoming_command == "withdraw":
            moved = withdraw(project, args.task, args.file)
            print(
                f"withdrew {args.file} from task {args.task!r}: moved to {moved}; its rows leave the dataset, so the "
                f"task's lineage is stale and `ftassets run` rebuilds it"
            )
            return 0
        folders = listing(project, args.task)
    except IncomingError as error:
        print(f"ftassets incoming: {error}", file=sys.stderr)
        return 1
    print(f"{incoming_root(project)}:")
    for task, files in folders.items():
        print(f"  {task}: " + ", ".join(f"{len(paths)} {state}" for state, paths in files.items()))
        for state, paths in files.items():
            for path in paths:
                print(f"    {state:<9} {path.name}")
                reason = path.with_name(path.name + ".reason.txt")
                if state == "rejected" and reason.exists():
                    print("              " + "\n              ".join(reason.read_text().splitlines()[:3]))
    for path, why in ignored_files(project).items():
        if args.task is None or path.startswith(f"{args.task}/"):
            print(f"  ignored   {path}: {why}")
    return 0


def _recover() -> int:
    ensure_dagster_home()
    import dagster as dg

    from ftassets.runner import release_orphaned_runs

    released = release_orphaned_runs(dg.DagsterInstance.get())
    print(f"{len(released)} orphaned run(s) released")
    return 0


def _sync() -> int:
    ensure_dagster_home()
    import dagster as dg

    from ftassets.config import load_project_config
    from ftassets.defs.observe import observe_configuration

    project = load_project_config()
    changed = observe_configuration(dg.DagsterInstance.get(), project)
    print(
        f"configuration recorded in {os.environ['DAGSTER_HOME']}: {len(project.tasks)} tasks, "
        f"{len(project.models)} model entries ({', '.join(project.models)})"
    )
    for asset, partitions in changed.items():
        print(f"  changed config/{asset}: {', '.join(sorted(partitions))}")
    if not changed:
        print("  no configuration change since the last observation")
    return 0


def recorded_lineage():
    """A ``PipelineRunner`` on the configured instance and store, with the configuration observed first (as
    ``ftassets sync`` does), so that its ``needs`` sees an edit made since the last run: what ``ftassets report`` and
    ``ftassets serve`` read the recorded lineage through."""
    ensure_dagster_home()
    logging.getLogger("dagster").setLevel(logging.WARNING)
    import dagster as dg

    from ftassets.artifacts import ArtifactStore, default_home
    from ftassets.config import load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.defs.observe import observe_configuration
    from ftassets.runner import PipelineRunner

    project = load_project_config()
    instance = dg.DagsterInstance.get()
    observe_configuration(instance, project, lambda line: None)
    defs = build_definitions(project.config_dir, default_home())
    return PipelineRunner(defs, project, ArtifactStore(default_home()), instance)


def _report(args: argparse.Namespace) -> int:
    """Print (or write into ``--readme``) the current recorded comparison of each task; a comparison that is not
    current is refused, since its table would not be what the configuration now gives."""
    from ftassets.results import replace_block, results_markdown

    runner = recorded_lineage()
    tasks = args.tasks or runner.project.default_selection()[0]
    runner.project.check_selection(tasks, [])
    stale = {task: why for task in tasks if (why := runner.needs("comparison", task)) is not None}
    if stale:
        for task, why in stale.items():
            print(f"ftassets report: comparison [{task}] is not current ({why}); run `ftassets run --tasks {task}`")
        return 1
    markdown = results_markdown(runner.project, runner.store, tasks)
    if not args.readme:
        print(markdown)
        return 0
    path = Path(args.readme)
    try:
        path.write_text(replace_block(path.read_text(), markdown, path))
    except (OSError, ValueError) as error:
        print(f"ftassets report: {error}", file=sys.stderr)
        return 1
    print(f"wrote the results of {', '.join(tasks)} into {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Resolve the cell's artifact through the lineage (current, or ``--allow-stale``), load it once, and serve it
    until interrupted."""
    from ftassets.serving.resolve import NotServable, load_engine, resolve_variant
    from ftassets.serving.server import Limits, create_app

    if args.queue < 0 or args.max_tokens < 1:
        raise ConfigError(f"--queue must be 0 or more and --max-tokens 1 or more (got {args.queue}, {args.max_tokens})")
    runner = recorded_lineage()
    try:
        served = resolve_variant(runner, args.task, args.model, args.variant, allow_stale=args.allow_stale)
    except NotServable as error:
        print(f"ftassets serve: {error}", file=sys.stderr)
        return 1
    if served.stale:
        print(f"warning: serving a version that is not current ({served.stale})", file=sys.stderr)
    engine = load_engine(runner, served, device=args.device)
    app = create_app(
        engine,
        served.data_version,
        Limits(max_tokens=args.max_tokens, queue=args.queue),
        description=f"{served.asset} [{served.task}, {served.model}] at {served.path}",
    )
    _say(
        f"serving {served.served_name} ({served.asset}, data version {served.data_version}, {served.path}) at "
        f"http://{args.host}:{args.port}/v1; model name {served.served_name!r}; context {engine.context_length} "
        f"tokens; Ctrl-C stops"
    )
    sys.stdout.flush()
    import uvicorn

    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        engine.close()
    return 0


def _playground(args: argparse.Namespace) -> int:
    """Open the playground on the recorded lineage until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ftassets.serving.playground import Playground
    from ftassets.serving.playground_app import launch

    playground = Playground(recorded_lineage(), device=args.device, allow_stale=args.allow_stale)
    tasks = playground.tasks()
    if not tasks:
        print("ftassets playground: nothing is evaluated yet; run `ftassets run` first", file=sys.stderr)
        return 1
    _say(f"playground at http://{args.host}:{args.port} (tasks: {', '.join(tasks)}); Ctrl-C stops")
    sys.stdout.flush()
    try:
        launch(playground, args.host, args.port, block=True)
    finally:
        playground.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.plan:
        return _plan(args)
    ensure_dagster_home()
    if not args.verbose:
        logging.getLogger("dagster").setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        warnings.simplefilter("ignore", FutureWarning)
    import dagster as dg

    from ftassets.artifacts import ArtifactStore, default_home
    from ftassets.config import load_project_config
    from ftassets.runner import PipelineRunner, format_report, release_orphaned_runs

    project = load_project_config()
    tasks, models = _selection(project, args)
    if not args.models:
        from ftassets.azure.settings import without_missing_credentials

        models = without_missing_credentials(project, models, _say)

    from ftassets.definitions import build_definitions

    defs = build_definitions(project.config_dir, default_home())
    instance = dg.DagsterInstance.get()
    _say(f"ftassets run: tasks {', '.join(tasks)}; models {', '.join(models)}")
    _say(f"  instance {os.environ['DAGSTER_HOME']}, artifacts {default_home()}")
    release_orphaned_runs(instance)
    runner = PipelineRunner(
        defs, project, ArtifactStore(default_home()), instance, dagster_log_level="INFO" if args.verbose else "WARNING"
    )
    report = runner.run(tasks, models, force=args.force, forgetting=not args.no_forgetting)
    print(format_report(report, project, ArtifactStore(default_home()), verbose=args.verbose))
    return 1 if report.failed or len(report.comparisons) < len(tasks) else 0


def _selection(project, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The tasks and model entries ``--tasks``, ``--models`` and ``--experiment`` select (default: the default
    experiment's), an entry's seed repeats with it."""
    if args.experiment:
        if args.experiment not in project.experiments.experiments:
            raise ConfigError(
                f"--experiment: unknown {args.experiment!r}; defined: {', '.join(project.experiments.experiments)}"
            )
        experiment = project.experiments.experiments[args.experiment]
        tasks, models = list(experiment.tasks), list(experiment.models)
    else:
        tasks, models = project.default_selection()
    tasks, models = args.tasks or tasks, args.models or models
    project.check_selection(tasks, models)
    return tasks, project.with_repeats(models)


def _plan(args: argparse.Namespace) -> int:
    """``ftassets run --plan``: what each selected cell would train, sized without training or loading weights."""
    warnings.simplefilter("ignore", FutureWarning)
    from ftassets.artifacts import ArtifactStore, default_home
    from ftassets.config import load_project_config
    from ftassets.sizing import format_sizes, plan_note, size_cells

    project = load_project_config()
    tasks, models = _selection(project, args)
    try:
        sizes = size_cells(project, ArtifactStore(default_home()), tasks, models, device=args.device)
    except ValueError as error:
        print(f"ftassets run --plan: {error}", file=sys.stderr)
        return 1
    _say(f"ftassets run --plan: tasks {', '.join(tasks)}; models {', '.join(models)}; nothing is trained")
    print(format_sizes(sizes))
    _say(plan_note())
    return 0


def _say(line: str) -> None:
    """A terminal line within 120 columns, continued on indented lines."""
    print(textwrap.fill(line, 120, subsequent_indent="    ", break_on_hyphens=False, break_long_words=False))


def ensure_dagster_home() -> Path:
    """$DAGSTER_HOME (``ftassets/home.py``: set, or a one-line error), created with the project's dagster.yaml if it
    has none and checked writable; exported absolute for the Dagster instance."""
    from ftassets.home import configured_dagster_home, prepare_dagster_home

    home = configured_dagster_home()
    project_configs = (Path.cwd() / "dagster.yaml", Path(__file__).resolve().parents[1] / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(home, project_configs))
    return home


if __name__ == "__main__":
    sys.exit(main())
