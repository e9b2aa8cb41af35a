"""Each peft training method on the tiny embedded base: it trains, saves, loads back, and merges or
generates as its recipe says. Runs are short (8 steps on 48 examples), so they check wiring, not quality."""

from __future__ import annotations

import json
import math
import random
import sys

import pytest
import torch
from helpers import train_on_cpu
from peft import get_peft_model_state_dict
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, set_seed

from ftassets.backends.local_hf import LocalHFBackend
from ftassets.training.recipes import METHODS, is_mergeable, parse_recipe
from ftassets.training.strategies import STRATEGIES, RecipeError, strategy_for
from ftassets.training.tokenize import chat_messages, encode_chats, tokenize_examples
from ftassets.training.trainer import train

COLORS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")

RUNS = {
    "qlora": dict(learning_rate=1e-2, lora={"r": 8, "alpha": 16, "dropout": 0.0}, bnb_4bit_compute_dtype="float32"),
    "dora": dict(learning_rate=1e-2, lora={"r": 8, "alpha": 16, "dropout": 0.0}),
    "ia3": dict(learning_rate=5e-2),
    "prefix": dict(learning_rate=1e-1, prefix={"num_virtual_tokens": 8}),
    "ptuning": dict(learning_rate=3e-2, ptuning={"num_virtual_tokens": 8, "encoder_hidden_size": 64}),
}
MERGEABLE = ("qlora", "dora", "ia3")
PROMPT_LEARNING = ("prefix", "ptuning")
# Folding an adapter into fp32 weights reorders float sums only; measured max |delta logit| is below 2e-6 for
# every method here. QLoRA is compared on the fp32 base: its adapter was trained against NF4-dequantized weights,
# but evaluation and export both apply it to the same 16/32-bit base, so they must agree as tightly as LoRA.
MERGE_ATOL = {"qlora": 1e-4, "dora": 1e-4, "ia3": 1e-4}


def recipe_for(method: str, **overrides):
    settings = dict(
        method=method,
        max_steps=8,
        batch_size=16,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        logging_steps=1,
        eval_steps=8,
        save_steps=8,
        max_seq_length=64,
    )
    return parse_recipe({**settings, **RUNS[method], **overrides})


@pytest.fixture(scope="module")
def color_splits(tokenizer):
    rng = random.Random(0)
    colors = [rng.choice(COLORS) for _ in range(48)]
    train_split, _ = tokenize_examples(tokenizer, [f"color: {color}" for color in colors], colors, max_length=64)
    return {"train": train_split}


@pytest.fixture(scope="module")
def trained(request, tiny_base_dir, color_splits, tmp_path_factory):
    method = request.param
    root = tmp_path_factory.mktemp(method)
    recipe = recipe_for(method)
    result = train_on_cpu(tiny_base_dir, color_splits, recipe, root)
    return method, recipe, result, root / "adapter"


def test_every_method_has_one_recipe_and_one_strategy():
    assert set(METHODS) == set(STRATEGIES)
    for method in METHODS:
        recipe = parse_recipe({"method": method})
        assert strategy_for(recipe).method == method
        assert strategy_for(recipe).mergeable == recipe.mergeable == is_mergeable(recipe)
    assert [m for m in METHODS if not parse_recipe({"method": m}).mergeable] == list(PROMPT_LEARNING)


@pytest.mark.parametrize("trained", list(RUNS), indirect=True)
def test_method_trains_and_writes_an_adapter(trained, tiny_base_dir):
    method, recipe, result, adapter_dir = trained
    assert result.method == method and result.steps == 8
    assert 0 < result.trainable_params < result.total_params / 10
    losses = [loss for _, loss in result.train_loss]
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    assert min(losses[-3:]) < losses[0]
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "recipe.json"} <= {
        path.name for path in adapter_dir.iterdir()
    }
    assert parse_recipe_file(adapter_dir) == recipe

    strategy = strategy_for(recipe)
    set_seed(recipe.seed)
    initial = get_peft_model_state_dict(strategy.prepare_model(tiny_base_dir, recipe, "cpu"))
    final = get_peft_model_state_dict(strategy.load_finetuned(adapter_dir, tiny_base_dir, "cpu"))
    assert sorted(initial) == sorted(final)
    changed = [name for name in final if not torch.allclose(initial[name].float(), final[name].float())]
    assert changed, f"{method}: no adapter tensor moved from its initial value"


