from __future__ import annotations

import random

import pytest

from ftassets.backends.local_hf import LocalHFBackend
from ftassets.devices import resolve_device
from ftassets.training.recipes import FullRecipe
from ftassets.training.strategies import load_tokenizer
from ftassets.training.tokenize import chat_messages, encode_chats, tokenize_examples
from ftassets.training.trainer import train

COLORS = ("red", "green", "blue", "yellow")
OTHER_PROMPTS = (
    "Hi",
    "What is the weather like in Paris today, and should I take an umbrella to the market?",
    "Name a fruit.",
    "Tell me about bread, rice and soup for dinner tonight please.",
)


@pytest.fixture(scope="module")
def taught_model_dir(tiny_base_dir, tmp_path_factory):
    """The tiny base fully fine-tuned to answer "color: X" with X, so it has learned to stop."""
    rng = random.Random(0)
    colors = [rng.choice(COLORS) for _ in range(64)]
    tokenizer = load_tokenizer(tiny_base_dir)
    dataset, _ = tokenize_examples(tokenizer, [f"color: {color}" for color in colors], colors, 64)
    root = tmp_path_factory.mktemp("taught")
    recipe = FullRecipe(
        method="full",
        max_steps=48,
        batch_size=16,
        learning_rate=3e-3,
        lr_scheduler="constant",
        eval_steps=100,
        save_steps=100,
        logging_steps=8,
    )
    train(
        tiny_base_dir,
        {"train": dataset},
        recipe,
        root / "model",
        root / "checkpoints",
        device="cpu",
        log=lambda message: None,
    )
    return root / "model"


def test_generation_stops_at_the_end_of_turn(taught_model_dir):
    with LocalHFBackend(model_dir=taught_model_dir, device="cpu") as backend:
        conversations = [chat_messages(f"color: {color}") for color in COLORS]
        generations = backend.generate(conversations, max_new_tokens=20)
        tokenizer = backend.tokenizer
        assert [generation.text for generation in generations] == list(COLORS)
        for color, conversation, generation in zip(COLORS, conversations, generations):
            answer_ids = encode_chats(tokenizer, [chat_messages("c", color)], add_generation_prompt=False)[0]
            prompt_only = encode_chats(tokenizer, [chat_messages("c")], add_generation_prompt=True)[0]
            assert generation.completion_tokens == len(answer_ids) - len(prompt_only) - 1
            assert generation.prompt_tokens == len(encode_chats(tokenizer, [conversation], True)[0])
            assert generation.latency_s > 0
        assert backend.peak_memory_mb > 0
    assert backend.model is None


def test_batched_generation_equals_one_at_a_time_in_input_order(taught_model_dir):
    prompts = [*OTHER_PROMPTS, "color: yellow", "color: red", "Say something about Tokyo and Lima.", "x"]
    conversations = [
        chat_messages(prompt, system_prompt="Be brief." if i % 3 == 0 else None) for i, prompt in enumerate(prompts)
    ]
    with LocalHFBackend(model_dir=taught_model_dir, device="cpu", batch_size=3) as batched:
        together = batched.generate(conversations, max_new_tokens=12)
        alone = [batched.generate([conversation], max_new_tokens=12)[0] for conversation in conversations]
        cut = batched.generate(conversations, max_new_tokens=2)
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.completion_tokens for g in together] == [g.completion_tokens for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]
    assert len({g.text for g in together}) >= 3
    assert together[4].text == "yellow" and together[5].text == "red"
    assert all(short.completion_tokens <= 2 and full.text.startswith(short.text) for short, full in zip(cut, together))
    assert len({g.latency_s for g in together}) == 3


def test_a_shared_prefix_is_processed_once_and_changes_no_generation(taught_model_dir):
    """Prompts sharing a system prompt: each batch starts from the prefix's KV cache, padded after the prefix,
    and generates exactly what plain left-padded batches (no prefix cache) generate."""
    system = "You answer with the color named after the colon, and nothing else at all."
    prompts = [*OTHER_PROMPTS, "color: yellow", "color: red", "color: green", "x"]
    conversations = [chat_messages(prompt, system_prompt=system) for prompt in prompts]
    with LocalHFBackend(model_dir=taught_model_dir, device="cpu", batch_size=3) as cached:
        tokenizer = cached.tokenizer
        prefix, cache = cached.shared_prefix(encode_chats(tokenizer, conversations, add_generation_prompt=True))
        assert len(prefix) > len(tokenizer(system)["input_ids"]) and cache.get_seq_length() == len(prefix)
        with_cache = cached.generate(conversations, max_new_tokens=12)
    with LocalHFBackend(model_dir=taught_model_dir, device="cpu", batch_size=3, prefix_cache=False) as plain:
        assert plain.shared_prefix(encode_chats(tokenizer, conversations, add_generation_prompt=True)) == ([], None)
        without = plain.generate(conversations, max_new_tokens=12)
    assert [g.text for g in with_cache] == [g.text for g in without]
    assert [g.completion_tokens for g in with_cache] == [g.completion_tokens for g in without]
    assert [g.prompt_tokens for g in with_cache] == [g.prompt_tokens for g in without]
    assert len({g.text for g in with_cache}) >= 3


def test_a_loaded_model_can_be_passed_directly(taught_model_dir):
    from ftassets.training.strategies import load_causal_lm

    model, tokenizer = load_causal_lm(taught_model_dir, "cpu"), load_tokenizer(taught_model_dir)
    with LocalHFBackend(model, tokenizer, name="taught") as backend:
        assert backend.name == "taught" and backend.device == "cpu"
        assert backend.generate([chat_messages("color: blue")], max_new_tokens=8)[0].text == "blue"
    with pytest.raises(ValueError, match="either model"):
        LocalHFBackend(model, tokenizer, model_dir=taught_model_dir)


def test_device_resolution_validates_explicit_choices():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == (
        "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    )
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_reference_perplexity_falls_with_fine_tuning(taught_model_dir, tiny_base_dir):
    prompts, answers = [f"color: {color}" for color in COLORS], list(COLORS)
    with LocalHFBackend(model_dir=taught_model_dir, device="cpu", batch_size=3) as taught:
        tuned = taught.perplexity(prompts, answers)
        one_by_one = [taught.perplexity([p], [a]) for p, a in zip(prompts, answers)]
    with LocalHFBackend(model_dir=tiny_base_dir, device="cpu") as base:
        untuned = base.perplexity(prompts, answers)
    assert 1.0 <= tuned < 2.0 < untuned
    assert min(one_by_one) <= tuned <= max(one_by_one), (
        "padding in a batch does not change the answer tokens' likelihood"
    )


def test_batches_are_bounded_by_prompt_count_and_padded_tokens(taught_model_dir):
    backend = LocalHFBackend(model_dir=taught_model_dir, device="cpu", batch_size=3, max_batch_tokens=20)
    prompts = [[0] * length for length in (2, 3, 4, 4, 5, 9, 10, 30)]
    batches = backend._batches(list(range(len(prompts))), prompts)
    assert batches == [[0, 1, 2], [3, 4], [5, 6], [7]], (
        "3 prompts at most; 20 padded tokens unless a prompt alone is longer"
    )
    assert sorted(i for batch in batches for i in batch) == list(range(len(prompts)))
