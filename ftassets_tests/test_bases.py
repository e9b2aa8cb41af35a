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
