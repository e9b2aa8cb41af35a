"""GGUF export on the embedded tiny Llama, a tiny random Qwen2 and Mistral, and the tiny Llama's trained weights
refitted as Phi-3 and Qwen3 or given Llama 3.1's rope scaling: the files load in llama.cpp and generate, the
parity gate holds (token ids, template, special ids, greedy decoding, logits), K-quants are real or their
fallback is reported, the Modelfile is derived from the chat template, and a GGUF served by llama_cpp.server
answers through the OpenAI-compatible backend with the embedded template."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import gguf
import jinja2
import numpy as np
import pytest

from ftassets.config import load_project_config
from ftassets.export import parity
from ftassets.export.export import ExportSettings, export_gguf, gguf_file_name
from ftassets.export.gguf_writer import (
    PRE_TOKENIZER_PATTERNS,
    UnsupportedModelError,
    gguf_model_name,
    interleave_rotary_halves,
    layout_for,
    pre_tokenizer_name,
    sentencepiece_space_prefix,
    write_gguf,
)
from ftassets.export.llama_runtime import load_llama
from ftassets.export.modelfile import TemplateDerivationError, go_template, role_frames
from ftassets.export.quantize import quantize
from ftassets.plan import not_exportable_reason
from ftassets.training.tokenize import chat_messages, encode_chats

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "The delivery was late and the box was crushed.",
    "Great value, works as described!",
    "Where is my refund? 2 weeks now",
]
SETTINGS = ExportSettings(parity_prompts=3, parity_new_tokens=12, threads=1)
FAMILY_SETTINGS = ExportSettings(quant_types=("f16", "q8_0"), parity_prompts=3, parity_new_tokens=12, threads=1)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def conversations():
    return [chat_messages(p, system_prompt="Label the review.") for p in PROMPTS]


def refit_tiny_llama(tiny_base_dir: Path, folder: Path, config_class, model_class, **config) -> Path:
    """The tiny base's trained weights in another family's layout, with that family's real config class: q, k, v
    rows fused into ``qkv_proj`` and gate, up rows into ``gate_up_proj`` where the family fuses them, weights it adds
    drawn (Qwen3's q/k norms around one, Qwen2's biases around zero), an untied ``lm_head`` copied from the
    embedding; the tiny tokenizer and template beside them. A trained model decides its greedy tokens clearly, where
    a random one is full of ties."""
    import torch
    from transformers import LlamaForCausalLM

    llama = LlamaForCausalLM.from_pretrained(tiny_base_dir)
    shape = {
        key: getattr(llama.config, key)
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
            "rms_norm_eps",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
        )
    }
    model = model_class(config_class(**(shape | config)))
    source = llama.state_dict()
    fused = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for name, tensor in model.state_dict().items():
        module = name.split(".")[-2]
        if module in fused:
            weights[name] = torch.cat([source[name.replace(module, part)] for part in fused[module]])
        elif module in ("q_norm", "k_norm"):
            weights[name] = 1 + 0.3 * torch.randn(tensor.shape, generator=generator)
        elif name.endswith(".bias"):  # Qwen2's q/k/v biases
            weights[name] = 0.1 * torch.randn(tensor.shape, generator=generator)
        elif name == "lm_head.weight":
            weights[name] = source["model.embed_tokens.weight"].clone()
        else:
            weights[name] = source[name]
    model.load_state_dict(weights)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_base_dir / name, folder / name)
    return folder


def tiny_phi3(tiny_base_dir: Path, folder: Path, **config) -> Path:
    """The tiny base as a Phi-3 with an untied head: the same function as the tiny Llama in transformers."""
    from transformers import Phi3Config, Phi3ForCausalLM

    return refit_tiny_llama(
        tiny_base_dir, folder, Phi3Config, Phi3ForCausalLM, **({"tie_word_embeddings": False} | config)
    )


def qwen_tokenizer(tiny_base_dir: Path, out: Path) -> None:
    """The tiny tokenizer given Qwen2's (and Qwen3's) pre-tokenizer regex and, like theirs, no BOS token."""
    shutil.copy(tiny_base_dir / "chat_template.jinja", out / "chat_template.jinja")
    tokenizer_config = json.loads((tiny_base_dir / "tokenizer_config.json").read_text())
    del tokenizer_config["bos_token"]
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    tokenizer_json = json.loads((tiny_base_dir / "tokenizer.json").read_text())
    tokenizer_json["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": PRE_TOKENIZER_PATTERNS["qwen2"]},
                "behavior": "Isolated",
                "invert": False,
            },
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    (out / "tokenizer.json").write_text(json.dumps(tokenizer_json))


@pytest.fixture(scope="module")
def tiny_export(tiny_base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_gguf")
    return out, export_gguf(tiny_base_dir, out, "tiny", conversations(), SETTINGS, log=lambda line: None)


@pytest.fixture(scope="module")
def qwen2_dir(tiny_base_dir, tmp_path_factory):
    """A random Qwen2 (attention biases, untied lm_head, hidden 128 so K-quants must fall back) with the tiny
    tokenizer given Qwen2's pre-tokenizer regex and, like Qwen2's, no BOS token; saved locally: no hub."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("qwen2")
    qwen_tokenizer(tiny_base_dir, out)
    vocab = len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"])
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        initializer_range=0.2,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(out)
    return out


