"""DPO on the tiny embedded base: preference pairs from the task generators, training from the base and from
an SFT stage, the artifact reloading as exactly the trained policy, and labels on the classification task."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import train_on_cpu
from peft import PeftModel
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ftassets.backends.local_hf import LocalHFBackend
from ftassets.config import load_project_config
from ftassets.data.datasets import build_splits
from ftassets.tasks import get_task_type
from ftassets.training.dpo import preference_splits
from ftassets.training.recipes import parse_recipe
from ftassets.training.strategies import RecipeError, load_causal_lm, strategy_for
from ftassets.training.tokenize import chat_messages, end_of_turn_id, tokenize_examples
from ftassets.training.trainer import train

PROJECT = load_project_config(Path(__file__).resolve().parents[1] / "configs")
COLORS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")
STEPS = 20
RUNS = {
    # From the SFT stage the policy is already peaked, so DPO moves it less per step: 40 gentler steps after a gentler
    # SFT. 20 steps at 5e-3 after SFT at 1e-2 left the held-out margin between -0.04 and 2.3 nats over recipe seeds
    # 0-3 on an AMD EPYC (below zero with seed 0, which CI had passed on an Intel Xeon); these gave 2.3 to 7.6.
    "sft": dict(
        learning_rate=2e-3,
        max_steps=40,
        eval_steps=40,
        dpo={"start_from": "sft", "sft_max_steps": 12, "sft_learning_rate": 3e-3},
    ),
    "base": dict(learning_rate=5e-3, dpo={"start_from": "base"}),
}


def dpo_recipe(**overrides):
    settings = dict(
        method="dpo",
        max_steps=STEPS,
        batch_size=16,
        warmup_ratio=0.0,
        lr_scheduler="constant",
        logging_steps=5,
        eval_steps=STEPS,
        save_steps=8,
        max_seq_length=64,
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
    )
    return parse_recipe({**settings, **overrides})


def color_rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        color = rng.choice(COLORS)
        rows.append(
            {
                "prompt": f"color: {color}",
                "answer": color,
                "rejected": rng.choice([other for other in COLORS if other != color]),
            }
        )
    return rows


def with_preferences(tokenizer, rows_by_split, max_length, system_prompt=None):
    splits = {
        name: tokenize_examples(
            tokenizer, [r["prompt"] for r in rows], [r["answer"] for r in rows], max_length, system_prompt
        )[0]
        for name, rows in rows_by_split.items()
    }
    return splits | preference_splits(tokenizer, rows_by_split, max_length, system_prompt)[0]


def completion_logps(model, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the chosen and of the rejected completion of every pair, given its prompt."""
    sides = []
    with torch.inference_mode():
        for column in ("chosen_ids", "rejected_ids"):
            sums = []
            for prompt, completion in zip(pairs["prompt_ids"], pairs[column]):
                logits = model(input_ids=torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1]
                sums.append(logits.float().log_softmax(-1).gather(-1, torch.tensor(completion)[:, None]).sum())
            sides.append(torch.stack(sums))
    return sides[0], sides[1]


def reference_model(adapter_dir, base_dir):
    """The reference policy of a run: the SFT-stage model when there was one, else the base."""
    base = load_causal_lm(base_dir, "cpu")
    sft_dir = adapter_dir / "sft"
    return (PeftModel.from_pretrained(base, sft_dir).merge_and_unload() if sft_dir.exists() else base).eval()


@pytest.fixture(scope="module")
def color_splits(tokenizer):
    return with_preferences(tokenizer, {"train": color_rows(64, seed=0), "validation": color_rows(64, seed=1)}, 64)


@pytest.fixture(scope="module")
def dpo_run(request, tiny_base_dir, color_splits, tmp_path_factory):
    start_from = request.param
    root = tmp_path_factory.mktemp(f"dpo_{start_from}")
    recipe = dpo_recipe(**RUNS[start_from])
    result = train_on_cpu(tiny_base_dir, color_splits, recipe, root)
    return recipe, result, root / "adapter"


# preference pairs


@pytest.mark.parametrize("task_name", sorted(PROJECT.tasks))
def test_every_row_has_a_deterministic_rejected_answer_unlike_the_reference(task_name):
    task = PROJECT.tasks[task_name]
    first, second = build_splits(task), build_splits(task)
    rows = [row for split in ("train", "validation", "test") for row in first[split]]
    assert [row["rejected"] for split in first for row in first[split]] == [
        row["rejected"] for split in second for row in second[split]
    ]
    assert all(row["rejected"].strip() and row["rejected"] != row["answer"] for row in rows)
    assert len({row["rejected"] for row in rows}) > 1


