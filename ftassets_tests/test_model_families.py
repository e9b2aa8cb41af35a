"""Model families beyond the embedded Llama, built locally with their real config classes: an architecture the GGUF
writer cannot export is decided before export starts and never blocks the evaluation or the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from helpers import copy_project, edit_yaml

from ftassets.artifacts import ArtifactStore
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.partitions import cell_key
from ftassets.plan import not_exportable_reason
from ftassets.runner import PipelineRunner

pytestmark = pytest.mark.e2e


def _tiny_phi3(tiny_base_dir: Path, folder: Path) -> Path:
    """A random-weight Phi-3 (fused qkv and gate/up projections) with the tiny base's byte-level BPE tokenizer."""
    import torch
    from transformers import AutoTokenizer, Phi3Config, Phi3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    Phi3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_phi3_fine_tune_is_compared_without_gguf_rows_and_says_why(tiny_base_dir, tmp_path):
    folder = _tiny_phi3(tiny_base_dir, tmp_path / "phi3")
    config_dir, home, dagster_home = copy_project(tmp_path)

    def add(models):
        models["bases"]["phi3"] = {"source": "huggingface", "id": str(folder)}
        models["models"]["phi3-lora"] = {"base": "phi3", "recipe": "lora"}

    edit_yaml(config_dir / "models.yaml", add)
    project = load_project_config(config_dir)
    reason = not_exportable_reason(project, "phi3-lora")
    assert reason and "Phi3ForCausalLM" in reason and "base 'phi3'" in reason
    assert not_exportable_reason(project, "tiny-lora") is None

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance, log=print)
    report = runner.run(["classification"], ["phi3-lora"], forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    export = (
        instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("gguf_export"), asset_partitions=[str(cell_key("classification", "phi3-lora"))]
            ),
            limit=1,
        )
        .records[0]
        .asset_materialization
    )
    assert export.metadata["applicable"].value is False and "Phi3ForCausalLM" in export.metadata["reason"].value
    table = report.comparisons["classification"]
    assert set(table[table.model == "phi3-lora"].variant) == {"base", "finetuned"}
    assert (ArtifactStore(home).path("merged_model", "phi3-lora", "classification") / "model.safetensors").exists()
    assert not runner.run(["classification"], ["phi3-lora"], forgetting=False).ran, "the decision is stable"
    instance.dispose()


def test_a_sentencepiece_only_tokenizer_or_llama3_rope_is_refused_before_export(tiny_base_dir, tmp_path):
    import json

    from ftassets.export.gguf_writer import export_refusal

    assert export_refusal(tiny_base_dir) is None
    no_json = tmp_path / "spm"
    shutil.copytree(tiny_base_dir, no_json)
    (no_json / "tokenizer.json").unlink()
    assert "byte-level BPE" in export_refusal(no_json)
    scaled = tmp_path / "llama3-rope"
    shutil.copytree(tiny_base_dir, scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_scaling"] = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 128,
    }
    (scaled / "config.json").write_text(json.dumps(config))
    assert "rope_type 'llama3'" in export_refusal(scaled)
