"""A transformers checkpoint (merged fine-tune) written as an f16 GGUF with the public ``gguf`` package.

What llama.cpp needs, learned from its converter and loaders and rewritten here for the architectures we train:
hyper-parameters under ``<arch>.*``, tensors renamed by ``gguf.get_tensor_name_map``, Llama's q/k projections
re-ordered for llama.cpp's interleaved rotary layout, 1-D tensors (norms, biases) kept in f32, and the vocabulary
with its token types, special ids and the chat template exactly as the merged model's tokenizer has them: a
byte-level BPE one (``tokenizer.ggml.model = "gpt2"``) with its merges and pre-tokenizer name, or a SentencePiece
BPE one with byte fallback (``"llama"``: Llama 2, Mistral, Phi-3 mini) with scores that rank each token as
``tokenizer.json`` ranks the merge that makes it, which is the order llama.cpp's SentencePiece tokenizer merges in.
Phi-3's fused ``qkv_proj`` (q, k, v rows) and ``gate_up_proj`` (gate rows, then up rows) are already the layouts
llama.cpp's fused ``attn_qkv`` and 2*ff-row ``ffn_up`` expect; Llama 3.1's ``llama3`` rope scaling becomes the
``rope_freqs`` tensor of per-frequency divisors; Gemma 2's norms get their one added, its soft-capping and sliding
window are written for llama.cpp to apply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

DEFAULT_ROPE = frozenset({"default"})


@dataclass(frozen=True)
class ArchitectureLayout:
    gguf_arch: gguf.MODEL_ARCH
    permute_rotary: bool = False
    """Llama-layout checkpoints store q/k rows as two rotary halves per head; llama.cpp wants them interleaved."""
    rope_types: frozenset[str] = DEFAULT_ROPE
    """The ``rope_type`` values written; ``llama3`` only where llama.cpp's loader for the arch reads ``rope_freqs``."""
    partial_rotary: bool = False
    """Whether transformers rotates only ``partial_rotary_factor`` of each head (Phi-3); Llama's rope ignores it."""
    gemma: bool = False
    """Gemma 2: RMSNorm weights stored as offsets from one (llama.cpp multiplies by the weight itself, so one is
    added), attention and final logit soft-capping, and local (sliding-window) attention on every other layer, which
    llama.cpp runs itself."""


SUPPORTED_ARCHITECTURES: dict[str, ArchitectureLayout] = {
    "LlamaForCausalLM": ArchitectureLayout(
        gguf.MODEL_ARCH.LLAMA, permute_rotary=True, rope_types=DEFAULT_ROPE | {"llama3"}
    ),
    "MistralForCausalLM": ArchitectureLayout(gguf.MODEL_ARCH.LLAMA, permute_rotary=True),
    "Phi3ForCausalLM": ArchitectureLayout(gguf.MODEL_ARCH.PHI3, partial_rotary=True),
    "Qwen2ForCausalLM": ArchitectureLayout(gguf.MODEL_ARCH.QWEN2),
    "Qwen3ForCausalLM": ArchitectureLayout(gguf.MODEL_ARCH.QWEN3),
    "Gemma2ForCausalLM": ArchitectureLayout(gguf.MODEL_ARCH.GEMMA2, gemma=True),
}

GPT2_SPLIT = "gpt-2"
PRE_TOKENIZER_PATTERNS = {
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    "llama-bpe": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}


NAME_TRIGGERS = re.compile(r"(?i)(phi)-?(3)|(modern)-(bert)")
"""Substrings of ``general.name`` on which llama.cpp re-flags the vocabulary as Phi-3's SentencePiece one (every
special token then swallows the spaces after it, and loading fails without ``</s>``) or Modern-BERT's."""


class UnsupportedModelError(ValueError):
    """The checkpoint's architecture, rope scaling or tokenizer is one this exporter does not write."""


def supported_architectures() -> list[str]:
    return sorted(SUPPORTED_ARCHITECTURES)


def architecture_of(model_dir: Path) -> str:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    return architectures[0]


def layout_for(model_dir: Path) -> ArchitectureLayout:
    architecture = architecture_of(model_dir)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{Path(model_dir) / 'config.json'}: architecture {architecture!r} cannot be exported to GGUF; "
            f"supported: {', '.join(supported_architectures())}"
        )
    return SUPPORTED_ARCHITECTURES[architecture]


