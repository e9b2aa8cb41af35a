"""Where the test suite's CPU goes: a command (the README's test command, `.ci/run`) run with every process sampled.

The suite runs on two cores that stay busy from start to end, so its wall time is its CPU work divided by two:
scheduling cannot shorten it, only less work can. This script says which work. It starts the command, samples
every process on the machine every ``--interval`` seconds (psutil) and credits each process's CPU time to a group
chosen by the process or its nearest classified ancestor:

- ``world``: the shared e2e world's background build (``ftassets_tests/e2e_world.py``);
- ``dagster_dev``: the ``dagster dev`` of ``test_ui.py`` with its webserver, daemon, code servers and the
  worker of every run its daemon launches;
- ``workers``: the pytest-xdist workers and their other children (``ftassets`` and ``dagster`` CLIs, trainers,
  llama.cpp servers, Chromium);
- ``controller``: the pytest process that hands out the tests;
- ``install``: pip, npm and apt (the README command installs first);
- ``other``: everything else sampled on the machine (this script included).

A process that starts and ends between two samples is not seen; ``unsampled_cpu_s`` is the machine's busy CPU
time (``psutil.cpu_times``) less everything credited, so the groups and it add up to the machine's total.

    python benchmarks/suite_cpu.py [--interval 2] -- bash .ci/run

The command's own output goes to ``--log`` (default ``suite_cpu.log`` in a temporary folder); the last line
printed is one JSON object: the command, its exit code, wall seconds, the machine's busy CPU seconds and
utilization (busy / (wall x cores)), per group its CPU seconds and its share of the busy time, the commit and
the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("world", "dagster_dev", "workers", "controller", "install", "other")


def classify(cmdline: str) -> str | None:
    """The group a process belongs to by its own command line, or None (then its ancestors decide)."""
    if "e2e_world.py" in cmdline:
        return "world"
    if " dagster dev" in f" {cmdline}" or "-m dagster dev" in cmdline:
        return "dagster_dev"
    if "import sys;exec(eval(sys.stdin.readline()))" in cmdline:  # an execnet (pytest-xdist) worker
        return "workers"
    if "-m pytest" in cmdline or cmdline.startswith("pytest"):
        return "controller"
    if any(tool in cmdline for tool in ("pip install", "-m pip", "npm ", "apt-get", "dpkg")):
        return "install"
    return None


def group_of(pid: int, table: dict[int, tuple[int, str]]) -> str:
    """``pid``'s group: its own, else its nearest classified ancestor's in ``table`` (pid -> (ppid, cmdline))."""
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        parent, cmdline = table[pid]
        if (group := classify(cmdline)) is not None:
            return group
        pid = parent
    return "other"


def credit(samples: list[dict[tuple[int, float], tuple[str, float]]]) -> dict[str, float]:
    """CPU seconds per group: each process (pid, start time) credited with its last sampled CPU time less its first
    (its CPU before the first sample too when it started after the command did), in the group it had when first
    seen."""
    first: dict[tuple[int, float], tuple[str, float]] = {}
    last: dict[tuple[int, float], float] = {}
    for index, sample in enumerate(samples):
        for key, (group, cpu) in sample.items():
            if key not in first:
                first[key] = (group, 0.0 if index else cpu)  # started during the run: all of its CPU counts
            last[key] = cpu
    totals = dict.fromkeys(GROUPS, 0.0)
    for key, (group, start) in first.items():
        totals[group] += last[key] - start
    return totals


def sample() -> dict[tuple[int, float], tuple[str, float]]:
    table, cpu = {}, {}
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "create_time", "cpu_times"]):
        info = process.info
        if info["cpu_times"] is None or info["create_time"] is None:
            continue
        table[info["pid"]] = (info["ppid"], " ".join(info["cmdline"] or []))
        cpu[(info["pid"], info["create_time"])] = info["cpu_times"].user + info["cpu_times"].system
    return {key: (group_of(key[0], table), seconds) for key, seconds in cpu.items()}


def busy_seconds() -> float:
    """The machine's busy CPU seconds so far, all cores (guest time is already inside user time on Linux)."""
    times = psutil.cpu_times()
    return sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--log", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command, e.g. -- bash .ci/run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. -- bash .ci/run")
    log = args.log or Path(tempfile.mkdtemp(prefix="suite_cpu-")) / "suite_cpu.log"
    sys.path.insert(0, str(REPO))
    from ftassets.artifacts import machine_facts, source_commit

    samples = [sample()]
    busy_before, started = busy_seconds(), time.monotonic()
    with open(log, "w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        while child.poll() is None:
            time.sleep(args.interval)
            samples.append(sample())
    wall, busy = time.monotonic() - started, busy_seconds() - busy_before
    samples.append(sample())
    totals = credit(samples)
    cores = psutil.cpu_count()
    result = {
        "command": " ".join(command),
        "returncode": child.returncode,
        "log": str(log),
        "wall_s": round(wall, 1),
        "busy_cpu_s": round(busy, 1),
        "utilization": round(busy / (wall * cores), 3),
        "cpu_s": {group: round(seconds, 1) for group, seconds in totals.items()},
        "share_of_busy": {group: round(seconds / busy, 3) for group, seconds in totals.items()},
        "unsampled_cpu_s": round(busy - sum(totals.values()), 1),
        "interval_s": args.interval,
        "commit": source_commit(),
        "machine": {key: value for key, value in machine_facts().items() if key != "torch_threads"},
    }
    print(json.dumps(result))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
