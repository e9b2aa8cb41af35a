"""Where the Dagster instance lives, one rule for every entry point (``ftassets``, ``dagster asset materialize``,
``dagster dev``): the folder ``$DAGSTER_HOME`` names (from the environment, or ``./.env`` as Dagster's CLIs read
it), or a one-line error saying how to set it; never a throw-away instance that records nothing.

``ftassets`` creates the configured folder and copies the project's ``dagster.yaml`` in when it has none; a home
that cannot be written (read-only, not a folder, a full disk) is refused before anything runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from ftassets.config import ConfigError

HOW_TO_SET = "export DAGSTER_HOME=$PWD/.dagster_home (or put DAGSTER_HOME=... in ./.env)"
WRITE_CHECK = ".ftassets-write-check"


class DagsterHomeError(ConfigError):
    """$DAGSTER_HOME unset, or a folder the instance cannot be written to; the message says what to do."""


def not_set_message(consequence: str) -> str:
    return f"DAGSTER_HOME is not set: {consequence}. {HOW_TO_SET}, then run it again"


def configured_dagster_home(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The absolute path $DAGSTER_HOME names (the environment first, then ``<cwd>/.env``)."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    value = environ.get("DAGSTER_HOME") or dotenv_values(cwd / ".env").get("DAGSTER_HOME")
    if not value:
        raise DagsterHomeError(
            not_set_message("ftassets records every run, the model partitions and what is stale in that instance")
        )
    return (cwd / Path(value).expanduser()).resolve()


def prepare_dagster_home(home: Path, instance_configs: Iterable[Path]) -> Path:
    """Create ``home``, copy the first existing of ``instance_configs`` in as its ``dagster.yaml`` when it has none,
    and check that it can be written; a one-line DagsterHomeError otherwise."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            source = next((path for path in instance_configs if path.exists()), None)
            if source is not None:
                shutil.copy(source, home / "dagster.yaml")
        check = home / WRITE_CHECK
        with open(check, "wb") as handle:
            handle.write(b"ftassets")
            handle.flush()
            os.fsync(handle.fileno())
        check.unlink()
    except OSError as error:
        where = error.filename or home
        raise DagsterHomeError(
            f"DAGSTER_HOME={home} cannot be used: {error.strerror or error} ({where}). Point DAGSTER_HOME at a "
            "folder you can write to on a disk with free space (e.g. export DAGSTER_HOME=$PWD/.dagster_home)"
        ) from None
    return home