SENTENCEPIECE = "llama"
"""llama.cpp's name for a SentencePiece vocabulary (``tokenizer.ggml.model``)."""
METASPACE = "\u2581"


def sentencepiece_space_prefix(tokenizer_json: dict[str, Any]) -> bool | None:
    """For a SentencePiece BPE vocabulary with byte fallback, whether llama.cpp is to put a space before each piece of
    text (``add_space_prefix``); None for any other tokenizer.

    llama.cpp puts it before the text and after every special token, whether or not the text starts with a space:
    what the layout Llama 2, Mistral and Phi-3 ship does (a ``Prepend`` and a ``Replace`` normalizer, kept by
    ``save_pretrained``). A ``Metaspace`` pre-tokenizer, which transformers 5's LlamaTokenizer builds on load
    whatever the file says, prepends only where the text does not start with a space (``always``) or only at its
    start (``first``), so prompts would tokenize differently: refused, naming the layout that exports.
    """
    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        return None
    pre = tokenizer_json.get("pre_tokenizer") or {}
    normalizer = tokenizer_json.get("normalizer") or {}
    rules = normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    replaces_spaces = any(
        r.get("type") == "Replace" and r.get("pattern", {}).get("String") == " " and r.get("content") == METASPACE
        for r in rules
    )
    if not pre and replaces_spaces:
        return any(r.get("type") == "Prepend" and r.get("prepend") == METASPACE for r in rules)
    if pre.get("type") == "Metaspace" and pre.get("replacement") == METASPACE:
        scheme = pre.get("prepend_scheme", "always" if pre.get("add_prefix_space", True) else "never")
        if scheme == "never":
            return False
        raise UnsupportedModelError(
            f"the SentencePiece tokenizer's Metaspace pre-tokenizer (prepend_scheme {scheme!r}) puts a space before "
            "the text "
            + ("only at its start" if scheme == "first" else "only where it does not start with one")
            + ", where llama.cpp puts one before every piece of text, so prompts would tokenize differently. "
            "transformers' LlamaTokenizer builds this pre-tokenizer whatever tokenizer.json says; the layout Llama 2 "
            "and Mistral ship (normalizer Prepend '\u2581' + Replace ' ', no pre-tokenizer) exports when it runs as "
            "saved: tokenizer_class PreTrainedTokenizerFast in the base's tokenizer_config.json"
        )
    return None


def runtime_tokenizer_json(tokenizer, tokenizer_file: Path) -> dict[str, Any]:
    """The tokenizer as transformers runs it, in ``tokenizer.json``'s form: some classes rebuild parts of the saved
    file on load (Llama's a Metaspace pre-tokenizer, Qwen2's its regex), and the GGUF must split text as the model
    was trained to see it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedModelError(
            f"{tokenizer_file}: {type(tokenizer).__name__} is not a fast (tokenizers) tokenizer; the GGUF exporter "
            "reads the vocabulary transformers runs"
        )
    return json.loads(backend.to_str())


def tokenizer_source(tokenizer, tokenizer_file: Path) -> str:
    return f"{tokenizer_file} (as {type(tokenizer).__name__} loads it)"


def pre_tokenizer_name(tokenizer_json: dict[str, Any], source: Path | str) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization regex, read from ``tokenizer.json``; ``"llama"`` for a
    SentencePiece BPE vocabulary, which has none."""
    model_type = tokenizer_json.get("model", {}).get("type")
    if model_type != "BPE":
        raise UnsupportedModelError(
            f"{source}: tokenizer model {model_type!r} is not BPE; the GGUF exporter writes byte-level BPE and "
            "SentencePiece BPE (byte fallback) vocabularies"
        )
    try:
        if sentencepiece_space_prefix(tokenizer_json) is not None:
            return SENTENCEPIECE
    except UnsupportedModelError as refusal:
        raise UnsupportedModelError(f"{source}: {refusal}") from None
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    splits = [s for s in steps if s.get("type") == "Split"]
    if not byte_level:
        raise UnsupportedModelError(
            f"{source}: pre-tokenizer {pre.get('type')!r} has no ByteLevel step and the vocabulary is not "
            "SentencePiece BPE with byte fallback; those two kinds are supported"
        )
    if not splits and byte_level[0].get("use_regex", True) and not byte_level[0].get("add_prefix_space", False):
        return GPT2_SPLIT
    if len(splits) == 1 and not byte_level[0].get("use_regex", True):
        pattern = splits[0].get("pattern", {}).get("Regex")
        for name, known in PRE_TOKENIZER_PATTERNS.items():
            if pattern == known:
                return name
        raise UnsupportedModelError(
            f"{source}: pre-tokenizer regex {pattern!r} is not one llama.cpp names here "
            f"(known: {GPT2_SPLIT}, {', '.join(PRE_TOKENIZER_PATTERNS)})"
        )
    raise UnsupportedModelError(f"{source}: pre-tokenizer {json.dumps(pre)[:200]} is not a known byte-level BPE layout")


