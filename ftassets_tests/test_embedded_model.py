"""The embedded base model: tokenizer round-trip, special tokens, chat template, loading, determinism."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from helpers import TINY_SPEC
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TokenizersBackend

from ftassets.models.corpus import generate_corpus
from ftassets.models.embedded import CHAT_TEMPLATE, EmbeddedSpec, build_embedded_model, render_chat, train_tokenizer
from ftassets.tasks.registry import TASK_TYPES

TINY = EmbeddedSpec(**TINY_SPEC)
QUICK = EmbeddedSpec(
    vocab_size=400,
    intermediate_size=256,
    num_hidden_layers=1,
    pretrain_steps=5,
    pretrain_batch_size=4,
    pretrain_seq_length=64,
    corpus_documents=300,
)
ROUND_TRIP_TEXTS = (
    "Hello world",
    "two  spaces and   three",
    " leading space, trailing space ",
    "line one\nline two\n\nline four\n",
    "tab\tseparated\tvalues\t1\t2",
    "Digits 0123456789, 3.14159 and $42.50 at 07:45",
    "Punctuation: !?.,;:'\"()[]{}<>-_/\\|@#%^&*+=~`",
    "UPPER lower MiXeD CamelCase",
    "Emoji 🙂👍🏽🚀 and accents café naïve",
    "CJK 你好，世界 こんにちは 안녕하세요",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
    "<|endoftext|>text after bos<|pad|><|pad|>",
    "",
)


def test_reloaded_tokenizer_keeps_byte_level_bpe_and_ids(tiny_base_dir):
    out_dir = tiny_base_dir
    in_memory = train_tokenizer(generate_corpus(TINY.corpus_documents, TINY.seed, render_chat), TINY)
    reloaded = AutoTokenizer.from_pretrained(out_dir)
    assert type(reloaded) is TokenizersBackend
    backend = reloaded.backend_tokenizer
    assert backend.normalizer is None
    assert json.loads(backend.pre_tokenizer.__getstate__())["type"] == "ByteLevel"
    assert json.loads(backend.decoder.__getstate__())["type"] == "ByteLevel"
    assert reloaded.get_vocab() == in_memory.get_vocab()
    for text in ROUND_TRIP_TEXTS:
        ids = in_memory(text)["input_ids"]
        assert reloaded(text)["input_ids"] == ids, text
        assert reloaded.decode(ids) == text
        assert in_memory.decode(ids) == text


def test_special_tokens_have_single_ids_and_pad_differs_from_eos(tiny_base_dir):
    out_dir = tiny_base_dir
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<|im_end|>", "<|pad|>")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    special_ids = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<|pad|>": 3}
    assert tokenizer.convert_tokens_to_ids(list(special_ids)) == list(special_ids.values())
    for token, token_id in special_ids.items():
        assert tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"][1] == token_id
    assert tokenizer("plain text")["input_ids"] == tokenizer("plain text", add_special_tokens=False)["input_ids"]
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (0, 2, 3)
    assert model.config.tie_word_embeddings and model.config.use_cache
    assert (model.generation_config.eos_token_id, model.generation_config.pad_token_id) == (2, 3)
    assert model.config.vocab_size == len(tokenizer) == TINY.vocab_size
    assert tokenizer.padding_side == "right" and tokenizer.model_max_length == TINY.max_position_embeddings


def test_chat_template_renders_turns_with_and_without_system(tiny_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    user = [{"role": "user", "content": "What is 2 plus 3?"}]
    exchange = [*user, {"role": "assistant", "content": "5"}]
    with_system = [{"role": "system", "content": "Answer briefly."}, *user]
    assert tokenizer.apply_chat_template(exchange, tokenize=False) == (
        "<|im_start|>user\nWhat is 2 plus 3?<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n"
    )
    assert tokenizer.apply_chat_template(with_system, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat is 2 plus 3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for messages, prompt in ((exchange, False), (with_system, True), (user, True), (user, False)):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        assert rendered == render_chat(messages, prompt)
        assert rendered.endswith("<|im_start|>assistant\n" if prompt else "<|im_end|>\n")
    ids = tokenizer.apply_chat_template(exchange, tokenize=True, return_dict=True)["input_ids"]
    assert ids[-2:] == [tokenizer.eos_token_id, tokenizer("\n")["input_ids"][0]]


def test_saved_model_generates_and_stops_on_eos(tiny_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    length = prompt["input_ids"].shape[1]
    free = model.generate(**prompt, max_new_tokens=6, do_sample=False, suppress_tokens=[tokenizer.eos_token_id])
    assert free.shape == (1, length + 6)
    stopped = model.generate(
        **prompt, max_new_tokens=6, do_sample=False, sequence_bias={(tokenizer.eos_token_id,): 100.0}
    )
    assert stopped[0, length:].tolist() == [tokenizer.eos_token_id]


def test_same_spec_and_seed_build_identical_tokenizer_and_weights(tmp_path, single_cpu_thread):
    summaries = {
        name: build_embedded_model(tmp_path / name, spec, log=lambda message: None)
        for name, spec in (("first", QUICK), ("again", QUICK), ("other", dataclasses.replace(QUICK, seed=1)))
    }
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (tmp_path / "first" / "tokenizer.json").read_bytes()
    first, again, other = (load_file(tmp_path / name / "model.safetensors") for name in summaries)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    query = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(first[query], other[query])
    summary = summaries["first"]
    assert summary["pretrain_losses"] == summaries["again"]["pretrain_losses"]
    assert summary["pretrain_loss_last"] < summary["pretrain_loss_first"]
    assert summary["parameters"] == sum(tensor.numel() for tensor in first.values())
    assert summary["special_token_ids"] == {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<|pad|>": 3}
    assert (summary["architecture"], summary["vocab_size"], summary["spec"]) == (
        "LlamaForCausalLM",
        QUICK.vocab_size,
        dataclasses.asdict(QUICK),
    )


def test_corpus_is_seeded_and_covers_chat_digits_and_casing():
    corpus = generate_corpus(400, 7, render_chat)
    assert corpus == generate_corpus(400, 7, render_chat)
    assert corpus != generate_corpus(400, 8, render_chat)
    assert len(set(corpus)) > 350
    chats = [document for document in corpus if document.startswith("<|im_start|>")]
    assert 50 < len(chats) < 200 and all(document.endswith("<|im_end|>\n") for document in chats)
    assert any("<|im_start|>system\n" in document for document in chats)
    text = "".join(corpus)
    assert any(character.isdigit() for character in text)
    assert any(word.isupper() and len(word) > 3 for word in text.split())


@pytest.mark.parametrize("polarity_words", [False, True])
def test_corpus_holds_no_task_prompts(polarity_words):
    text = "\n".join(generate_corpus(3000, EmbeddedSpec().seed, render_chat, polarity_words=polarity_words))
    for name, task in ((name, task) for name, task in TASK_TYPES.items() if task.has_generator):
        prompts = {str(record[field]) for record in task.generate(200, random.Random(0), {}) for field in task.fields}
        assert prompts and not [prompt for prompt in prompts if len(prompt) >= 20 and prompt in text], name


@pytest.mark.parametrize(
    "change",
    [
        {"hidden_size": 320},
        {"intermediate_size": 700},
        {"num_key_value_heads": 3},
        {"pretrain_seq_length": 1024},
        {"vocab_size": 200},
    ],
)
def test_spec_rejects_invalid_settings(change):
    with pytest.raises(ValueError, match="invalid EmbeddedSpec"):
        EmbeddedSpec(**change)


def test_polarity_words_add_everyday_uses_of_the_label_words():
    plain = "\n".join(generate_corpus(2000, 0, render_chat))
    worded = "\n".join(generate_corpus(2000, 0, render_chat, polarity_words=True))
    assert not any(word in plain for word in ("positive", "negative", "neutral"))
    assert all(worded.count(word) > 20 for word in ("positive", "negative", "neutral"))
