"""Model families beyond the embedded Llama, built locally with their real config classes: a Phi-3 fine-tune and a
Mistral with a SentencePiece vocabulary (byte fallback, the layout Llama 2 and Mistral ship) go through the whole
lineage with GGUF rows behind the parity gate, and an architecture the GGUF writer cannot export (Gemma 2) is decided
before export starts and never blocks the evaluation or the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from helpers import TINY_SPEC, copy_project, edit_yaml
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


MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)
"""Mistral's turn markers ([INST] as text, each answer ended by EOS); a system message as a first line."""


def _tiny_mistral_sentencepiece(folder: Path) -> Path:
    """A Mistral pre-trained for 40 steps with a SentencePiece BPE tokenizer (byte fallback) trained here by
    ``sentencepiece`` on the embedded corpus, converted by transformers and saved in the layout Llama 2 and Mistral
    ship (``Prepend``/``Replace`` normalizer, no pre-tokenizer)."""
    import io
    import json

    import sentencepiece
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM, set_seed

    from ftassets.models.corpus import generate_corpus
    from ftassets.models.embedded import EmbeddedSpec, pack_blocks, pretrain, render_chat

    spec = EmbeddedSpec(**TINY_SPEC)
    corpus = generate_corpus(spec.corpus_documents, spec.seed, render_chat)
    model_file = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(line for text in corpus for line in text.splitlines() if line.strip()),
        model_writer=model_file,
        model_type="bpe",
        vocab_size=spec.vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    source = folder / "sentencepiece"
    source.mkdir(parents=True)
    (source / "tokenizer.model").write_bytes(model_file.getvalue())
    (source / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "legacy": True,
                "chat_template": MISTRAL_TEMPLATE,
            }
        )
    )
    model_dir = folder / "mistral-spm"
    AutoTokenizer.from_pretrained(source).save_pretrained(model_dir)
    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer_json["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ],
    }
    tokenizer_json["pre_tokenizer"] = None
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    # Run as saved (transformers 5's LlamaTokenizer would rebuild a Metaspace pre-tokenizer: see the refusal test).
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(" a", add_special_tokens=False)["input_ids"])
    assert "".join(pieces) == "\u2581\u2581a", "a space before every text, even one that starts with a space"
    set_seed(spec.seed)
    model = MistralForCausalLM(
        MistralConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_hidden_layers,
            num_attention_heads=spec.num_attention_heads,
            num_key_value_heads=spec.num_key_value_heads,
            max_position_embeddings=spec.max_position_embeddings,
            sliding_window=None,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    pretrain(model, pack_blocks(corpus, tokenizer, spec.pretrain_seq_length), spec, log=lambda line: None)
    model.save_pretrained(model_dir)
    return model_dir


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
    assert "no tokenizer.json" in export_refusal(no_json)
    llama3 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 128}
    assert export_refusal(variant("llama3", rope_scaling={"rope_type": "llama3", **llama3})) is None
    yarn = variant("yarn", rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
    assert "rope_type 'yarn' is not supported by the GGUF exporter for LlamaForCausalLM" in export_refusal(yarn)
    windowed = variant("mistral", architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=64)
    assert "sliding-window attention (64 of 256 positions)" in export_refusal(windowed)
    assert export_refusal(variant("mistral-full", architectures=["MistralForCausalLM"], model_type="mistral")) is None


def test_a_mistral_with_a_sentencepiece_vocabulary_runs_the_lineage_with_gguf_rows(tmp_path):
    from ftassets.export.gguf_writer import export_refusal

    mistral = _tiny_mistral_sentencepiece(tmp_path / "zoo")
    assert export_refusal(mistral) is None
    config_dir, home, dagster_home = copy_project(tmp_path)

    def add(models):
        models["bases"]["mistral-spm"] = {"source": "huggingface", "id": str(mistral)}
        models["models"]["mistral-spm-lora"] = {"base": "mistral-spm", "recipe": "lora"}

    edit_yaml(config_dir / "models.yaml", add)
    project = load_project_config(config_dir)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance, log=print)
    report = runner.run(["classification"], ["mistral-spm-lora"], forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    summary = read_manifest(ArtifactStore(home).path("gguf_export", "mistral-spm-lora", "classification"))["summary"]
    assert summary["writer"]["gguf_architecture"] == "llama" and summary["writer"]["tokenizer_pre"] == "llama"
    assert summary["checks"] == {name: True for name in CHECKS}, summary["parity"]
    table = report.comparisons["classification"]
    assert set(table[table.model == "mistral-spm-lora"].variant) == {"base", "finetuned", "gguf-q8_0", "gguf-q4_k_m"}
    instance.dispose()


def test_a_sentencepiece_tokenizer_llama_cpp_would_split_differently_is_refused_before_export(tmp_path):
    """As transformers 5's LlamaTokenizer loads the same files for a Llama (a Metaspace pre-tokenizer, whatever
    tokenizer.json says), prompts would split differently in llama.cpp: refused before export, with the reason and
    what exports."""
    import json

    from ftassets.export.gguf_writer import export_refusal

    llama = _tiny_mistral_sentencepiece(tmp_path / "zoo")  # as a Llama 2: the same weights, Llama's tokenizer class
    config = json.loads((llama / "config.json").read_text())
    config |= {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    (llama / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((llama / "tokenizer_config.json").read_text())
    for legacy, scheme, says in (
        (True, "always", "only where it does not start with one"),
        (False, "first", "only at"),
    ):
        tokenizer_config |= {"tokenizer_class": "LlamaTokenizer", "legacy": legacy}
        (llama / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        refusal = export_refusal(llama)
        assert refusal and f"prepend_scheme {scheme!r}" in refusal and says in refusal, refusal
        assert "(as LlamaTokenizer loads it)" in refusal and "tokenizer_class PreTrainedTokenizerFast" in refusal
