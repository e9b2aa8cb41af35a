"""A Hugging Face base goes through the same loading code whether it is a hub id or a local folder."""

import pytest
from transformers import AutoTokenizer

from ftassets.config.schemas import HuggingFaceBase
from ftassets.models.bases import BaseModelError, prepare_base


def test_local_pretrained_folder_is_loaded_validated_and_recorded(tiny_base_dir, tmp_path):
    summary = prepare_base(
        "local-llama", HuggingFaceBase(source="huggingface", id=str(tiny_base_dir)), tmp_path, log=lambda _: None
    )
    assert summary["architecture"] == "LlamaForCausalLM"
    assert summary["parameters"] > 0 and summary["chat_template"] and len(summary["chat_template_sha256"]) == 64
    assert summary["eos_token"] == "<|im_end|>" and summary["pad_token"] == "<|pad|>"
    copied = AutoTokenizer.from_pretrained(tmp_path)
    original = AutoTokenizer.from_pretrained(tiny_base_dir)
    text = "A review: great value!\n数字 123 🙂"
    assert copied(text)["input_ids"] == original(text)["input_ids"]


def test_a_base_without_chat_template_says_which_field_to_set(tiny_base_dir, tmp_path):
    source = tmp_path / "no_template"
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(source)
    (source / "chat_template.jinja").unlink(missing_ok=True)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (source / name).write_bytes((tiny_base_dir / name).read_bytes())
    with pytest.raises(BaseModelError, match=r"bases\.plain\.chat_template"):
        prepare_base(
            "plain", HuggingFaceBase(source="huggingface", id=str(source)), tmp_path / "out", log=lambda _: None
        )


def test_an_unreachable_id_fails_with_the_config_field(tmp_path):
    with pytest.raises(BaseModelError, match=r"bases\.missing\.id"):
        prepare_base(
            "missing",
            HuggingFaceBase(source="huggingface", id=str(tmp_path / "nowhere")),
            tmp_path / "out",
            log=lambda _: None,
        )


def _copy_without_pad(tiny_base_dir, folder, eos: bool = True):
    """The tiny base as Llama 3 and Mistral ship theirs: a tokenizer without a pad token (and here, optionally,
    without an eos token either)."""
    import shutil

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    tokenizer.pad_token = None
    if not eos:
        tokenizer.eos_token = None
    tokenizer.save_pretrained(folder)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_base_dir / name, folder / name)
    return folder


def test_a_tokenizer_without_pad_token_pads_with_eos_and_still_learns_to_stop(tiny_base_dir, tmp_path):
    from ftassets.training.strategies import PaddingCollator
    from ftassets.training.tokenize import IGNORE_INDEX, tokenize_examples

    source = _copy_without_pad(tiny_base_dir, tmp_path / "no_pad")
    assert AutoTokenizer.from_pretrained(source).pad_token_id is None
    lines = []
    summary = prepare_base(
        "llama3ish", HuggingFaceBase(source="huggingface", id=str(source)), tmp_path / "out", lines.append
    )
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert summary["pad_token"] == summary["eos_token"] == tokenizer.pad_token == tokenizer.eos_token
    assert summary["pad_token_source"] == "eos (bases.llama3ish.pad_token)"
    assert any("padding with its eos token" in line for line in lines)
    # Padding with eos masks the padding, not the answer's own end of turn: every example's last label is kept.
    split, _ = tokenize_examples(tokenizer, ["a", "a longer prompt here"], ["yes", "no"], max_length=64)
    batch = PaddingCollator(tokenizer.pad_token_id)([split[0], split[1]])
    for row, length in zip(batch["labels"].tolist(), (len(split[0]["input_ids"]), len(split[1]["input_ids"]))):
        assert row[length - 1] != IGNORE_INDEX and all(label == IGNORE_INDEX for label in row[length:])


def test_pad_token_add_adds_a_dedicated_token_and_resizes_the_embeddings(tiny_base_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    source = _copy_without_pad(tiny_base_dir, tmp_path / "no_pad")
    eos = AutoTokenizer.from_pretrained(source).eos_token_id
    base = HuggingFaceBase(source="huggingface", id=str(source), pad_token="add")
    summary = prepare_base("mistralish", base, tmp_path / "out", log=lambda _: None)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    # The tiny vocabulary already holds a <|pad|> token, which is reused; a vocabulary without one grows by it.
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != eos
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert summary["pad_token_source"] == "add (bases.mistralish.pad_token)"


def test_a_tokenizer_with_neither_pad_nor_eos_names_the_field_to_set(tiny_base_dir, tmp_path):
    source = _copy_without_pad(tiny_base_dir, tmp_path / "bare", eos=False)
    with pytest.raises(BaseModelError, match=r"bases\.bare\.pad_token: add"):
        prepare_base("bare", HuggingFaceBase(source="huggingface", id=str(source)), tmp_path / "out", lambda _: None)


REMOTE_CONFIG = """from transformers import LlamaConfig


class TinyRemoteConfig(LlamaConfig):
    model_type = "tinyremote"
"""
REMOTE_MODEL = """from transformers import LlamaForCausalLM

from .configuration_tinyremote import TinyRemoteConfig


class TinyRemoteForCausalLM(LlamaForCausalLM):
    config_class = TinyRemoteConfig
"""


def test_a_base_with_its_own_code_is_loaded_with_it_at_every_later_step(tiny_base_dir, tmp_path):
    """A model whose architecture ships as code beside its weights (``auto_map``, ``trust_remote_code: true``):
    the copy in the store keeps the code, and later loads (tokenizer, config, weights, the sizing plan) use it."""
    import json
    import shutil

    from ftassets.loading import load_causal_lm, load_config, load_tokenizer, remote_code

    source = tmp_path / "remote"
    shutil.copytree(tiny_base_dir, source)
    (source / "configuration_tinyremote.py").write_text(REMOTE_CONFIG)
    (source / "modeling_tinyremote.py").write_text(REMOTE_MODEL)
    config = json.loads((source / "config.json").read_text())
    config |= {
        "model_type": "tinyremote",
        "architectures": ["TinyRemoteForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_tinyremote.TinyRemoteConfig",
            "AutoModelForCausalLM": "modeling_tinyremote.TinyRemoteForCausalLM",
        },
    }
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(BaseModelError, match=r"bases\.remote\.trust_remote_code: true"):
        prepare_base("remote", HuggingFaceBase(source="huggingface", id=str(source)), tmp_path / "refused", print)
    base = HuggingFaceBase(source="huggingface", id=str(source), trust_remote_code=True)
    out = tmp_path / "out"
    summary = prepare_base("remote", base, out, log=lambda _: None)
    assert summary["architecture"] == "TinyRemoteForCausalLM" and remote_code(out)
    assert (out / "modeling_tinyremote.py").exists(), "the copy keeps the architecture's code"
    assert type(load_config(out)).__name__ == "TinyRemoteConfig"
    assert type(load_causal_lm(out)).__name__ == "TinyRemoteForCausalLM"
    assert load_tokenizer(out).eos_token == AutoTokenizer.from_pretrained(tiny_base_dir).eos_token
