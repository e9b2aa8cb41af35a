"""The fused LoRA forward computes exactly peft's function and gradients, and leaves every other layer
state (DoRA, adapters disabled or merged) to peft."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from ftassets.training.fused_lora import fuse_lora_layers
from ftassets.training.recipes import parse_recipe
from ftassets.training.strategies import strategy_for

INPUT_IDS = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11], [8, 9, 10, 11, 12, 13, 14, 15]])


def lora_model(base_dir, use_dora=False, dropout=0.1):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear", use_dora=use_dora)
    )
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would hide a wrong LoRA term
            torch.nn.init.normal_(parameter, std=0.05)
    return model.train()


def logits_and_grads(model, seed=1):
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout masks in both models: both draw them in the same order
    logits = model(input_ids=INPUT_IDS).logits
    logits.square().mean().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_fused_layers_give_peft_outputs_and_gradients(tiny_base_dir):
    reference, fused = lora_model(tiny_base_dir), lora_model(tiny_base_dir)
    assert fuse_lora_layers(fused) == 14  # q, k, v, o, gate, up, down in each of the 2 layers

    expected_logits, expected_grads = logits_and_grads(reference)
    logits, grads = logits_and_grads(fused)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert all(grad.abs().sum() > 0 for grad in grads.values())


def test_disabled_merged_and_dora_layers_keep_peft_behaviour(tiny_base_dir):
    fused = lora_model(tiny_base_dir, dropout=0.0).eval()
    fuse_lora_layers(fused)
    with torch.no_grad():
        adapted = fused(input_ids=INPUT_IDS).logits
        with fused.disable_adapter():
            base = fused(input_ids=INPUT_IDS).logits
        fused.merge_adapter()
        merged = fused(input_ids=INPUT_IDS).logits
        fused.unmerge_adapter()
        plain = (
            AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32).eval()(input_ids=INPUT_IDS).logits
        )
    torch.testing.assert_close(base, plain)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(adapted, base, atol=1e-3)

    assert fuse_lora_layers(lora_model(tiny_base_dir, use_dora=True)) == 0


def test_fused_layers_follow_autocast(tiny_base_dir):
    reference, fused = lora_model(tiny_base_dir, dropout=0.0), lora_model(tiny_base_dir, dropout=0.0)
    fuse_lora_layers(fused)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, _ = logits_and_grads(reference)
        logits, grads = logits_and_grads(fused)
    assert logits.dtype == expected.dtype
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.05)  # bf16 rounds each matmul differently
    assert all(grad.dtype == torch.float32 and torch.isfinite(grad).all() for grad in grads.values())


@pytest.mark.parametrize(("method", "fused_layers"), [("lora", 14), ("dora", 0)])
def test_the_lora_strategy_trains_fused_layers(tiny_base_dir, method, fused_layers):
    recipe = parse_recipe({"method": method, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    model = strategy_for(recipe).prepare_model(tiny_base_dir, recipe, "cpu")
    assert (
        sum("_fused_forward" in getattr(module.forward, "__name__", "") for module in model.modules()) == fused_layers
    )