@pytest.mark.e2e
def test_mistral_exports_as_llama_layout(tiny_base_dir, tmp_path):
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    model_dir = tmp_path / "mistral"
    model_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_base_dir / name, model_dir / name)
    vocab = len(json.loads((tiny_base_dir / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(0)
    MistralForCausalLM(
        MistralConfig(
            vocab_size=vocab,
            hidden_size=256,
            intermediate_size=256,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=1,
            max_position_embeddings=128,
            sliding_window=None,
            initializer_range=0.2,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=3,
        )
    ).save_pretrained(model_dir)
    result = export_gguf(model_dir, tmp_path, "mistral", conversations(), SETTINGS, log=lambda line: None)
    assert result.summary["writer"]["gguf_architecture"] == "llama"
    assert result.summary["parity"]["tokenizer_mismatches"] == []
    assert result.summary["parity"]["logits"]["f16"]["top1_agreement"] == 1.0


@pytest.mark.e2e
def test_every_exported_file_loads_in_llama_cpp_and_generates(tiny_export):
    out, result = tiny_export
    assert sorted(p.name for p in out.glob("*.gguf")) == sorted(
        gguf_file_name("tiny", q) for q in ("f16", "q8_0", "q4_k_m")
    )
    for quant_type in ("f16", "q8_0", "q4_k_m"):
        llm = load_llama(out / gguf_file_name("tiny", quant_type), n_ctx=128, threads=1, logits_all=False)
        try:
            completion = llm.create_completion(
                "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", max_tokens=6, temperature=0
            )
            assert completion["usage"]["completion_tokens"] > 0
        finally:
            llm.close()


@pytest.mark.e2e
def test_parity_gate_passes_and_k_quants_are_real(tiny_export):
    out, result = tiny_export
    assert result.passed, [(c.name, c.description) for c in result.checks]
    parity = result.summary["parity"]
    assert parity["tokenizer_mismatches"] == [] and parity["tokenizer_texts"] >= 15
    for quant_type, fields in parity["metadata"].items():
        assert all(f["equal"] for f in fields.values()), (quant_type, fields)
    assert parity["greedy"]["q8_0"]["agreement"] >= 0.95 and parity["greedy"]["q8_0"]["tokens"] > 0
    assert parity["logits"]["f16"]["max_abs_logit_delta"] < 0.01
    for quant_type in ("f16", "q8_0", "q4_k_m"):
        assert 0.0 <= parity["logits"][quant_type]["top1_agreement"] <= 1.0
    q4 = result.summary["quantizations"]["q4_k_m"]
    assert "Q4_K" in q4["tensor_types"] and q4["fallback_tensors"] == {}
    sizes = {q: result.summary["quantizations"][q]["bytes"] for q in ("f16", "q8_0", "q4_k_m")}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_k_m"]


@pytest.mark.e2e
def test_gguf_carries_the_merged_models_template_vocabulary_and_ids(tiny_export, tiny_base_dir):
    from transformers import AutoTokenizer

    out, result = tiny_export
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    reader = gguf.GGUFReader(out / gguf_file_name("tiny", "q8_0"))

    def field(name):
        value = reader.fields[name]
        return value.contents()

    assert field("general.architecture") == "llama" and field("tokenizer.ggml.pre") == "gpt-2"
    assert field("tokenizer.chat_template") == tokenizer.chat_template
    assert field("tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert len(field("tokenizer.ggml.tokens")) == len(tokenizer)
    assert result.summary["tokenizer_sha256"] and result.summary["chat_template_sha256"]


@pytest.mark.e2e
def test_modelfile_uses_the_chat_template_and_stop_tokens(tiny_export):
    out, result = tiny_export
    text = (out / "Modelfile").read_text()
    assert text.startswith(f"FROM ./{gguf_file_name('tiny', 'q8_0')}\n")
    assert '{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER num_ctx 256" in text


@pytest.mark.e2e
def test_qwen2_exports_with_biases_untied_head_and_reported_fallbacks(qwen2_dir, tmp_path):
    result = export_gguf(qwen2_dir, tmp_path, "qwen2", conversations(), SETTINGS, log=lambda line: None)
    assert (
        result.summary["writer"]["gguf_architecture"] == "qwen2"
        and result.summary["writer"]["tokenizer_pre"] == "qwen2"
    )
    checks = {c.name: c for c in result.checks}
    assert checks["gguf_tokenizer_parity"].passed, checks["gguf_tokenizer_parity"].metadata
    assert checks["gguf_template_and_special_ids"].passed
    parity = result.summary["parity"]
    # Random weights (initializer range 0.2) leave near-ties that f16 rounding may flip at a position or two; a wrong
    # layout (biases, untied head) would disagree almost everywhere.
    assert parity["greedy"]["f16"]["agreement"] == 1.0 and parity["logits"]["f16"]["top1_agreement"] >= 0.99
    reader = gguf.GGUFReader(tmp_path / gguf_file_name("qwen2", "f16"))
    assert "tokenizer.ggml.bos_token_id" not in reader.fields
    names = {t.name for t in reader.tensors}
    assert {"output.weight", "blk.0.attn_q.bias", "blk.1.attn_k.bias"} <= names
    fallbacks = result.summary["quantizations"]["q4_k_m"]["fallback_tensors"]
    assert fallbacks and "blk.0.attn_q.weight" in fallbacks and not fallbacks["blk.0.attn_q.weight"].endswith("_K")


@pytest.mark.e2e
def test_phi3_exports_its_fused_projections_as_llama_cpp_reads_them(tiny_base_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = tiny_phi3(tiny_base_dir, tmp_path / "phi3")
    ids = torch.tensor([list(range(4, 60))])
    with torch.inference_mode():
        llama, phi3 = (AutoModelForCausalLM.from_pretrained(d)(ids).logits for d in (tiny_base_dir, model_dir))
    assert torch.allclose(llama, phi3, atol=1e-5), "the fused layout is the tiny Llama's function"
    result = export_gguf(model_dir, tmp_path, "phi3-tiny", conversations(), FAMILY_SETTINGS, log=lambda line: None)
    assert result.passed, [(c.name, c.description) for c in result.checks]
    writer = result.summary["writer"]
    assert writer["gguf_architecture"] == "phi3" and writer["gguf_name"] == "phi_3-tiny"
    shapes = {t.name: t.shape.tolist() for t in gguf.GGUFReader(tmp_path / gguf_file_name("phi3-tiny", "f16")).tensors}
    assert shapes["blk.0.attn_qkv.weight"] == [256, 256 + 2 * 128] and shapes["blk.1.ffn_up.weight"] == [256, 2 * 256]
    assert "output.weight" in shapes and not {"blk.0.attn_q.weight", "blk.0.ffn_gate.weight"} & set(shapes)
    parity_figures = result.summary["parity"]
    assert parity_figures["logits"]["f16"]["max_abs_logit_delta"] < 0.01
    assert parity_figures["greedy"]["q8_0"]["agreement"] == 1.0


@pytest.mark.e2e
def test_phi3_partial_rotary_factor_rotates_that_share_of_each_head(tiny_base_dir, tmp_path):
    from ftassets.loading import load_causal_lm, load_tokenizer

    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    model_dir = tiny_phi3(tiny_base_dir, tmp_path / "phi3", rope_parameters=rope)
    summary = write_gguf(model_dir, tmp_path / "partial.gguf", "partial")
    assert summary["rope_dimensions"] == 32
    ids = encode_chats(load_tokenizer(model_dir), conversations(), add_generation_prompt=True)
    llm = load_llama(tmp_path / "partial.gguf", n_ctx=128, threads=1)
    try:
        statistics, *_ = parity.logit_statistics(load_causal_lm(model_dir).eval(), llm, ids)
    finally:
        llm.close()
    assert statistics["max_abs_logit_delta"] < 0.01 and statistics["top1_agreement"] == 1.0


@pytest.mark.e2e
def test_qwen3_exports_with_per_head_query_and_key_norms(tiny_base_dir, tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model_dir = refit_tiny_llama(
        tiny_base_dir, tmp_path / "qwen3", Qwen3Config, Qwen3ForCausalLM, head_dim=64, tie_word_embeddings=True
    )
    qwen_tokenizer(tiny_base_dir, model_dir)
    result = export_gguf(model_dir, tmp_path, "qwen3", conversations(), FAMILY_SETTINGS, log=lambda line: None)
    assert result.passed, [(c.name, c.description) for c in result.checks]
    writer = result.summary["writer"]
    assert writer["gguf_architecture"] == "qwen3" and writer["tokenizer_pre"] == "qwen2" and writer["tied_embeddings"]
    reader = gguf.GGUFReader(tmp_path / gguf_file_name("qwen3", "f16"))
    shapes = {t.name: t.shape.tolist() for t in reader.tensors}
    assert shapes["blk.0.attn_q_norm.weight"] == shapes["blk.1.attn_k_norm.weight"] == [64]
    assert "output.weight" not in shapes and "blk.0.attn_q.bias" not in shapes
    assert "tokenizer.ggml.bos_token_id" not in reader.fields
    parity_figures = result.summary["parity"]
    assert parity_figures["logits"]["f16"]["max_abs_logit_delta"] < 0.01
    assert parity_figures["greedy"]["q8_0"]["agreement"] == 1.0


@pytest.mark.e2e
def test_llama3_rope_scaling_is_written_as_frequency_factors(tiny_base_dir, tmp_path):
    """The tiny base with Llama 3.1's rope scaling from an original context of 32 (frequencies slower than that
    divided by 8, those between a quarter of it and it smoothed), compared on a prompt several times that long; the
    same weights with plain rope give other logits on it, so a GGUF without the factors could not pass."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tmp_path / "llama3"
    shutil.copytree(tiny_base_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(config | {"rope_parameters": LLAMA3_ROPE}))
    long = chat_messages(" ".join(PROMPTS * 3), system_prompt="Label the review.")
    result = export_gguf(
        model_dir, tmp_path, "llama3", [long, *conversations()], FAMILY_SETTINGS, log=lambda line: None
    )
    assert result.passed, [(c.name, c.description) for c in result.checks]
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    default = 10000.0 ** -(np.arange(0, head_dim, 2) / head_dim)
    wavelength = 2 * np.pi / default
    smooth = np.clip((32 / wavelength - 1.0) / (4.0 - 1.0), 0.0, 1.0)
    expected = 1 / ((1 - smooth) / 8.0 + smooth)
    factors = np.asarray(result.summary["writer"]["rope_frequency_factors"])
    assert np.allclose(factors, expected, rtol=1e-5) and factors[0] == 1.0 and factors[-1] == 8.0
    reader = gguf.GGUFReader(tmp_path / gguf_file_name("llama3", "q8_0"))
    assert [t.shape.tolist() for t in reader.tensors if t.name == "rope_freqs.weight"] == [[head_dim // 2]]
    parity_figures = result.summary["parity"]
    assert parity_figures["logits"]["f16"]["max_abs_logit_delta"] < 0.01
    assert parity_figures["greedy"]["q8_0"]["agreement"] == 1.0
    ids = torch.tensor(encode_chats(AutoTokenizer.from_pretrained(tiny_base_dir), [long], add_generation_prompt=True))
    original, context = LLAMA3_ROPE["original_max_position_embeddings"], config["max_position_embeddings"]
    assert 4 * original < ids.shape[1] <= context - FAMILY_SETTINGS.parity_new_tokens
    with torch.inference_mode():
        scaled, plain = (AutoModelForCausalLM.from_pretrained(d)(ids).logits for d in (model_dir, tiny_base_dir))
    assert (scaled - plain).abs().max() > 100 * parity_figures["logits"]["f16"]["max_abs_logit_delta"]


def test_unsupported_architecture_is_named_with_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(
        UnsupportedModelError,
        match="GPT2LMHeadModel.*LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM, "
        "Qwen3ForCausalLM",
    ):
        layout_for(tmp_path)


def test_written_name_breaks_up_llama_cpps_vocabulary_triggers():
    assert gguf_model_name("phi3-lora-classification") == "phi_3-lora-classification"
    assert gguf_model_name("My-Phi-3-mini") == "My-Phi_3-mini" and gguf_model_name("modern-bert") == "modern_bert"
    assert gguf_model_name("tiny-lora-classification") == "tiny-lora-classification"


def test_pre_tokenizer_is_read_from_the_tokenizer_and_unknown_ones_are_refused():
    source = Path("tokenizer.json")
    assert (
        pre_tokenizer_name(
            {"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}, source
        )
        == "gpt-2"
    )
    split = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\d+|\w+"}},
            {"type": "ByteLevel", "use_regex": False},
        ],
    }
    with pytest.raises(UnsupportedModelError, match=r"regex '\\\\d\+\|\\\\w\+'"):
        pre_tokenizer_name({"model": {"type": "BPE"}, "pre_tokenizer": split}, source)
    with pytest.raises(UnsupportedModelError, match="'Unigram' is not BPE; the GGUF exporter writes byte-level BPE"):
        pre_tokenizer_name({"model": {"type": "Unigram"}}, source)
    legacy_sentencepiece = {
        "model": {"type": "BPE", "byte_fallback": True},
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
            ],
        },
    }
    assert pre_tokenizer_name(legacy_sentencepiece, source) == "llama"
    assert sentencepiece_space_prefix(legacy_sentencepiece) is True
    never = {
        "model": {"type": "BPE", "byte_fallback": True},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never"},
    }
    assert pre_tokenizer_name(never, source) == "llama" and sentencepiece_space_prefix(never) is False
    assert sentencepiece_space_prefix({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel"}}) is None


def test_rotary_halves_are_interleaved_per_head():
    head = np.array([[0], [1], [2], [3], [10], [11], [12], [13]], dtype=np.float32)
    assert interleave_rotary_halves(head, n_head=2)[:, 0].tolist() == [0, 2, 1, 3, 10, 12, 11, 13]


def _render(template: str):
    compiled = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(template)
    return lambda messages, add_generation_prompt: compiled.render(
        messages=messages, add_generation_prompt=add_generation_prompt
    )


def test_modelfile_template_keeps_a_leading_bos_and_refuses_injected_system_prompts():
    llama3 = (
        "{{ '<|begin_of_text|>' }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    )
    head, frames, generation = role_frames(_render(llama3))
    assert head == "<|begin_of_text|>" and frames["user"].before == "<|start_header_id|>user<|end_header_id|>\n\n"
    assert go_template(_render(llama3)).startswith("<|begin_of_text|>{{- range .Messages }}")
    injecting = (
        "{% if messages[0]['role'] != 'system' %}{{ 'SYS: be nice\n' }}{% endif %}"
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    )
    with pytest.raises(TemplateDerivationError, match="not a per-message concatenation"):
        role_frames(_render(injecting))


def test_entries_without_exportable_weights_say_why():
    project = load_project_config(REPO / "configs")
    assert not_exportable_reason(project, "tiny-lora") is None and not_exportable_reason(project, "tiny-full") is None
    assert "virtual tokens" in not_exportable_reason(project, "tiny-prefix")
    assert "virtual tokens" in not_exportable_reason(project, "tiny-ptuning")
    assert "API" in not_exportable_reason(project, "gpt-5-mini")
    assert "API" in not_exportable_reason(project, "gpt-4.1-mini-sft")


def test_quantizer_refuses_unknown_types_and_reports_llama_cpp_failures(tmp_path):
    with pytest.raises(ValueError, match="not one of q8_0, q4_k_m"):
        quantize(tmp_path / "in.gguf", tmp_path / "out.gguf", "q3_weird")
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(RuntimeError, match="could not quantize"):
        quantize(tmp_path / "broken.gguf", tmp_path / "out.gguf", "q8_0")


@pytest.mark.e2e
def test_served_gguf_answers_through_the_openai_backend_with_the_embedded_template(tiny_export, tiny_base_dir):
    from transformers import AutoTokenizer

    from ftassets.backends.llama_cpp_server import LlamaCppServer, LlamaCppServerBackend

    out, _ = tiny_export
    server = LlamaCppServer(out / gguf_file_name("tiny", "q8_0"), alias="tiny-q8_0", n_ctx=256, threads=1)
    with LlamaCppServerBackend(server.start(), name="tiny") as backend:
        port, process = server.port, server.process
        assert backend.device == "cpu" and backend.client.base_url.host == "127.0.0.1"
        generations = backend.generate(conversations(), max_new_tokens=6)
    expected = encode_chats(AutoTokenizer.from_pretrained(tiny_base_dir), conversations(), add_generation_prompt=True)
    assert [g.prompt_tokens for g in generations] == [len(ids) for ids in expected]
    assert all(0 < g.completion_tokens <= 6 for g in generations)
    assert process.poll() is not None and server.process is None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_server_that_cannot_load_its_file_fails_with_its_log(tmp_path):
    from ftassets.backends.llama_cpp_server import LlamaCppServer, ServerStartError

    (tmp_path / "broken.gguf").write_bytes(b"GGUF but not really")
    with pytest.raises(ServerStartError, match="broken.gguf exited"):
        LlamaCppServer(tmp_path / "broken.gguf", startup_timeout_s=60).start()
    with pytest.raises(FileNotFoundError, match="materialize gguf_export"):
        LlamaCppServer(tmp_path / "missing.gguf")


def test_a_greedy_flip_at_a_near_tie_counts_as_agreement_and_a_confident_one_does_not():
    prompts, expected, actual = [[1, 2]], [[5, 6, 7]], [[5, 9, 7]]
    llama_top1 = [np.array([0, 5, 9, 7, 0])]  # position 1 predicts the first answer token; position 2 flips
    for preferred_by, agreement, flips in ((0.05, 1.0, 1), (1.5, 2 / 3, 0)):
        preference = [np.array([0.0, 0.0, preferred_by, 0.0, 0.0])]
        figures = parity.greedy_agreement(prompts, expected, actual, llama_top1, preference, near_tie=0.1)
        assert figures["agreement"] == pytest.approx(agreement) and figures["near_tie_flips"] == flips
        assert figures["exact_agreement"] == pytest.approx(2 / 3) and figures["matching_tokens"] == 2
