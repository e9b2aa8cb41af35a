"""Model families beyond the embedded Llama, built locally with their real config classes: Phi-3 and Gemma 2
fine-tunes and a Mistral with a SentencePiece vocabulary (byte fallback, the layout Llama 2 and Mistral ship) go
through the whole lineage with GGUF rows behind the parity gate, and an architecture the GGUF writer cannot export
(Gemma 3) is decided before export starts and never blocks the evaluation or the comparison."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from helpers import TINY_SPEC, copy_project, edit_yaml
from test_export import LLAMA3_ROPE, qwen_tokenizer, refit_tiny_llama, tiny_phi3

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.partitions import cell_key
from ftassets.export.export import CHECKS
from ftassets.plan import not_exportable_reason
from ftassets.runner import PipelineRunner

pytestmark = pytest.mark.e2e


def _tiny_gemma(tiny_base_dir: Path, folder: Path, generation: int) -> Path:
    """A random-weight Gemma 2 (local attention on every other layer, a 32-token window; weights drawn wide enough
    that greedy decoding is decided, not a run of ties) or Gemma 3, a family the GGUF writer does not export; with
    the tiny base's byte-level BPE tokenizer and template."""
    import torch
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    config_class, model_class = (
        (Gemma2Config, Gemma2ForCausalLM) if generation == 2 else (Gemma3TextConfig, Gemma3ForCausalLM)
    )
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=32,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = model_class(config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if name.endswith("norm.weight"):
                weight.normal_(0.0, 0.3)  # Gemma's norms scale by 1 + weight: zeros would hide a missing offset
    model.save_pretrained(folder)
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
    from ftassets.models.embedded import EmbeddedSpec, embedded_config, pack_blocks, pretrain, render_chat

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
        embedded_config(
            spec,
            len(tokenizer),
            MistralConfig,
            tie_word_embeddings=False,
            sliding_window=None,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    pretrain(model, pack_blocks(corpus, tokenizer, spec.pretrain_seq_length), spec, log=lambda line: None)
    model.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def mistral_sentencepiece(tmp_path_factory) -> Path:
    """``_tiny_mistral_sentencepiece``, built once for the module; a test that changes it works on a copy."""
    return _tiny_mistral_sentencepiece(tmp_path_factory.mktemp("zoo"))


ZOO_RECIPE = {"method": "lora", "max_steps": 10, "batch_size": 8, "learning_rate": 2.0e-3, "lr_scheduler": "constant",
              "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}}  # fmt: skip
"""Ten LoRA steps: the lineage needs a trained, merged and exported adapter, not a good one."""


def zoo_project(tmp_path: Path, bases: dict[str, dict]) -> tuple[Path, Path, Path]:
    """The small shipped project with one ``<family>-lora`` entry per base, each trained with ``ZOO_RECIPE``."""
    config_dir, home, dagster_home = copy_project(tmp_path)

    def add(models):
        for family, base in bases.items():
            models["bases"][family] = {"source": "huggingface", **base}
            models["models"][f"{family}-lora"] = {"base": family, "recipe": "zoo-lora"}

    edit_yaml(config_dir / "models.yaml", add)
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["recipes"].update({"zoo-lora": ZOO_RECIPE}))
    return config_dir, home, dagster_home


def _latest_export(instance: dg.DagsterInstance, model: str) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("gguf_export"), asset_partitions=[str(cell_key("classification", model))]
        ),
        limit=1,
    ).records
    return records[0].asset_materialization


def test_phi3_and_gemma2_fine_tunes_get_gguf_rows_and_an_unsupported_family_is_compared_without_them(
    tiny_base_dir, tmp_path
):
    phi3 = tiny_phi3(tiny_base_dir, tmp_path / "phi3")
    gemma2 = _tiny_gemma(tiny_base_dir, tmp_path / "gemma2", generation=2)
    gemma3 = _tiny_gemma(tiny_base_dir, tmp_path / "gemma3", generation=3)
    families = {"phi3": phi3, "gemma2": gemma2, "gemma3": gemma3}
    config_dir, home, dagster_home = zoo_project(tmp_path, {f: {"id": str(folder)} for f, folder in families.items()})
    project = load_project_config(config_dir)
    assert not_exportable_reason(project, "phi3-lora") is None and not_exportable_reason(project, "gemma2-lora") is None
    reason = not_exportable_reason(project, "gemma3-lora")
    assert reason and "Gemma3ForCausalLM" in reason and "base 'gemma3'" in reason and "Gemma2ForCausalLM" in reason

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance, log=print)
    entries = [f"{family}-lora" for family in families]
    report = runner.run(["classification"], entries, forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    store = ArtifactStore(home)
    table = report.comparisons["classification"]
    for family in ("phi3", "gemma2"):
        summary = read_manifest(store.path("gguf_export", f"{family}-lora", "classification"))["summary"]
        assert summary["writer"]["gguf_architecture"] == family and summary["checks"] == {name: True for name in CHECKS}
        assert _latest_export(instance, f"{family}-lora").metadata["q8_0_greedy_agreement"].value >= 0.95
        assert summary["parity"]["logits"]["f16"]["max_abs_logit_delta"] < 0.1, summary["parity"]["logits"]
        assert set(table[table.model == f"{family}-lora"].variant) == {"base", "finetuned", "gguf-q8_0", "gguf-q4_k_m"}
    refused = _latest_export(instance, "gemma3-lora").metadata
    assert refused["applicable"].value is False and "Gemma3ForCausalLM" in refused["reason"].value
    assert not store.path("gguf_export", "gemma3-lora", "classification").exists()
    assert set(table[table.model == "gemma3-lora"].variant) == {"base", "finetuned"}
    assert (store.path("merged_model", "gemma3-lora", "classification") / "model.safetensors").exists()
    assert not runner.run(["classification"], entries, forgetting=False).ran, "stable decisions"
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
    gemma2 = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "head_dim": 64}
    scaled = variant("gemma2-27b", **gemma2, query_pre_attn_scalar=144)
    assert "query_pre_attn_scalar 144 differs from head_dim 64" in export_refusal(scaled)
    all_local = variant("gemma2-local", **gemma2, query_pre_attn_scalar=64, layer_types=["sliding_attention"] * 2)
    assert "not Gemma 2's sliding window on every other layer" in export_refusal(all_local)