def gguf_model_name(label: str) -> str:
    """The label as ``general.name``, with llama.cpp's name triggers broken up (``phi3-lora`` -> ``phi_3-lora``): the
    vocabulary written here is the tokenizer's own, whatever the model is called."""
    return NAME_TRIGGERS.sub(lambda m: "_".join(g for g in m.groups() if g), label)


def interleave_rotary_halves(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of each head from [first half | second half] to pairs (x0, x_half, x1, x_half+1, ...)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


@dataclass(frozen=True)
class RopeSettings:
    theta: float
    dimensions: int
    """Rotated dimensions per head: all of them, or Phi-3's ``partial_rotary_factor`` of them."""
    frequency_factors: np.ndarray | None
    """``llama3`` rope: what each default frequency is divided by (llama.cpp's ``rope_freqs``); None otherwise."""


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_settings(config, layout: ArchitectureLayout, model_dir: Path) -> RopeSettings:
    """The checkpoint's rope as llama.cpp runs it, refused where it is a kind this writer does not reproduce."""
    rope = getattr(config, "rope_parameters", None) or {
        "rope_type": "default",
        "rope_theta": getattr(config, "rope_theta", 10000.0),
    }
    source = model_dir / "config.json"
    rope_type = rope.get("rope_type", "default")
    if rope_type not in layout.rope_types:
        raise UnsupportedModelError(
            f"{source}: rope_type {rope_type!r} is not supported by the GGUF exporter for {architecture_of(model_dir)} "
            f"(supported: {', '.join(sorted(layout.rope_types))})"
        )
    partial = float(rope.get("partial_rotary_factor", 1.0))
    if partial != 1.0 and not layout.partial_rotary:
        raise UnsupportedModelError(
            f"{source}: partial_rotary_factor {partial} is not written for {architecture_of(model_dir)}"
        )
    factors = llama3_frequency_factors(config) if rope_type == "llama3" else None
    return RopeSettings(float(rope["rope_theta"]), int(head_dim_of(config) * partial), factors)


def llama3_frequency_factors(config) -> np.ndarray:
    """transformers' ``llama3`` inverse frequencies as divisors of the default ones, which llama.cpp applies per
    frequency (``theta / factor``) when the GGUF carries them as ``rope_freqs``."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    dim = int(head_dim_of(config) * config.rope_parameters.get("partial_rotary_factor", 1.0))
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    default = 1.0 / (config.rope_parameters["rope_theta"] ** exponents)
    return (default / scaled).numpy().astype(np.float32)


def check_attention(config, model_dir: Path, layout: ArchitectureLayout) -> None:
    """Refuse attention llama.cpp would run differently. It runs these architectures with full causal attention, so
    a checkpoint whose attention is windowed shorter than its context would be a different model past the window;
    Gemma 2's window on every other layer, starting with the first, it runs itself (``sliding_window``), and it scales
    Gemma 2's queries by 1/sqrt(head_dim) (the 27B model's hidden/heads it recognizes by its size only), so another
    ``query_pre_attn_scalar`` would be another model."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    windowed = "sliding_attention" in layer_types if layer_types else window is not None
    if layout.gemma:
        alternating = [("sliding_attention", "full_attention")[i % 2] for i in range(config.num_hidden_layers)]
        if windowed and list(layer_types or []) != alternating:
            raise UnsupportedModelError(
                f"{model_dir / 'config.json'}: layer_types {layer_types} are not Gemma 2's sliding window on every "
                "other layer from the first, the pattern llama.cpp runs"
            )
        scalar, head_dim = getattr(config, "query_pre_attn_scalar", None), head_dim_of(config)
        if scalar is not None and scalar != head_dim:
            raise UnsupportedModelError(
                f"{model_dir / 'config.json'}: query_pre_attn_scalar {scalar} differs from head_dim {head_dim}; "
                "llama.cpp scales Gemma 2's queries by 1/sqrt(head_dim)"
            )
        return
    if windowed and window is not None and window < config.max_position_embeddings:
        raise UnsupportedModelError(
            f"{model_dir / 'config.json'}: sliding-window attention ({window} of {config.max_position_embeddings} "
            "positions) is not run by llama.cpp for this architecture; the GGUF would differ past the window"
        )


