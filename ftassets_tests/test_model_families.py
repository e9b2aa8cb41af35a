"""Model families beyond the embedded Llama, built locally with their real config classes: a Phi-3 fine-tune goes
through the whole lineage with GGUF rows behind the parity gate, and an architecture the GGUF writer cannot export
(Gemma 2) is decided before export starts and never blocks the evaluation or the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from helpers import copy_project, edit_yaml
from test_export import tiny_phi3

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.partitions import cell_key
from ftassets.export.export import CHECKS
from ftassets.plan import not_exportable_reason
from ftassets.runner import PipelineRunner

pytestmark = pytest.mark.e2e


def _tiny_gemma2(tiny_base_dir: Path, folder: Path) -> Path:
    """A random-weight Gemma 2, a family the GGUF writer does not export, with the tiny base's byte-level BPE
    tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Gemma2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _latest_export(instance: dg.DagsterInstance, model: str) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("gguf_export"), asset_partitions=[str(cell_key("classification", model))]
        ),
        limit=1,
    ).records
    return records[0].asset_materialization


def test_a_phi3_fine_tune_gets_gguf_rows_and_an_unsupported_family_is_compared_without_them(tiny_base_dir, tmp_path):
    phi3 = tiny_phi3(tiny_base_dir, tmp_path / "phi3")
    gemma2 = _tiny_gemma2(tiny_base_dir, tmp_path / "gemma2")
    config_dir, home, dagster_home = copy_project(tmp_path)

    def add(models):
        models["bases"]["phi3"] = {"source": "huggingface", "id": str(phi3)}
        models["bases"]["gemma2"] = {"source": "huggingface", "id": str(gemma2)}
        models["models"]["phi3-lora"] = {"base": "phi3", "recipe": "lora"}
        models["models"]["gemma2-lora"] = {"base": "gemma2", "recipe": "lora"}

    edit_yaml(config_dir / "models.yaml", add)
    project = load_project_config(config_dir)
    assert not_exportable_reason(project, "phi3-lora") is None
    reason = not_exportable_reason(project, "gemma2-lora")
    assert reason and "Gemma2ForCausalLM" in reason and "base 'gemma2'" in reason and "Phi3ForCausalLM" in reason

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance, log=print)
    report = runner.run(["classification"], ["phi3-lora", "gemma2-lora"], forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    store = ArtifactStore(home)
    summary = read_manifest(store.path("gguf_export", "phi3-lora", "classification"))["summary"]
    assert summary["writer"]["gguf_architecture"] == "phi3" and summary["checks"] == {name: True for name in CHECKS}
    assert _latest_export(instance, "phi3-lora").metadata["q8_0_greedy_agreement"].value >= 0.95
    refused = _latest_export(instance, "gemma2-lora").metadata
    assert refused["applicable"].value is False and "Gemma2ForCausalLM" in refused["reason"].value
    assert not store.path("gguf_export", "gemma2-lora", "classification").exists()
    table = report.comparisons["classification"]
    assert set(table[table.model == "phi3-lora"].variant) == {"base", "finetuned", "gguf-q8_0", "gguf-q4_k_m"}
    assert set(table[table.model == "gemma2-lora"].variant) == {"base", "finetuned"}
    assert (store.path("merged_model", "gemma2-lora", "classification") / "model.safetensors").exists()
    assert not runner.run(["classification"], ["phi3-lora", "gemma2-lora"], forgetting=False).ran, "stable decisions"
    instance.dispose()


def test_a_sentencepiece_only_tokenizer_an_unsupported_rope_or_a_sliding_window_is_refused_before_export(
    tiny_base_dir, tmp_path
):
    import json

    from ftassets.export.gguf_writer import export_refusal

    def variant(name: str, **config) -> Path:
        folder = tmp_path / name
        shutil.copytree(tiny_base_dir, folder)
        original = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(original | config))
        return folder

    assert export_refusal(tiny_base_dir) is None
    no_json = variant("spm")
    (no_json / "tokenizer.json").unlink()
    assert "byte-level BPE" in export_refusal(no_json)
    llama3 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 128}
    assert export_refusal(variant("llama3", rope_scaling={"rope_type": "llama3", **llama3})) is None
    yarn = variant("yarn", rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
    assert "rope_type 'yarn' is not supported by the GGUF exporter for LlamaForCausalLM" in export_refusal(yarn)
    windowed = variant("mistral", architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=64)
    assert "sliding-window attention (64 of 256 positions)" in export_refusal(windowed)
    assert export_refusal(variant("mistral-full", architectures=["MistralForCausalLM"], model_type="mistral")) is None