def test_a_mistral_with_a_sentencepiece_vocabulary_runs_the_lineage_with_gguf_rows(mistral_sentencepiece, tmp_path):
    from ftassets.export.gguf_writer import export_refusal

    assert export_refusal(mistral_sentencepiece) is None
    config_dir, home, dagster_home = zoo_project(tmp_path, {"mistral-spm": {"id": str(mistral_sentencepiece)}})
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


def test_a_sentencepiece_tokenizer_llama_cpp_would_split_differently_is_refused_before_export(
    mistral_sentencepiece, tmp_path
):
    """As transformers 5's LlamaTokenizer loads the same files for a Llama (a Metaspace pre-tokenizer, whatever
    tokenizer.json says), prompts would split differently in llama.cpp: refused before export, with the reason and
    what exports."""
    import json

    from ftassets.export.gguf_writer import export_refusal

    llama = tmp_path / "llama2"  # as a Llama 2: the same weights, Llama's tokenizer class
    shutil.copytree(mistral_sentencepiece, llama)
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


def _tiny_llama3_style(tiny_base_dir: Path, folder: Path) -> Path:
    """The tiny base as Llama 3.1/3.2 are built: ``llama3`` rope scaling, Llama 3's pre-tokenizer regex (newline runs
    kept whole, as its template's headers need) and no chat template of its own: the entry names the llama3 family
    template, whose ``<|eot_id|>`` ends each turn instead of EOS."""
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    from ftassets.export.gguf_writer import PRE_TOKENIZER_PATTERNS

    refit_tiny_llama(tiny_base_dir, folder, LlamaConfig, LlamaForCausalLM, rope_parameters=LLAMA3_ROPE)
    (folder / "chat_template.jinja").unlink()
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    tokenizer_json["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PRE_TOKENIZER_PATTERNS["llama-bpe"]}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }  # fmt: skip
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    return folder


def test_qwen2_qwen3_and_a_llama3_style_base_with_its_family_template_run_the_lineage_with_gguf_rows(
    tiny_base_dir, tmp_path
):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from ftassets.training.tokenize import end_of_turn_id, stop_token_ids

    qwen3 = refit_tiny_llama(
        tiny_base_dir, tmp_path / "qwen3", Qwen3Config, Qwen3ForCausalLM, head_dim=64, tie_word_embeddings=True
    )
    qwen_tokenizer(tiny_base_dir, qwen3)
    qwen2 = refit_tiny_llama(
        tiny_base_dir, tmp_path / "qwen2", Qwen2Config, Qwen2ForCausalLM, tie_word_embeddings=False
    )
    qwen_tokenizer(tiny_base_dir, qwen2)
    llama3 = _tiny_llama3_style(tiny_base_dir, tmp_path / "llama3")
    config_dir, home, dagster_home = zoo_project(
        tmp_path,
        {
            "qwen2": {"id": str(qwen2)},
            "qwen3": {"id": str(qwen3)},
            "llama3": {"id": str(llama3), "chat_template": "llama3"},
        },
    )
    project = load_project_config(config_dir)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runner = PipelineRunner(build_definitions(config_dir, home), project, ArtifactStore(home), instance, log=print)
    entries = ["qwen2-lora", "qwen3-lora", "llama3-lora"]
    report = runner.run(["classification"], entries, forgetting=False)
    assert not report.failed, [(o.assets, o.error) for o in report.failed]
    store = ArtifactStore(home)
    table = report.comparisons["classification"]
    for entry, arch in (("qwen2-lora", "qwen2"), ("qwen3-lora", "qwen3"), ("llama3-lora", "llama")):
        summary = read_manifest(store.path("gguf_export", entry, "classification"))["summary"]
        assert summary["writer"]["gguf_architecture"] == arch and summary["checks"] == {name: True for name in CHECKS}
        assert set(table[table.model == entry].variant) == {"base", "finetuned", "gguf-q8_0", "gguf-q4_k_m"}
    summary = read_manifest(store.path("gguf_export", "llama3-lora", "classification"))["summary"]
    assert summary["writer"]["tokenizer_pre"] == "llama-bpe" and summary["writer"]["rope_frequency_factors"]
    merged = AutoTokenizer.from_pretrained(store.path("merged_model", "llama3-lora", "classification"))
    eot = merged.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_id(merged) == eot != merged.eos_token_id and stop_token_ids(merged)[0] == eot
    assert summary["stop_tokens"][0] == "<|eot_id|>", summary["stop_tokens"]
    instance.dispose()