def test_preference_pairs_are_the_sft_examples_with_a_second_answer(tokenizer):
    task = PROJECT.tasks["classification"]
    rows = build_splits(task)["train"][:24]
    sft, _ = tokenize_examples(tokenizer, [r["prompt"] for r in rows], [r["answer"] for r in rows], 256, "Be brief.")
    splits, stats = preference_splits(tokenizer, {"train": rows}, 256, "Be brief.")
    pairs = splits["preference_train"]
    assert set(splits) == {"preference_train"} and stats["preference_train"]["examples"] == len(rows) == len(pairs)
    assert {"truncated", "all_masked", "tokens"} <= set(stats["preference_train"])
    end = end_of_turn_id(tokenizer)
    for row, example, pair in zip(rows, sft, pairs):
        assert pair["prompt_ids"] + pair["chosen_ids"] == example["input_ids"]
        assert pair["chosen_ids"][-1] == pair["rejected_ids"][-1] == end
        assert tokenizer.decode(pair["rejected_ids"], skip_special_tokens=True).strip() == row["rejected"]
        assert pair["length"] == len(pair["prompt_ids"]) + max(len(pair["chosen_ids"]), len(pair["rejected_ids"]))
    assert "Be brief." in tokenizer.decode(pairs[0]["prompt_ids"])


def test_rows_without_rejected_answers_ask_for_a_new_dataset(tokenizer):
    rows = [{"id": "old-1", "prompt": "color: red", "answer": "red"}]
    with pytest.raises(ValueError, match=r"1 train row\(s\) have no 'rejected' answer.*materialize the dataset asset"):
        preference_splits(tokenizer, {"train": rows}, 64)


# training, artifact and reload


@pytest.mark.parametrize("dpo_run", list(RUNS), indirect=True)
def test_dpo_starts_at_the_reference_and_writes_its_stages(dpo_run):
    recipe, result, adapter_dir = dpo_run
    assert result.method == "dpo" and result.steps == recipe.max_steps
    losses = [loss for _, loss in result.train_loss]
    assert all(math.isfinite(loss) for loss in losses)
    # The first batch is scored before any update, when the policy is the reference: -log sigmoid(0).
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert min(losses[1:]) < math.log(2)
    names = {path.name for path in adapter_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "recipe.json"} <= names
    assert "ref" not in names
    assert ("sft" in names) == (recipe.dpo.start_from == "sft")


@pytest.mark.parametrize("dpo_run", list(RUNS), indirect=True)
def test_dpo_widens_the_gap_between_chosen_and_rejected(dpo_run, tiny_base_dir, color_splits):
    recipe, _, adapter_dir = dpo_run
    policy = strategy_for(recipe).load_finetuned(adapter_dir, tiny_base_dir, "cpu")
    reference = reference_model(adapter_dir, tiny_base_dir)
    margins = {}
    for split in ("preference_train", "preference_validation"):
        chosen, rejected = completion_logps(policy, color_splits[split])
        ref_chosen, ref_rejected = completion_logps(reference, color_splits[split])
        margins[split] = ((chosen - ref_chosen) - (rejected - ref_rejected)).mean().item()
    # Summed log-probability gaps, in nats; the tiny base generalises weakly, so held-out pairs only need to move.
    assert margins["preference_train"] > 1.0 and margins["preference_validation"] > 0, margins