def parse_recipe_file(adapter_dir):
    return parse_recipe(json.loads((adapter_dir / "recipe.json").read_text()))


@pytest.mark.parametrize("trained", MERGEABLE, indirect=True)
def test_merged_model_matches_the_adapter(trained, tiny_base_dir, tmp_path):
    method, recipe, _, adapter_dir = trained
    strategy = strategy_for(recipe)
    adapted = strategy.load_finetuned(adapter_dir, tiny_base_dir, "cpu")
    assert all(param.dtype == torch.float32 for param in adapted.parameters())
    summary = strategy.merge(adapter_dir, tiny_base_dir, tmp_path / "merged")
    assert summary["method"] == method and summary["merged_adapter_layers"] > 0 and summary["dtype"] == "float32"
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    assert not any("lora" in name or "ia3" in name for name, _ in merged.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32).eval()
    inputs = torch.randint(4, merged.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = adapted(input_ids=inputs).logits
        torch.testing.assert_close(merged(inputs).logits, expected, atol=MERGE_ATOL[method], rtol=0)
        assert (base(inputs).logits - expected).abs().max() > 100 * MERGE_ATOL[method]


def test_qlora_trains_on_4bit_nf4_weights(tiny_base_dir):
    import bitsandbytes as bnb

    recipe = recipe_for("qlora")
    model = strategy_for(recipe).prepare_model(tiny_base_dir, recipe, "cpu")
    quantized = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert quantized and all(module.weight.quant_type == "nf4" for module in quantized)
    assert all(module.weight.quant_state.nested for module in quantized)
    assert all(module.compute_dtype == torch.float32 for module in quantized)
    assert all(not param.requires_grad for name, param in model.named_parameters() if "lora_" not in name)


@pytest.mark.parametrize("trained", PROMPT_LEARNING, indirect=True)
def test_prompt_learning_cannot_merge_but_generates(trained, tiny_base_dir, tokenizer, tmp_path):
    method, recipe, _, adapter_dir = trained
    strategy = strategy_for(recipe)
    assert type(recipe).mergeable is False and strategy.mergeable is False and not is_mergeable(recipe)
    with pytest.raises(RecipeError, match=rf"method: '{method}'.*cannot be merged"):
        strategy.merge(adapter_dir, tiny_base_dir, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()

    model = strategy.load_finetuned(adapter_dir, tiny_base_dir, "cpu")
    conversations = [
        chat_messages(prompt)
        for prompt in (
            "color: red",
            "color: a long and winding description of blue",
            "color: green please",
            "color: red",
        )
    ]
    prompts = encode_chats(tokenizer, conversations, add_generation_prompt=True)
    masks = []
    generate = model.generate
    model.generate = lambda **kwargs: masks.append(kwargs["attention_mask"]) or generate(**kwargs)
    with LocalHFBackend(model, tokenizer) as backend:
        batched = backend.generate(conversations, 6)
        alone = [backend.generate([conversation], 6)[0] for conversation in conversations]
    assert len(batched) == 4 and all(isinstance(g.text, str) and g.text and g.completion_tokens > 0 for g in batched)
    assert [g.prompt_tokens for g in batched] == [len(p) for p in prompts] and len(set(map(len, prompts))) == 3
    assert [g.text for g in batched] == [g.text for g in alone]

    # Left padding sits between the virtual tokens and the prompt and shifts their relative positions (peft
    # ignores position ids), so the logits of a padded prompt differ from its own; the backend must not pad.
    assert sorted(mask.shape[0] for mask in masks[:3]) == [1, 1, 2] and all(bool(mask.all()) for mask in masks)
    width = max(map(len, prompts))
    padded = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    padding_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        last = model(input_ids=padded, attention_mask=padding_mask).logits[:, -1]
        own = model(input_ids=torch.tensor([prompts[0]])).logits[0, -1]
        base = model.get_base_model()(input_ids=torch.tensor([prompts[0]])).logits[0, -1]
    assert (last[0] - own).abs().max() > 1e-3
    assert (own - base).abs().max() > 1e-2

    # generate() must apply the virtual tokens too, not only forward() (transformers 5.24 dropped them there).
    with torch.inference_mode():
        first_step = model.generate(
            input_ids=torch.tensor([prompts[0]]),
            attention_mask=torch.ones(1, len(prompts[0]), dtype=torch.long),
            max_new_tokens=1,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        ).logits[0][0]
    assert torch.allclose(first_step, own, atol=1e-4), "generation ignores the trained virtual tokens"


# validation: bad values fail before any model is loaded, or before training starts


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        ("qlora", {"lora": {"r": 0}}, r"lora\.r\s+Input should be greater than 0"),
        ("dora", {"lora": {"r": -4}}, r"lora\.r\s+Input should be greater than 0"),
        (
            "qlora",
            {"bnb_4bit_compute_dtype": "int8"},
            r"bnb_4bit_compute_dtype\s+Input should be 'float32', 'bfloat16' or 'float16'",
        ),
        (
            "prefix",
            {"prefix": {"num_virtual_tokens": 0}},
            r"prefix\.num_virtual_tokens\s+Input should be greater than 0",
        ),
        ("ptuning", {"ptuning": {"num_virtual_tokens": -1}}, r"ptuning\.num_virtual_tokens\s+Input should be greater"),
        (
            "ptuning",
            {"ptuning": {"num_virtual_tokens": 8, "encoder_hidden_size": 0}},
            r"ptuning\.encoder_hidden_size\s+Input should be greater than 0",
        ),
        (
            "ia3",
            {"ia3": {"target_modules": ["k_proj"], "feedforward_modules": ["down_proj"]}},
            r"ia3\.feedforward_modules \['down_proj'\] are not in ia3\.target_modules",
        ),
        ("ia3", {"ia3": {"target_modules": ["k_proj"]}}, r"must both be 'auto' or both be lists"),
        (
            "prefix",
            {"prefix": {"num_virtual_tokens": 8, "depth": 2}},
            r"prefix\.depth\s+Extra inputs are not permitted",
        ),
    ],
)
def test_bad_recipe_values_name_the_field(method, overrides, message):
    with pytest.raises(ValidationError, match=message):
        recipe_for(method, **overrides)


