"""GGUF export on the embedded tiny Llama and a tiny random Qwen2: the files load in llama.cpp and generate, the
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
from ftassets.export.export import ExportSettings, export_gguf, gguf_file_name
from ftassets.export.gguf_writer import (
    PRE_TOKENIZER_PATTERNS,
    UnsupportedModelError,
    interleave_rotary_halves,
    layout_for,
    pre_tokenizer_name,
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


def conversations():
    return [chat_messages(p, system_prompt="Label the review.") for p in PROMPTS]


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
    vocab = len(tokenizer_json["model"]["vocab"])
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
    assert parity["greedy"]["f16"]["agreement"] == 1.0 and parity["logits"]["f16"]["top1_agreement"] == 1.0
    reader = gguf.GGUFReader(tmp_path / gguf_file_name("qwen2", "f16"))
    assert "tokenizer.ggml.bos_token_id" not in reader.fields
    names = {t.name for t in reader.tensors}
    assert {"output.weight", "blk.0.attn_q.bias", "blk.1.attn_k.bias"} <= names
    fallbacks = result.summary["quantizations"]["q4_k_m"]["fallback_tensors"]
    assert fallbacks and "blk.0.attn_q.weight" in fallbacks and not fallbacks["blk.0.attn_q.weight"].endswith("_K")


def test_unsupported_architecture_is_named_with_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(
        UnsupportedModelError, match="GPT2LMHeadModel.*LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"
    ):
        layout_for(tmp_path)


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
    with pytest.raises(UnsupportedModelError, match="'Unigram' is not byte-level BPE"):
        pre_tokenizer_name({"model": {"type": "Unigram"}}, source)


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