def export_refusal(model_dir: Path) -> str | None:
    """Why a checkpoint of this architecture and tokenizer cannot be written, decided from its ``config.json`` and
    tokenizer alone (no weights read), or None. A fine-tune keeps its base's architecture and tokenizer, so
    the base's folder answers for every fine-tune of it before any is trained."""
    from ftassets.loading import load_config, load_tokenizer

    model_dir = Path(model_dir)
    try:
        layout = layout_for(model_dir)
        config = load_config(model_dir)
        rope_settings(config, layout, model_dir)
        check_attention(config, model_dir, layout)
        tokenizer_file = model_dir / "tokenizer.json"
        if not tokenizer_file.exists():
            raise UnsupportedModelError(
                f"{model_dir}: no tokenizer.json (a SentencePiece tokenizer.model only?); the GGUF exporter reads the "
                "fast tokenizer's file: load the tokenizer with transformers and save_pretrained it into the base"
            )
        tokenizer = load_tokenizer(model_dir)
        pre_tokenizer_name(
            runtime_tokenizer_json(tokenizer, tokenizer_file), tokenizer_source(tokenizer, tokenizer_file)
        )
    except UnsupportedModelError as refusal:
        return str(refusal)
    return None


def load_state_dict(model_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint's safetensors files as float32 numpy arrays."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights; save the merged model with save_pretrained")
    tensors = {}
    for path in files:
        tensors |= {name: tensor.float().numpy() for name, tensor in load_file(path).items()}
    return tensors


def write_gguf(model_dir: Path, out_path: Path, name: str) -> dict[str, Any]:
    """Write ``model_dir`` (config, safetensors, tokenizer) as an f16 GGUF at ``out_path``; return a summary."""
    from ftassets.loading import load_config, load_tokenizer

    model_dir = Path(model_dir)
    layout = layout_for(model_dir)
    config = load_config(model_dir)
    tokenizer = load_tokenizer(model_dir)
    rope = rope_settings(config, layout, model_dir)
    check_attention(config, model_dir, layout)
    n_head, n_kv_head = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = head_dim_of(config)

    writer = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[layout.gguf_arch])
    writer.add_name(gguf_model_name(name))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv_head)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(rope.theta)
    writer.add_rope_dimension_count(rope.dimensions)
    if head_dim != config.hidden_size // n_head or layout.gemma:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(config.vocab_size)
    if layout.gemma:
        writer.add_attn_logit_softcapping(config.attn_logit_softcapping or 0.0)
        writer.add_final_logit_softcapping(config.final_logit_softcapping or 0.0)
        writer.add_sliding_window(config.sliding_window or config.max_position_embeddings)

    vocabulary = _add_vocabulary(writer, model_dir, tokenizer, config.vocab_size)

    names = gguf.get_tensor_name_map(layout.gguf_arch, config.num_hidden_layers)
    written = []
    for hf_name, weight in load_state_dict(model_dir).items():
        if hf_name.endswith("rotary_emb.inv_freq") or (hf_name == "lm_head.weight" and config.tie_word_embeddings):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UnsupportedModelError(f"{model_dir}: tensor {hf_name!r} has no GGUF name for {layout.gguf_arch.name}")
        if layout.gemma and hf_name.endswith("norm.weight"):
            weight = weight + 1.0
        if layout.permute_rotary and hf_name.endswith("q_proj.weight"):
            weight = interleave_rotary_halves(weight, n_head)
        elif layout.permute_rotary and hf_name.endswith("k_proj.weight"):
            weight = interleave_rotary_halves(weight, n_kv_head)
        writer.add_tensor(gguf_name, weight.astype(np.float16 if weight.ndim > 1 else np.float32))
        written.append(gguf_name)
    if rope.frequency_factors is not None:
        written.append(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight")
        writer.add_tensor(written[-1], rope.frequency_factors)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "architecture": architecture_of(model_dir),
        "gguf_name": gguf_model_name(name),
        "gguf_architecture": gguf.MODEL_ARCH_NAMES[layout.gguf_arch],
        "tensors": len(written),
        "tied_embeddings": bool(config.tie_word_embeddings),
        "rope_dimensions": rope.dimensions,
        "rope_frequency_factors": None if rope.frequency_factors is None else rope.frequency_factors.tolist(),
        **vocabulary,
    }


