"""One DAGSTER_HOME rule for every entry point, and nothing left behind: ``ftassets`` and ``dagster asset
materialize`` refuse, in one line saying how to set it, to run without a configured DAGSTER_HOME (no throw-away
instance, no ./.dagster_home made on the quiet); a home that cannot be written is one line too; a staging folder
a killed run left is removed, never one a live writer holds, nor the last good copy of an artifact.

Run as root, chmod does not stop writes: the read-only case runs only as another user, and the unwritable cases
that run everywhere are a home that is a file, a home under a file, and a full disk (``/dev/full`` answers every
write with ENOSPC, as a full disk does)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from helpers import REPO, copy_project

from ftassets.artifacts import ArtifactStore
from ftassets.cli import main
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.home import WRITE_CHECK
from ftassets.runner import PipelineRunner

TASK = "classification"
AN_HOUR_AGO = time.time() - 3600


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory with no .env, and no DAGSTER_HOME in the environment."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_ftassets_without_dagster_home_refuses_in_one_line_and_creates_nothing(elsewhere, capsys):
    assert main(["recover"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "DAGSTER_HOME is not set" in error, error
    assert "export DAGSTER_HOME=$PWD/.dagster_home" in error
    assert list(elsewhere.iterdir()) == [], "no ./.dagster_home made on the quiet"


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_the_configured_home_is_created_with_the_projects_dagster_yaml(elsewhere, monkeypatch, capsys, where):
    """README command (1): export DAGSTER_HOME=$PWD/.dagster_home, then ftassets; or DAGSTER_HOME in ./.env, which
    Dagster's own CLIs read too."""
    if where == "environment":
        monkeypatch.setenv("DAGSTER_HOME", str(elsewhere / "instance" / "home"))
    else:
        (elsewhere / ".env").write_text("DAGSTER_HOME=instance/home\n")
    assert main(["recover"]) == 0, capsys.readouterr()
    home = elsewhere / "instance" / "home"
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
    assert not (home / WRITE_CHECK).exists()
    assert os.environ["DAGSTER_HOME"] == str(home)


def _unwritable_home(case: str, root: Path) -> tuple[Path, str]:
    """A DAGSTER_HOME that cannot be used, and the reason the OS gives."""
    if case == "a file":
        (root / "home").write_text("not a folder")
        return root / "home", "File exists"
    if case == "under a file":
        (root / "file").write_text("not a folder")
        return root / "file" / "home", "Not a directory"
    home = root / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    if case == "full disk":
        (home / WRITE_CHECK).symlink_to("/dev/full")
        return home, "No space left on device"
    if os.geteuid() == 0:
        pytest.skip("root writes through chmod; the other cases cover an unwritable home")
    home.chmod(0o500)
    return home, "Permission denied"


@pytest.mark.parametrize("case", ["a file", "under a file", "full disk", "read-only"])
def test_a_home_that_cannot_be_written_is_one_line_and_nothing_is_touched(elsewhere, monkeypatch, capsys, case):
    home, reason = _unwritable_home(case, elsewhere)
    before = {path: path.read_bytes() for path in elsewhere.rglob("*") if path.is_file() and not path.is_symlink()}
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    try:
        assert main(["sync"]) == 2
    finally:
        if case == "read-only":
            home.chmod(0o700)
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert f"DAGSTER_HOME={home} cannot be used: {reason}" in error and "Point DAGSTER_HOME at" in error, error
    assert {path: path.read_bytes() for path in before} == before


def test_dagster_asset_materialize_without_dagster_home_refuses_and_records_nothing(tmp_path):
    config_dir, home, _ = copy_project(tmp_path)
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    env |= {"FTASSETS_HOME": str(home), "FTASSETS_CONFIG_DIR": str(config_dir), "DAGSTER_DISABLE_TELEMETRY": "1"}
    command = ["-m", "ftassets.definitions", "--select", "dataset", "--partition", TASK]
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    printed = done.stdout + done.stderr
    assert done.returncode != 0, printed
    assert "DAGSTER_HOME is not set: this run records into a temporary Dagster instance" in printed, printed
    assert "export DAGSTER_HOME=$PWD/.dagster_home" in printed
    assert not (home / "artifacts" / "dataset").exists(), "the asset never ran"


def _leftover(parent: Path, name: str) -> Path:
    """A staging folder as a killed run leaves it: nobody holds it, last changed an hour ago."""
    parent.mkdir(parents=True, exist_ok=True)
    (parent / name).mkdir()
    os.utime(parent / name, (AN_HOUR_AGO, AN_HOUR_AGO))
    return parent / name


def test_a_killed_writers_staging_folder_goes_when_that_artifact_is_written_again(tmp_path):
    store = ArtifactStore(tmp_path)
    final = store.path("adapter", "tiny-lora", TASK)
    killed = _leftover(final.parent, f".{TASK}.tmp-0badc0de")
    other = _leftover(final.parent, ".qa.tmp-0badc0de")
    with store.writing(final) as staging:
        (staging / "adapter.bin").write_bytes(b"weights")
    assert not killed.exists() and (final / "adapter.bin").read_bytes() == b"weights"
    assert other.exists(), "another artifact's leftover waits for its own write (or a run's sweep)"
    assert sorted(p.name for p in final.parent.iterdir()) == [".qa.tmp-0badc0de", TASK]


def test_a_sweep_removes_only_what_no_live_writer_holds_and_never_the_last_good_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    adapters = store.path("adapter", "tiny-lora")
    killed = _leftover(adapters, f".{TASK}.tmp-0badc0de")
    cached = _leftover(tmp_path / "cache" / "base_evaluations", ".tiny.tmp-0badc0de")
    (adapters / "qa").mkdir()
    retired = _leftover(adapters, ".qa.old-0badc0de")
    only_copy = _leftover(adapters, ".sql.old-0badc0de")
    with store.writing(store.path("adapter", "tiny-full", TASK)) as live:
        os.utime(live, (AN_HOUR_AGO, AN_HOUR_AGO))
        cleared = [("removed", killed), ("removed", cached), ("removed", retired), ("restored", adapters / "sql")]
        assert sorted(store.sweep_staging()) == sorted(cleared)
        assert live.exists(), "a concurrent run's staging folder is locked by its writer: kept"
    assert not only_copy.exists() and (adapters / "sql").is_dir(), "a retired artifact never replaced is put back"


def test_a_retired_artifact_stays_aside_while_its_writer_is_still_renaming(tmp_path):
    store = ArtifactStore(tmp_path)
    final = store.path("adapter", "tiny-lora", TASK)
    with store.writing(final) as live:
        os.utime(live, (AN_HOUR_AGO, AN_HOUR_AGO))
        retired = _leftover(final.parent, f".{TASK}.old-0badc0de")
        assert store.sweep_staging() == [] and retired.exists(), "the writer is between its two renames"
    assert store.sweep_staging() == [("removed", retired)] and final.is_dir()


def test_a_run_removes_the_staging_folders_killed_runs_left_and_says_so(tmp_path):
    config_dir, home, _ = copy_project(tmp_path)
    killed = _leftover(home / "artifacts" / "adapter" / "tiny-lora", f".{TASK}.tmp-0badc0de")
    project, store, lines = load_project_config(config_dir), ArtifactStore(home), []
    with dg.instance_for_test() as instance:
        runner = PipelineRunner(build_definitions(config_dir, home), project, store, instance, log=lines.append)
        assert runner.run([], [], forgetting=False).outcomes == []
    assert not killed.exists() and lines[0] == f"  removed  {killed} (left by a killed run)", lines
    assert killed.parent.exists() and list(killed.parent.iterdir()) == []
