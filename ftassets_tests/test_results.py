"""``ftassets report``: the documentation's result tables are the recorded comparison, with where its figures came
from (commit, machine, libraries), never typed by hand; a comparison that is not current is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ftassets.artifacts import ArtifactStore, machine_facts, read_manifest, source_commit, write_manifest
from ftassets.results import END, START, describe_origin, replace_block, results_markdown

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def test_the_report_is_the_recorded_comparison_with_where_each_evaluation_ran(world):
    store = ArtifactStore(world["home"])
    markdown = results_markdown(world["project"], store, ["classification"])
    table = pd.read_parquet(store.path("comparison", "classification") / "table.parquet")
    for row in table[table.status == "ok"].itertuples():
        line = next(line for line in markdown.splitlines() if line.split()[:2] == [row.model, row.variant])
        assert f"{row.accuracy:.3f}" in line, (row.model, row.variant, line)
    for model in dict.fromkeys(table[table.status == "ok"].model):
        assert describe_origin(read_manifest(store.path("evaluation", model, "classification"))) in markdown
    assert "data version" in markdown


def test_every_artifact_records_the_commit_and_machine_it_was_made_on(tmp_path):
    import torch

    (tmp_path / "weights.bin").write_bytes(b"0" * 10)
    manifest = write_manifest(tmp_path, asset="evaluation", fingerprint="abc")
    assert manifest["source"] == source_commit() and manifest["machine"]["cpu"] == machine_facts()["cpu"]
    assert manifest["machine"]["cores"] >= 1 and manifest["machine"]["torch_threads"] == torch.get_num_threads()
    origin = describe_origin(manifest)
    assert (f"commit {manifest['source']}" if manifest["source"] else "commit not recorded") in origin
    assert manifest["machine"]["cpu"] in origin and "torch thread" in origin and "transformers " in origin


def test_the_readme_block_is_replaced_and_nothing_else(tmp_path):
    document = f"# Title\n\nbefore\n{START}\nold table\n{END}\nafter\n"
    replaced = replace_block(document, "new table", tmp_path / "README.md")
    assert replaced == f"# Title\n\nbefore\n{START}\nnew table\n{END}\nafter\n"
    assert replace_block(replaced, "new table", tmp_path / "README.md") == replaced
    with pytest.raises(ValueError, match="README.md: no generated block"):
        replace_block("# no markers\n", "table", tmp_path / "README.md")
    assert START in (REPO / "README.md").read_text() and END in (REPO / "README.md").read_text()


def test_ftassets_report_refuses_a_comparison_that_is_not_current(world, tmp_path, monkeypatch, capsys):
    from helpers import copy_world, edit_yaml

    from ftassets.cli import main

    dagster_home, home = copy_world(world, tmp_path)
    config_dir = tmp_path / "configs"
    shutil.copytree(world["project"].config_dir, config_dir)
    edit_yaml(config_dir / "models.yaml", lambda d: d["models"].update({"tiny-base": {"base": "tiny"}}))
    for name, value in (("DAGSTER_HOME", dagster_home), ("FTASSETS_HOME", home), ("FTASSETS_CONFIG_DIR", config_dir)):
        monkeypatch.setenv(name, str(value))
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\nold\n{END}\n")
    assert main(["report", "--readme", str(readme)]) == 1
    assert "comparison [classification] is not current" in capsys.readouterr().out
    assert readme.read_text() == f"{START}\nold\n{END}\n", "nothing written"
    # the entry list the comparison was made with
    shutil.copytree(world["project"].config_dir, config_dir, dirs_exist_ok=True)
    assert main(["report", "--readme", str(readme)]) == 0, capsys.readouterr()
    assert "tiny-lora     finetuned" in readme.read_text()
