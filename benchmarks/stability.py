"""How far the default entries' fine-tuned primary metric moves with the torch thread count and the seed.

For every thread count (``--threads``, default 1 and 2) the entries' bases are built under that many threads, then
every local entry of the experiment (``--experiment``, default ``default``) is trained with each seed (``--seeds``,
default 0 1 2: the recipe's ``seed``, which sets the adapter's initialisation and the order of batches), merged where
its method merges, and scored on the task's test split, exactly as the lineage does it (``prepare_base``,
``build_splits``, ``tokenize_for_recipe``, ``train``, the strategy's ``merge``, ``evaluate_variant``). Each base
build and each training runs in a fresh Python process of this script, so that nothing a run leaves in the process
(allocator, thread pools, RNG state) reaches the next. The task's data stays fixed, and so, by default, does the
base's own seed: a user who runs the same configuration gets the same data and base, and the question is how much
the fine-tune moves.

Another machine builds another base: floating-point sums differ with the CPU, so 1100 pre-training steps end in a
different model, as they do under another thread count. ``--base-seeds`` builds each embedded base with each of
those seeds too (the base's ``seed``: its generated corpus, initialisation and order of pre-training blocks), so
one machine measures how far the fine-tunes move with the base they start from; each run is then named
``base<seed>-threads<n>-seed<seed>``.

    python benchmarks/stability.py [--experiment default] [--task classification] [--threads 1 2] \
        [--seeds 0 1 2] [--base-seeds 0 1 2] [--entries tiny-lora ...] [--workdir DIR]

Every run prints one JSON line; the last line printed is one JSON object with, per entry, the mean, standard
deviation (across all runs), range and every run's value, and the largest range over the entries as ``max_range``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()


def _child(argv: list[str]) -> dict:
    """Run this script in a fresh process for one step; return the JSON object of its last line."""
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_base(config_dir: str | None, base: str, threads: int, out_dir: Path, base_seed: int | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ftassets.config import load_project_config
    from ftassets.models.bases import prepare_base

    project = load_project_config(config_dir)
    config = project.bases[base]
    if base_seed is not None:
        config = config.model_copy(update={"seed": base_seed})
    started = time.perf_counter()
    prepare_base(base, config, out_dir, log=lambda line: None)
    built = {"base": base, "threads": threads, "seconds": round(time.perf_counter() - started, 1)}
    return built if base_seed is None else {**built, "base_seed": base_seed}


def train_and_score(
    config_dir: str | None, task_name: str, entry: str, base_dir: Path, threads: int, seed: int
) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ftassets.backends.local_hf import LocalHFBackend
    from ftassets.config import load_project_config
    from ftassets.data.datasets import build_splits
    from ftassets.evaluation.evaluate import evaluate_variant
    from ftassets.training.splits import tokenize_for_recipe
    from ftassets.training.strategies import load_adapter_on_base, load_tokenizer, strategy_for
    from ftassets.training.trainer import train

    project = load_project_config(config_dir)
    task = project.tasks[task_name]
    recipe = project.recipe_of(entry).model_copy(update={"seed": seed})
    rows = build_splits(task)
    tokenized, _ = tokenize_for_recipe(load_tokenizer(base_dir), recipe, rows, task.config.system_prompt)
    settings = project.experiments.evaluation
    with tempfile.TemporaryDirectory(prefix="ftassets-stability-") as scratch:
        scratch = Path(scratch)
        result = train(base_dir, tokenized, recipe, scratch / "adapter", scratch / "checkpoints", "cpu", lambda _: None)
        if recipe.mergeable:
            strategy_for(recipe).merge(scratch / "adapter", base_dir, scratch / "merged")
            backend = LocalHFBackend(model_dir=scratch / "merged", device="cpu", batch_size=settings.batch_size)
        else:
            model, tokenizer = load_adapter_on_base(recipe, scratch / "adapter", base_dir, "cpu")
            backend = LocalHFBackend(model, tokenizer, batch_size=settings.batch_size)
        test = rows["test"][: settings.max_test_examples]
        scored = evaluate_variant(backend, task, test, entry, "finetuned", settings, point_only=True)
    return {
        "entry": entry,
        "threads": threads,
        "seed": seed,
        task.primary_metric: round(float(scored.row[task.primary_metric]), 4),
        "final_train_loss": round(result.final_train_loss, 4),
        "final_val_loss": None if result.final_val_loss is None else round(result.final_val_loss, 4),
        "train_seconds": result.wall_seconds,
    }


def run_name(run: dict) -> str:
    """``threads<n>-seed<seed>``, after ``base<seed>-`` where the run names its base's seed."""
    name = f"threads{run['threads']}-seed{run['seed']}"
    return name if run.get("base_seed") is None else f"base{run['base_seed']}-{name}"


