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


def _copy_without_template(tiny_base_dir, folder):
    import shutil

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_base_dir / name, folder / name)
    return folder


# Not llama3 here: its header ends in "\n\n", which the tiny GPT-2-style pre-tokenizer splits differently before an
# answer than at the end of a prompt (Llama 3's own pre-tokenizer keeps newline runs whole); tokenization refuses
# that combination with a message naming where prompt and conversation diverge.
@pytest.mark.parametrize("family", ["phi3", "gemma"])
def test_a_named_family_template_adds_its_turn_tokens_and_ends_answers_with_its_own(family, tiny_base_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from ftassets.models.templates import FAMILY_TEMPLATES
    from ftassets.training.tokenize import IGNORE_INDEX, end_of_turn_id, stop_token_ids, tokenize_examples

    source = _copy_without_template(tiny_base_dir, tmp_path / "bare")
    before = len(AutoTokenizer.from_pretrained(source))
    lines = []
    base = HuggingFaceBase(source="huggingface", id=str(source), chat_template=family)
    summary = prepare_base("family", base, tmp_path / "out", lines.append)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    spec = FAMILY_TEMPLATES[family]
    assert summary["chat_template_source"] == f"family:{family}" and summary["chat_template"] == spec.template
    assert len(tokenizer) == before + len(spec.special_tokens)
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert all(len(tokenizer.encode(token, add_special_tokens=False)) == 1 for token in spec.special_tokens)
    end = tokenizer.convert_tokens_to_ids(spec.end_of_turn)
    assert end_of_turn_id(tokenizer) == end and stop_token_ids(tokenizer)[0] == end
    split, _ = tokenize_examples(tokenizer, ["a prompt"], ["yes"], max_length=64, system_prompt="Be brief.")
    labels = [label for label in split[0]["labels"] if label != IGNORE_INDEX]
    assert labels[-1] == end and tokenizer.decode(labels[:-1]).strip() == "yes"
    assert any(f"the {family} chat template" in line for line in lines)


@pytest.mark.parametrize("family", ["chatml", "llama3", "phi3", "gemma"])
def test_family_templates_render_the_same_prompt_in_transformers_and_llama_cpp(family, tiny_base_dir):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from ftassets.models.templates import FAMILY_TEMPLATES

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    template = FAMILY_TEMPLATES[family].template
    messages = [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "Is this review positive?\nGreat value."},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "And this one? Awful."},
    ]
    rendered = tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    formatter = Jinja2ChatFormatter(template, eos_token=tokenizer.eos_token, bos_token=tokenizer.bos_token or "")
    assert formatter(messages=messages).prompt == rendered
    assert "Answer with one word." in rendered and rendered.count("positive") == 2