@pytest.mark.parametrize(
    ("method", "overrides", "message"),
    [
        (
            "ia3",
            {"ia3": {"target_modules": ["k_proj", "query_key_value"], "feedforward_modules": []}},
            r"ia3\.target_modules:.*\['query_key_value'\]; available: .*'k_proj'",
        ),
        ("dora", {"lora": {"target_modules": ["qkv"]}}, r"lora\.target_modules:.*\['qkv'\].*or 'all-linear'"),
        (
            "prefix",
            {"prefix": {"num_virtual_tokens": 256}},
            r"prefix\.num_virtual_tokens: 256 leaves no room.*fewer than 256",
        ),
    ],
)
def test_recipes_that_do_not_fit_the_model_fail_before_training(
    method, overrides, message, tiny_base_dir, color_splits, tmp_path
):
    with pytest.raises(RecipeError, match=message):
        train(
            tiny_base_dir,
            color_splits,
            recipe_for(method, **overrides),
            tmp_path / "out",
            tmp_path / "checkpoints",
            device="cpu",
            log=lambda message: None,
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("checkpoints/checkpoint-*"))


def test_qlora_without_bitsandbytes_says_what_is_needed(tiny_base_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    recipe = recipe_for("qlora")
    with pytest.raises(RecipeError, match=r"method: 'qlora' needs bitsandbytes.*pip install"):
        strategy_for(recipe).prepare_model(tiny_base_dir, recipe, "cpu")
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    with pytest.raises(RecipeError, match=r"method: 'qlora' needs bitsandbytes"):
        strategy_for(recipe).validate(recipe, base)