def summarize(runs: list[dict], metric: str) -> dict:
    entries = {}
    for entry in dict.fromkeys(run["entry"] for run in runs):
        values = [run[metric] for run in runs if run["entry"] == entry]
        entries[entry] = {
            "mean": round(statistics.fmean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
            "range": round(max(values) - min(values), 4),
            "runs": len(values),
            "values": {run_name(run): run[metric] for run in runs if run["entry"] == entry},
        }
    return entries


def max_range(summary: dict) -> float:
    """The largest range of any entry: what the stability target bounds."""
    return max(entry["range"] for entry in summary.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-dir", default=None)
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--task", default=None, help="default: the experiment's first task")
    parser.add_argument("--entries", nargs="*", default=None, help="default: the experiment's locally trained entries")
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--base-seeds",
        nargs="*",
        type=int,
        default=None,
        help="build each embedded base with each of these seeds too (default: the configured seed only)",
    )
    parser.add_argument("--workdir", default=None, help="bases are built here (default: a temporary folder)")
    parser.add_argument("--_base", nargs=4, metavar=("BASE", "THREADS", "OUT", "BASE_SEED"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--_run", nargs=5, metavar=("TASK", "ENTRY", "BASE_DIR", "THREADS", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args._base:
        base, threads, out, base_seed = args._base
        seed = None if base_seed == "configured" else int(base_seed)
        print(json.dumps(build_base(args.config_dir, base, int(threads), Path(out), seed)))
        return 0
    if args._run:
        task, entry, base_dir, threads, seed = args._run
        print(json.dumps(train_and_score(args.config_dir, task, entry, Path(base_dir), int(threads), int(seed))))
        return 0

    from ftassets.artifacts import machine_facts, source_commit
    from ftassets.config import load_project_config

    project = load_project_config(args.config_dir)
    experiment = project.experiments.experiments[args.experiment]
    task = args.task or experiment.tasks[0]
    entries = args.entries or [
        name for name in experiment.models if (recipe := project.recipe_of(name)) is not None and not recipe.cloud
    ]
    common = ["--config-dir", args.config_dir] if args.config_dir else []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ftassets-stability-") as scratch:
        workdir = Path(args.workdir or scratch)
        runs = []
        for base_seed, threads in itertools.product(args.base_seeds or [None], args.threads):
            tag = f"t{threads}" if base_seed is None else f"t{threads}-b{base_seed}"
            seed_arg = "configured" if base_seed is None else str(base_seed)
            base_dirs = {base: workdir / f"{base}-{tag}" for base in map(project.base_of, entries)}
            for base, base_dir in base_dirs.items():
                print(json.dumps(_child([*common, "--_base", base, str(threads), str(base_dir), seed_arg])))
            for seed in args.seeds:
                for entry in entries:
                    base_dir = base_dirs[project.base_of(entry)]
                    run = _child([*common, "--_run", task, entry, str(base_dir), str(threads), str(seed)])
                    run = run if base_seed is None else {**run, "base_seed": base_seed}
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    metric = project.tasks[task].primary_metric
    summary = summarize(runs, metric)
    print(
        json.dumps(
            {
                "task": task,
                "metric": metric,
                "threads": args.threads,
                "seeds": args.seeds,
                **({"base_seeds": args.base_seeds} if args.base_seeds else {}),
                "entries": summary,
                "max_range": max_range(summary),
                "machine": {key: value for key, value in machine_facts().items() if key != "torch_threads"},
                "commit": source_commit(),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