def _add_vocabulary(writer: gguf.GGUFWriter, model_dir: Path, tokenizer, n_vocab: int) -> dict[str, Any]:
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.exists():
        raise UnsupportedModelError(
            f"{model_dir}: no tokenizer.json; the GGUF exporter needs a fast (tokenizers) BPE tokenizer"
        )
    tokenizer_json = runtime_tokenizer_json(tokenizer, tokenizer_file)
    pre = pre_tokenizer_name(tokenizer_json, tokenizer_source(tokenizer, tokenizer_file))
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    if max(by_id) >= n_vocab:
        raise UnsupportedModelError(
            f"{model_dir}: tokenizer has id {max(by_id)} but the embedding has only {n_vocab} rows"
        )
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for token_id in range(n_vocab):
        if token_id not in by_id:
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        elif token_id in added:
            tokens.append(by_id[token_id])
            types.append(gguf.TokenType.CONTROL if added[token_id].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[token_id])
            types.append(gguf.TokenType.NORMAL)
    if pre == SENTENCEPIECE:
        writer.add_tokenizer_model(SENTENCEPIECE)
        writer.add_add_space_prefix(bool(sentencepiece_space_prefix(tokenizer_json)))
        for token_id, token in enumerate(tokens):
            if token_id == tokenizer.unk_token_id:
                types[token_id] = gguf.TokenType.UNKNOWN
            elif types[token_id] == gguf.TokenType.NORMAL and BYTE_PIECE.fullmatch(token):
                types[token_id] = gguf.TokenType.BYTE
        writer.add_token_scores(merge_rank_scores(tokenizer_json, tokens))
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    special = gguf.SpecialVocab(model_dir, load_merges=pre != SENTENCEPIECE, n_vocab=n_vocab)
    if pre != SENTENCEPIECE and not special.merges:
        raise UnsupportedModelError(f"{tokenizer_file}: no BPE merges found")
    ids = {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "unk": tokenizer.unk_token_id,
    }
    special.special_token_ids = {kind: token_id for kind, token_id in ids.items() if token_id is not None}
    probe = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    special.add_special_token = {
        "bos": bool(probe[:1]) and probe[0] == tokenizer.bos_token_id and probe[:1] != bare[:1],
        "eos": bool(probe[-1:]) and probe[-1] == tokenizer.eos_token_id and probe[-1:] != bare[-1:],
    }
    special.chat_template = tokenizer.chat_template
    if not special.chat_template:
        raise UnsupportedModelError(
            f"{model_dir}: tokenizer has no chat template; without one llama.cpp falls back to another format"
        )
    special.add_to_gguf(writer, quiet=True)
    return {
        "tokenizer_pre": pre,
        "merges": len(special.merges) if pre != SENTENCEPIECE else len(tokenizer_json["model"].get("merges", [])),
        "special_token_ids": special.special_token_ids,
        "add_special_tokens": special.add_special_token,
    }


BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
"""A SentencePiece byte-fallback token."""


def merge_rank_scores(tokenizer_json: dict[str, Any], tokens: list[str]) -> list[float]:
    """A score per token for llama.cpp's SentencePiece tokenizer, which repeatedly joins the adjacent pair whose
    joined text is the highest-scoring token: minus the rank of the first merge in ``tokenizer.json`` that makes the
    token, so it joins in the merges' order as the transformers tokenizer does. Tokens no merge makes (characters,
    bytes, special tokens) score below every merged one; they are never the result of a join."""
    merges = tokenizer_json["model"].get("merges", [])
    made_by = {}
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        made_by.setdefault(left + right, rank)
    floor = -float(len(merges) + 1)
    return [-float(made_by[token]) if token in made_by else floor for token in tokens]
