"""``notebooks/analysis.ipynb`` run headless, as a user runs it after ``ftassets run``: from the notebooks folder,
on a copy of the world named by DAGSTER_HOME and FTASSETS_HOME (set for the kernel only), with this interpreter's
ipykernel. Every cell runs without error and shows what the instance holds: the compared entries, two figures,
each fine-tune's per-class errors, the forgetting matrices or the sentence saying there are none, and the data
version Dagster recorded for each loaded partition."""

from __future__ import annotations

import html
import json
import os
import re
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ftassets.artifacts import ArtifactStore
from ftassets.defs.partitions import cell_key
from ftassets.runner import PipelineRunner

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"
TASK = "classification"
pytestmark = pytest.mark.e2e


def test_the_analysis_notebook_shows_the_recorded_comparison_and_its_lineage(world, tmp_path):
    from helpers import copy_world

    dagster_home, home = copy_world(world, tmp_path / "world")
    executed = run_notebook(
        tmp_path,
        {
            "DAGSTER_HOME": str(dagster_home),
            "FTASSETS_HOME": str(home),
            "FTASSETS_CONFIG_DIR": str(world["project"].config_dir),
            "FTASSETS_TASK": TASK,
        },
    )
    outputs = {cell.id: cell.outputs for cell in executed.cells if cell.cell_type == "code"}

    table = pd.read_parquet(ArtifactStore(home).path("comparison", TASK) / "table.parquet")
    evaluated = table[table.status == "ok"]
    models = list(dict.fromkeys(evaluated.model))
    tuned = list(dict.fromkeys(evaluated.model[evaluated.variant == "finetuned"]))
    compared = text(outputs["comparison"], "text/plain")
    assert len(models) >= 2 and all(model in compared for model in models), compared
    assert sum("image/png" in output.get("data", {}) for output in outputs["quality"]) == 2
    errors = text(outputs["errors"], "text/html")
    assert "background-color" in errors and all(model in errors for model in tuned)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runner = PipelineRunner(world["defs"], world["project"], ArtifactStore(home), instance)
        forgetting = [model for model in models if runner.recorded_version("forgetting", model)]
        loaded = [
            ("comparison", TASK),
            *[("evaluation", cell_key(TASK, model)) for model in models],
            *[("forgetting", model) for model in forgetting],
        ]
        recorded = {(asset, str(key)): runner.recorded_version(asset, key) for asset, key in loaded}
    shown = html_rows(text(outputs["lineage"], "text/html"))
    assert {(row["asset"], row["partition"]): row["data_version"] for row in shown} == recorded
    assert all(row["data_version"] == row["artifact_fingerprint"] for row in shown if row["asset"] != "forgetting")
    matrices = text(outputs["forgetting"], "text/markdown") + text(outputs["forgetting"], "text")
    if forgetting:
        assert all(f"**{model}**" in matrices for model in forgetting), matrices
    else:
        assert "No forgetting matrix is materialized" in matrices, matrices


def run_notebook(tmp_path: Path, environment: dict[str, str]):
    """The notebook executed in its own folder by a kernel of this interpreter (a kernel spec in ``tmp_path``, so
    nothing needs ``ipykernel install``) with ``environment`` added to its own; the executed copy is saved in
    ``tmp_path`` for a failure's reader."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    spec = tmp_path / "kernels" / "ftassets"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "ftassets", "language": "python"}))
    kernels = KernelSpecManager(kernel_dirs=[str(spec.parent)])
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        km=KernelManager(kernel_name="ftassets", kernel_spec_manager=kernels),
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    inherited = {name: value for name, value in os.environ.items() if name != "FTASSETS_CONFIG_DIR"}
    try:
        client.execute(env={**inherited, "IPYTHONDIR": str(tmp_path / "ipython"), **environment})
    finally:
        nbformat.write(notebook, tmp_path / NOTEBOOK.name)
    return notebook


def text(outputs: list, kind: str) -> str:
    """Every output of a cell in ``kind`` (a MIME type; ``text`` for what it printed), joined."""
    if kind == "text":
        return "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    return "".join(output.get("data", {}).get(kind, "") for output in outputs)


def html_rows(table: str) -> list[dict[str, str]]:
    """The rows of a DataFrame's HTML as dicts by column name."""
    rows = [
        [html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    ]
    return [dict(zip(rows[0], row)) for row in rows[1:]]
