"""The e2e "world": the shipped configs materialized once per test run (every method's entry on
classification) in a persistent Dagster instance, shared by the tests that need a real trained lineage.

The world's configs are the shipped ones with shorter trainings (``WORLD_RECIPES``) and fewer bootstrap
resamples, written to ``<root>/configs``: the world proves each method's lineage and a gain over the base, not the
shipped recipes' accuracy, which ``ftassets run`` (README command 1) and ``benchmarks/stability.py`` measure. Tests
that edit a copy of the world's configs copy ``world["project"].config_dir``.

Under pytest-xdist the controller process, which runs no tests, starts ``python ftassets_tests/e2e_world.py
<root>`` at session start, so the world is built while both workers run the tests that do not need it
(conftest orders those first). Without xdist the ``world`` fixture builds it inline. Either way a build
ends with ``first_run.pickle`` (the first run's report) renamed into place, or with ``failed.txt``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT, FAILED, BUILDING, LOG = "first_run.pickle", "failed.txt", "building.pid", "build.log"
WORLD_RECIPES = {"lora": {"epochs": 3}, "qlora": {"epochs": 3}, "dora": {"epochs": 3}, "ptuning": {"epochs": 2}}
"""Changes to the shipped recipes for the world (a third of the adapters' steps, half of p-tuning's)."""
WORLD_DPO = {"sft_epochs": 2}
WORLD_BOOTSTRAP_RESAMPLES = 100


def world_configs(root: Path) -> Path:
    """``root / "configs"``: the shipped configs with the world's shorter trainings (written once)."""
    import yaml

    config_dir = root / "configs"
    if not config_dir.exists():
        staging = root / ".configs.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(REPO / "configs", staging)
        path = staging / "experiments.yaml"
        data = yaml.safe_load(path.read_text())
        for name, changes in WORLD_RECIPES.items():
            data["recipes"][name].update(changes)
        data["recipes"]["dpo"]["dpo"].update(WORLD_DPO)
        data["evaluation"]["bootstrap_resamples"] = WORLD_BOOTSTRAP_RESAMPLES
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        os.replace(staging, config_dir)
    return config_dir


def open_world(root: Path) -> dict:
    """Config, definitions, instance and runner of the world at ``root``, built or not."""
    import dagster as dg

    from ftassets.artifacts import ArtifactStore
    from ftassets.config import load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.runner import PipelineRunner

    dagster_home, home = root / "dagster_home", root / "ftassets_home"
    if not (dagster_home / "dagster.yaml").exists():
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    project = load_project_config(world_configs(root))
    defs = build_definitions(project.config_dir, home)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runner = PipelineRunner(defs, project, ArtifactStore(home), instance, log=lambda line: print(line, flush=True))
    return dict(
        root=root, dagster_home=dagster_home, home=home, project=project, defs=defs, instance=instance, runner=runner
    )


def build(root: Path) -> None:
    """Materialize the methods experiment at ``root``; write its report, or the traceback to ``failed.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        world = open_world(root)
        models = list(world["project"].experiments.experiments["methods"].models)
        first = world["runner"].run(["classification"], models, forgetting=False)
        staging = root / f".{REPORT}.{os.getpid()}"
        staging.write_bytes(pickle.dumps(first))
        os.replace(staging, root / REPORT)
    except BaseException:
        (root / FAILED).write_text(traceback.format_exc())
        raise


def start_in_background(root: Path) -> subprocess.Popen:
    """Start the build in a child process with one torch thread, logging to ``root/build.log``."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(root / LOG, "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(root)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    (root / BUILDING).write_text(str(process.pid))
    return process


def being_built(root: Path) -> bool:
    return (root / BUILDING).exists()


def wait_for(root: Path, timeout_s: float = 3600) -> None:
    """Block until the background build at ``root`` has finished; raise with its log if it failed."""
    deadline = time.monotonic() + timeout_s
    pid = int((root / BUILDING).read_text())
    while not (root / REPORT).exists():
        if (root / FAILED).exists():
            raise RuntimeError(f"building the e2e world failed:\n{(root / FAILED).read_text()}")
        if not _running(pid):
            if (root / REPORT).exists():
                break
            tail = (root / LOG).read_text()[-4000:] if (root / LOG).exists() else ""
            raise RuntimeError(f"the e2e world build (pid {pid}) exited without a report:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the e2e world build at {root} took over {timeout_s:.0f} s; its log: {root / LOG}")
        time.sleep(1.0)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by the controller) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    build(Path(sys.argv[1]))