@pytest.mark.parametrize("dpo_run", list(RUNS), indirect=True)
def test_reloaded_artifact_is_the_trained_policy_and_merges_exactly(dpo_run, tiny_base_dir, color_splits, tmp_path):
    recipe, result, adapter_dir = dpo_run
    strategy = strategy_for(recipe)
    policy = strategy.load_finetuned(adapter_dir, tiny_base_dir, "cpu")
    pairs = color_splits["preference_validation"]
    chosen, rejected = completion_logps(policy, pairs)
    ref_chosen, ref_rejected = completion_logps(reference_model(adapter_dir, tiny_base_dir), pairs)
    loss = -F.logsigmoid(recipe.dpo.beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()
    assert loss.item() == pytest.approx(result.final_val_loss, abs=1e-4)

    summary = strategy.merge(adapter_dir, tiny_base_dir, tmp_path / "merged")
    lora_layers = sum(1 for name, _ in policy.named_modules() if name.endswith(".lora_A"))
    stages = 2 if recipe.dpo.start_from == "sft" else 1
    assert summary["method"] == "dpo" and summary["merged_adapter_layers"] == stages * lora_layers > 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    inputs = torch.randint(4, merged.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = policy(input_ids=inputs).logits
        torch.testing.assert_close(merged(inputs).logits, expected, atol=1e-4, rtol=0)
        assert (reference_model(adapter_dir, tiny_base_dir)(inputs).logits - expected).abs().max() > 1e-2


@pytest.mark.parametrize("dpo_run", ["sft"], indirect=True)
def test_a_resumed_run_replays_the_sft_stage_and_continues_the_dpo(dpo_run, tiny_base_dir, color_splits, tmp_path):
    recipe, finished, adapter_dir = dpo_run
    steps, last_saved = recipe.max_steps, (recipe.max_steps - 1) // recipe.save_steps * recipe.save_steps
    shutil.copytree(adapter_dir.parent / "checkpoints", tmp_path / "checkpoints")
    shutil.rmtree(tmp_path / "checkpoints" / f"checkpoint-{steps}")
    messages = []
    resumed = train_on_cpu(tiny_base_dir, color_splits, recipe, tmp_path, log=messages.append)
    assert any("resuming from" in message and f"checkpoint-{last_saved}" in message for message in messages)
    assert resumed.steps == steps and resumed.final_val_loss == pytest.approx(finished.final_val_loss, abs=1e-4)
    for weights in ("adapter_model.safetensors", "sft/adapter_model.safetensors"):
        expected, actual = load_file(adapter_dir / weights), load_file(tmp_path / "adapter" / weights)
        assert expected.keys() == actual.keys()
        for name in expected:
            torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=0)


def test_dpo_from_sft_answers_classification_with_labels(tiny_base_dir, tokenizer, tmp_path):
    task = PROJECT.tasks["classification"]
    rows = build_splits(task)
    splits = with_preferences(tokenizer, {"train": rows["train"][:256]}, 128, task.config.system_prompt)
    recipe = dpo_recipe(
        max_steps=10,
        eval_steps=10,
        save_steps=10,
        max_seq_length=128,
        learning_rate=1e-3,
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
        dpo={"start_from": "sft", "sft_max_steps": 120, "sft_learning_rate": 3e-3},
    )
    train_on_cpu(tiny_base_dir, splits, recipe, tmp_path)
    test = rows["test"][:60]
    conversations = [chat_messages(row["prompt"], system_prompt=task.config.system_prompt) for row in test]
    classification = get_task_type("classification")
    scores = {}
    for variant, model in (
        ("base", load_causal_lm(tiny_base_dir, "cpu")),
        ("dpo", strategy_for(recipe).load_finetuned(tmp_path / "adapter", tiny_base_dir, "cpu")),
    ):
        with LocalHFBackend(model, tokenizer) as backend:
            texts = [g.text for g in backend.generate(conversations, task.max_new_tokens)]
        scores[variant] = classification.score(test, texts).metrics
    assert scores["base"]["accuracy"] == 0.0
    assert scores["dpo"]["accuracy"] >= 0.2 and scores["dpo"]["parse_failures"] < len(test) / 2, scores


# validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dpo": {"betta": 0.2}}, r"dpo\.betta\s+Extra inputs are not permitted"),
        ({"dpo": {"beta": 0}}, r"dpo\.beta\s+Input should be greater than 0"),
        ({"dpo": {"beta": -0.1}}, r"dpo\.beta\s+Input should be greater than 0"),
        ({"dpo": {"start_from": "ppo"}}, r"dpo\.start_from\s+Input should be 'sft' or 'base'"),
        ({"dpo": {"loss_type": "kto"}}, r"dpo\.loss_type\s+Input should be 'sigmoid', 'ipo' or 'hinge'"),
        ({"dpo": {"start_from": "base", "sft_max_steps": 5}}, r"dpo\.sft_max_steps set but dpo\.start_from is 'base'"),
        ({"lora": {"loraplus_lr_ratio": 8}}, r"lora\.loraplus_lr_ratio is not applied to DPO"),
    ],
)
def test_bad_dpo_values_name_the_field(overrides, message):
    with pytest.raises(ValidationError, match=message):
        dpo_recipe(**overrides)


def test_default_dpo_recipe_starts_from_sft_and_round_trips():
    recipe = parse_recipe({"method": "dpo"})
    assert recipe.dpo.start_from == "sft" and recipe.dpo.beta > 0 and recipe.mergeable
    base_start = dpo_recipe(dpo={"start_from": "base"})
    assert parse_recipe(base_start.model_dump(mode="json")) == base_start


def test_dpo_without_preference_splits_fails_before_training(tiny_base_dir, color_splits, tmp_path):
    sft_only = {name: color_splits[name] for name in ("train", "validation")}
    with pytest.raises(
        RecipeError, match=r"method: 'dpo' needs the 'preference_train' split.*\['train', 'validation'\]"
    ):
        train(
            tiny_base_dir,
            sft_only,
            dpo_recipe(**RUNS["sft"]),
            tmp_path / "out",
            tmp_path / "checkpoints",
            device="cpu",
            log=lambda message: None,
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("checkpoints/checkpoint-*"))
