"""How long README command (1)'s `ftassets run` takes on the default experiment, from nothing and then again.

Runs ``python -m ftassets run`` twice in a fresh working folder with its own ``DAGSTER_HOME`` and artifact home and
the checkout's ``configs/``: the first run builds everything (dataset, embedded base, the four fine-tunes, their
merges, GGUF exports, evaluations, the comparison, the leaderboard and each entry's forgetting matrix); the second
must find all of it current. ``--checkout DIR`` times another checkout's code (its ``ftassets`` package and configs)
with this interpreter's libraries, and ``--baseline DIR`` times a second checkout after it in the same session, so
that a change is measured against its parent on the same machine (``ratio``: this checkout's wall time over the
baseline's). Machine speed drifts, so ``--rounds N`` alternates the two and reports medians.

    python benchmarks/default_run.py [--checkout DIR] [--baseline DIR] [--rounds 1] [--workdir DIR]

Every run prints one JSON line; the last line is one JSON object with each checkout's wall and CPU seconds (the
``ftassets`` process and everything it started), its steps and the seconds its steps took per asset, the second
run's wall time and steps, the commit, the machine, and ``target_s``: issue 18's "about 4 minutes".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 240
STEP_LINE = re.compile(r"^\s+(done|current|FAILED)\s+(\S+)(?: \[(.*?)\])?(?: in ([\d.]+)s)?")


def parse_steps(output: str) -> list[dict]:
    """The step lines of ``ftassets run``'s output: outcome, asset, partition and, for a step that ran, its seconds."""
    steps = []
    for line in output.splitlines():
        match = STEP_LINE.match(line)
        if match:
            outcome, asset, partition, seconds = match.groups()
            steps.append(
                {
                    "outcome": outcome,
                    "asset": asset,
                    "partition": partition,
                    "seconds": float(seconds) if seconds else None,
                }
            )
    return steps


def seconds_by_asset(steps: list[dict]) -> dict[str, float]:
    """Each asset's steps' own seconds, summed over its partitions (steps that ran)."""
    totals: dict[str, float] = {}
    for step in steps:
        if step["seconds"] is not None:
            totals[step["asset"]] = round(totals.get(step["asset"], 0.0) + step["seconds"], 1)
    return totals


def timed_run(checkout: Path, workdir: Path, log: Path) -> dict:
    """One ``ftassets run`` of ``checkout``'s code and configs in ``workdir``: wall and CPU seconds, parsed steps."""
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "DAGSTER_HOME": str(workdir / ".dagster_home"),
        "FTASSETS_HOME": str(workdir / ".ftassets_home"),
        "FTASSETS_CONFIG_DIR": str(checkout / "configs"),
    }
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "w") as output:
        done = subprocess.run(
            [sys.executable, "-m", "ftassets", "run"], cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text()
    if done.returncode != 0:
        raise RuntimeError(f"ftassets run in {workdir} exited {done.returncode}; its output: {log}\n{text[-3000:]}")
    steps = parse_steps(text)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "steps": steps, "log": str(log)}


def count(steps: list[dict], outcome: str) -> int:
    return sum(step["outcome"] == outcome for step in steps)


def measure(checkout: Path, workdir: Path) -> dict:
    """The first run (everything built) and the second (everything current) of ``checkout`` in a new ``workdir``."""
    from ftassets.artifacts import checkout_commit

    workdir.mkdir(parents=True)
    first = timed_run(checkout, workdir, workdir / "first.log")
    second = timed_run(checkout, workdir, workdir / "second.log")
    return {
        "checkout": str(checkout),
        "commit": checkout_commit(checkout),
        "wall_s": first["wall_s"],
        "cpu_s": first["cpu_s"],
        "steps_ran": count(first["steps"], "done"),
        "seconds_by_asset": seconds_by_asset(first["steps"]),
        "second_wall_s": second["wall_s"],
        "second_steps_ran": count(second["steps"], "done"),
        "second_steps_current": count(second["steps"], "current"),
        "log": first["log"],
    }


def median_of(runs: list[dict]) -> dict:
    """The run whose wall time is the median (the lower one of an even count), with every round's wall time."""
    ordered = sorted(runs, key=lambda run: run["wall_s"])
    return {**ordered[(len(ordered) - 1) // 2], "round_wall_s": [run["wall_s"] for run in runs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=REPO)
    parser.add_argument("--baseline", type=Path, help="another checkout timed in the same session, alternately")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="default_run-"))
    roles = {"ftassets": args.checkout.resolve()}
    if args.baseline:
        roles["baseline"] = args.baseline.resolve()
    sys.path.insert(0, str(REPO))
    from ftassets.artifacts import machine_facts

    results: dict[str, list[dict]] = {role: [] for role in roles}
    for round_index in range(args.rounds):
        for role, checkout in roles.items():
            result = measure(checkout, workdir / f"{role}-{round_index}")
            results[role].append(result)
            print(json.dumps({"role": role, "round": round_index, **result}), flush=True)
    summary = {role: median_of(runs) for role, runs in results.items()}
    figures = {
        "benchmark": "default_run",
        "target_s": TARGET_S,
        **summary,
        "machine": {key: value for key, value in machine_facts().items() if key != "torch_threads"},
    }
    if "baseline" in summary:
        figures["ratio"] = round(summary["ftassets"]["wall_s"] / summary["baseline"]["wall_s"], 3)
        figures["cpu_ratio"] = round(summary["ftassets"]["cpu_s"] / summary["baseline"]["cpu_s"], 3)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
