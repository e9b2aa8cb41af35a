from __future__ import annotations

import math
import random
import shutil

import pytest
import torch
from helpers import train_on_cpu
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from ftassets.backends.local_hf import LocalHFBackend
from ftassets.training.recipes import FullRecipe, LoraRecipe
from ftassets.training.strategies import PaddingCollator, RecipeError, load_tokenizer, strategy_for
from ftassets.training.tokenize import (
    IGNORE_INDEX,
    chat_messages,
    encode_chats,
    load_tokenized,
    save_tokenized,
    stop_token_ids,
    tokenize_examples,
)
from ftassets.training.trainer import TrainingDiverged, train

COLORS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")


def color_examples(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    colors = [rng.choice(COLORS) for _ in range(count)]
    return [f"color: {color}" for color in colors], colors


@pytest.fixture(scope="module")
def color_splits(tokenizer):
    train_split, _ = tokenize_examples(tokenizer, *color_examples(64), max_length=64)
    validation, _ = tokenize_examples(tokenizer, *color_examples(16, seed=1), max_length=64)
    return {"train": train_split, "validation": validation}


def lora_recipe(**overrides) -> LoraRecipe:
    settings = dict(
        method="lora",
        max_steps=16,
        batch_size=16,
        learning_rate=1e-2,
        eval_steps=8,
        save_steps=8,
        logging_steps=4,
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
    )
    return LoraRecipe(**{**settings, **overrides})


@pytest.fixture(scope="module")
def lora_run(tiny_base_dir, color_splits, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_run")
    recipe = lora_recipe()
    result = train_on_cpu(tiny_base_dir, color_splits, recipe, root)
    return recipe, result, root


# tokenization


def test_labels_cover_exactly_the_answer_and_end_of_turn(tokenizer):
    dataset, stats = tokenize_examples(tokenizer, ["color: red", "pick one: blue or green"], ["red", "green"], 64)
    prompt_ids = encode_chats(tokenizer, [chat_messages("color: red")], add_generation_prompt=True)[0]
    row = dataset[0]
    assert row["input_ids"][: len(prompt_ids)] == prompt_ids
    assert row["labels"][: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert row["labels"][len(prompt_ids) :] == row["input_ids"][len(prompt_ids) :]
    labelled = [label for label in row["labels"] if label != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "red" + tokenizer.eos_token
    assert labelled[-1] == tokenizer.eos_token_id == stop_token_ids(tokenizer)[0]
    assert stats["examples"] == 2 and stats["truncated"] == stats["all_masked"] == 0
    assert stats["tokens"] == sum(len(ids) for ids in dataset["input_ids"])
    assert stats["answer_tokens"] == sum(label != IGNORE_INDEX for labels in dataset["labels"] for label in labels)
    assert stats["max_length"] == max(len(ids) for ids in dataset["input_ids"])


def test_system_prompt_is_rendered_and_masked(tokenizer):
    dataset, _ = tokenize_examples(tokenizer, ["color: red"], ["red"], 64, system_prompt="Answer with one word.")
    row = dataset[0]
    assert "Answer with one word." in tokenizer.decode(row["input_ids"])
    labelled = [label for label in row["labels"] if label != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "red" + tokenizer.eos_token


def test_truncation_and_fully_masked_examples_are_counted(tokenizer):
    prompts, answers = ["color: red", "a much longer prompt " * 8], ["red", "green"]
    full, _ = tokenize_examples(tokenizer, prompts, answers, 256)
    short_length = len(full[0]["input_ids"])
    dataset, stats = tokenize_examples(tokenizer, prompts, answers, max_length=short_length)
    assert stats["truncated"] == 1 and stats["all_masked"] == 1
    assert stats["max_length"] == short_length
    assert all(label == IGNORE_INDEX for label in dataset[1]["labels"])
    cut, stats = tokenize_examples(tokenizer, prompts[:1], answers[:1], max_length=short_length - 1)
    assert stats["truncated"] == 1 and stats["all_masked"] == 0
    assert tokenizer.eos_token_id not in cut[0]["labels"]


def test_padding_uses_pad_id_and_keeps_the_eos_label(tokenizer):
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    dataset, _ = tokenize_examples(tokenizer, ["color: red", "pick one of these: blue or green"], ["red", "green"], 64)
    batch = PaddingCollator(tokenizer.pad_token_id)([dataset[0], dataset[1]])
    short = len(dataset[0]["input_ids"])
    assert batch["input_ids"].shape[1] > short
    assert (batch["input_ids"][0, short:] == tokenizer.pad_token_id).all()
    assert (batch["labels"][0, short:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][0, short:] == 0).all() and (batch["attention_mask"][0, :short] == 1).all()
    assert batch["labels"][0, short - 1] == tokenizer.eos_token_id
    pad_is_eos = PaddingCollator(tokenizer.eos_token_id)([dataset[0], dataset[1]])
    assert pad_is_eos["labels"][0, short - 1] == tokenizer.eos_token_id
    assert (pad_is_eos["labels"][0, short:] == IGNORE_INDEX).all()


LLAMA3_STYLE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n{% endif %}"
)
LLAMA3_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
PHI3_STYLE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}"
)


@pytest.mark.parametrize(
    ("template", "end_of_turn", "extra_tokens"),
    [
        (LLAMA3_STYLE, "<|eot_id|>", LLAMA3_TOKENS),
        (PHI3_STYLE, "<|end|>", ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
    ],
)
def test_other_families_templates_label_up_to_their_end_of_turn(tiny_base_dir, template, end_of_turn, extra_tokens):
    other = AutoTokenizer.from_pretrained(tiny_base_dir)
    other.add_special_tokens({"additional_special_tokens": extra_tokens})
    other.chat_template = template
    dataset, stats = tokenize_examples(other, ["color: red"], ["red"], 64, system_prompt="Be brief.")
    labelled = [label for label in dataset[0]["labels"] if label != IGNORE_INDEX]
    assert other.decode(labelled) == "red" + end_of_turn
    assert dataset[0]["input_ids"][-1] == other.convert_tokens_to_ids(end_of_turn)
    assert stop_token_ids(other)[0] == other.convert_tokens_to_ids(end_of_turn)
    assert stats["all_masked"] == 0


def test_template_problems_raise_clear_errors(tiny_base_dir):
    broken = AutoTokenizer.from_pretrained(tiny_base_dir)
    broken.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    with pytest.raises(ValueError, match="end-of-turn"):
        tokenize_examples(broken, ["color: red"], ["red"], 64)
    # Llama 3's header ends in "\n\n"; a GPT-2 pre-tokenizer merges it into one token when it ends the prompt,
    # but splits it before the answer, so the prompt's ids are not a prefix of the conversation's.
    broken.add_special_tokens({"additional_special_tokens": LLAMA3_TOKENS})
    broken.chat_template = LLAMA3_STYLE.replace("<|end_header_id|>\n", "<|end_header_id|>\n\n")
    with pytest.raises(ValueError, match="not a prefix"):
        tokenize_examples(broken, ["color: red"], ["red"], 64)


def test_tokenized_splits_round_trip(tmp_path, color_splits):
    save_tokenized(tmp_path, color_splits)
    loaded = load_tokenized(tmp_path)
    assert sorted(loaded) == ["train", "validation"]
    assert loaded["train"]["labels"][:] == color_splits["train"]["labels"][:]


# training


def test_lora_training_learns_and_writes_artifacts(lora_run, color_splits):
    recipe, result, root = lora_run
    assert result.method == "lora" and result.device == "cpu"
    assert result.steps == 16 and result.epochs == pytest.approx(4.0)
    assert 0 < result.trainable_params < result.total_params / 10
    assert result.tokens_seen == 4 * sum(len(ids) for ids in color_splits["train"]["input_ids"])
    assert result.tokens_per_second > 0 and result.wall_seconds > 0 and result.peak_memory_mb > 0
    assert [step for step, _ in result.train_loss] == [1, 4, 8, 12, 16]
    assert [step for step, _ in result.val_loss] == [8, 16]
    assert result.final_train_loss < result.train_loss[0][1] - 1.0
    assert result.final_val_loss < result.val_loss[0][1]
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "recipe.json",
    } <= {path.name for path in (root / "adapter").iterdir()}
    assert sorted(path.name for path in (root / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-16",
        "checkpoint-8",
    ]
    assert result.to_dict()["final_val_loss"] == result.final_val_loss


def test_training_resumes_from_the_last_checkpoint(lora_run, tiny_base_dir, color_splits, tmp_path):
    recipe, finished, root = lora_run
    shutil.copytree(root / "checkpoints", tmp_path / "checkpoints")
    shutil.rmtree(tmp_path / "checkpoints" / "checkpoint-16")
    messages = []
    resumed = train_on_cpu(tiny_base_dir, color_splits, recipe, tmp_path, log=messages.append)
    assert any("resuming from" in message and "checkpoint-8" in message for message in messages)
    assert resumed.steps == 16 and resumed.tokens_seen == finished.tokens_seen
    assert resumed.final_train_loss == pytest.approx(finished.final_train_loss, abs=1e-4)
    assert resumed.final_val_loss == pytest.approx(finished.final_val_loss, abs=1e-4)


def test_merged_lora_matches_the_adapter(lora_run, tiny_base_dir, tmp_path):
    recipe, _, root = lora_run
    strategy = strategy_for(recipe)
    adapted = strategy.load_finetuned(root / "adapter", tiny_base_dir, "cpu")
    assert any(
        name.endswith("lora_B.default.weight") and weight.abs().max() > 0 for name, weight in adapted.named_parameters()
    )
    summary = strategy.merge(root / "adapter", tiny_base_dir, tmp_path / "merged")
    assert summary["method"] == "lora" and summary["merged_adapter_layers"] > 0 and summary["has_chat_template"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    inputs = torch.randint(4, merged.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(merged(inputs).logits, adapted(input_ids=inputs).logits, atol=1e-4, rtol=0)
    merged_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert merged_tokenizer.chat_template == load_tokenizer(tiny_base_dir).chat_template
    assert merged_tokenizer.eos_token_id == load_tokenizer(tiny_base_dir).eos_token_id
    conversations = [chat_messages(prompt) for prompt in color_examples(6, seed=2)[0]]
    with (
        LocalHFBackend(adapted, load_tokenizer(root / "adapter")) as adapter_backend,
        LocalHFBackend(model_dir=tmp_path / "merged", device="cpu") as merged_backend,
    ):
        assert [g.text for g in adapter_backend.generate(conversations, 8)] == [
            g.text for g in merged_backend.generate(conversations, 8)
        ]


def test_full_fine_tuning_trains_every_weight(tiny_base_dir, color_splits, tmp_path):
    recipe = FullRecipe(
        method="full",
        max_steps=4,
        batch_size=16,
        learning_rate=2e-3,
        eval_steps=4,
        save_steps=4,
        logging_steps=1,
        gradient_checkpointing=True,
    )
    result = train(
        tiny_base_dir,
        color_splits,
        recipe,
        tmp_path / "model",
        tmp_path / "checkpoints",
        device="cpu",
        log=lambda message: None,
    )
    assert result.method == "full" and result.trainable_params == result.total_params
    assert result.final_train_loss < result.train_loss[0][1]
    assert math.isfinite(result.final_val_loss)
    summary = strategy_for(recipe).merge(tmp_path / "model", tiny_base_dir, tmp_path / "merged")
    assert summary["parameters"] == result.total_params
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "merged").config.vocab_size > 0


def test_unknown_lora_target_module_names_the_field_and_choices(tiny_base_dir, color_splits, tmp_path):
    recipe = lora_recipe(lora={"target_modules": ["q_proj", "query_key_value"]})
    with pytest.raises(RecipeError, match=r"lora\.target_modules.*query_key_value.*available.*q_proj"):
        train(
            tiny_base_dir,
            color_splits,
            recipe,
            tmp_path / "out",
            tmp_path / "checkpoints",
            device="cpu",
            log=lambda message: None,
        )


def test_loraplus_trains_the_b_matrices_at_its_ratio_of_the_rate_and_resumes(tiny_base_dir, color_splits, tmp_path):
    seen: dict[str, float] = {}

    class InitialRates(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            names = {id(parameter): name for name, parameter in model.named_parameters()}
            for group in optimizer.param_groups:
                seen.update({names[id(parameter)]: group["initial_lr"] for parameter in group["params"]})

    recipe = lora_recipe(
        max_steps=8, save_steps=4, eval_steps=4, learning_rate=1e-3, lora={"r": 8, "alpha": 16, "loraplus_lr_ratio": 8}
    )
    logged = []
    finished = train(
        tiny_base_dir,
        color_splits,
        recipe,
        tmp_path / "first" / "adapter",
        tmp_path / "first" / "checkpoints",
        device="cpu",
        log=logged.append,
        callbacks=[InitialRates()],
    )
    assert seen and all("lora_A" in name or "lora_B" in name for name in seen), sorted(seen)
    for name, rate in seen.items():
        assert rate == pytest.approx(8e-3 if "lora_B" in name else 1e-3), name
    assert any(line.startswith("LoRA+: B matrices at 8 x the learning rate") for line in logged), logged

    shutil.copytree(tmp_path / "first" / "checkpoints", tmp_path / "again" / "checkpoints")
    shutil.rmtree(tmp_path / "again" / "checkpoints" / "checkpoint-8")
    logged.clear()
    resumed = train_on_cpu(tiny_base_dir, color_splits, recipe, tmp_path / "again", log=logged.append)
    assert any("resuming from" in line and "checkpoint-4" in line for line in logged), logged
    assert resumed.final_train_loss == pytest.approx(finished.final_train_loss, abs=1e-4)


def test_diverging_loss_stops_training(tiny_base_dir, color_splits, tmp_path):
    recipe = lora_recipe(learning_rate=1e30, max_steps=8, logging_steps=1, warmup_ratio=0.0)
    with pytest.raises(TrainingDiverged, match="learning_rate"):
        train(
            tiny_base_dir,
            color_splits,
            recipe,
            tmp_path / "out",
            tmp_path / "checkpoints",
            device="cpu",
            log=lambda message: None,
        )
    assert not (tmp_path / "out").exists()


def test_fully_masked_training_examples_are_rejected(tiny_base_dir, tokenizer, tmp_path):
    dataset, stats = tokenize_examples(tokenizer, ["color: red"], ["red"], max_length=4)
    assert stats["all_masked"] == 1
    with pytest.raises(ValueError, match="every label masked"):
        train(
            tiny_base_dir,
            {"train": dataset},
            lora_recipe(),
            tmp_path / "out",
            tmp_path / "checkpoints",
            device="cpu",
            log=lambda message: None,
        )


# batching: packing and answer-only logits


def _color_rows(color_splits, count=6):
    return [{key: color_splits["train"][i][key] for key in ("input_ids", "labels")} for i in range(count)]


def test_packed_rows_attend_only_within_each_example(tiny_base_dir, tokenizer, color_splits):
    """A packed row (one flattened sequence, positions restarting per example) gives the same loss as padding:
    no example sees another's tokens."""
    from transformers import DataCollatorWithFlattening

    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32).eval()
    rows = _color_rows(color_splits)
    padded = PaddingCollator(tokenizer.pad_token_id)(rows)
    packed = DataCollatorWithFlattening()(rows)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        padded_loss = model(**padded, use_cache=False).loss
        packed_loss = model(**packed, use_cache=False).loss
        one_sequence = torch.arange(packed["input_ids"].shape[1])[None]
        leaked_loss = model(
            input_ids=packed["input_ids"], labels=packed["labels"], position_ids=one_sequence, use_cache=False
        ).loss
    assert packed_loss.item() == pytest.approx(padded_loss.item(), abs=1e-5)
    assert abs(leaked_loss.item() - padded_loss.item()) > 1e-3  # one causal row over everything is different


@pytest.mark.parametrize("packing", [False, True])
def test_answer_only_logits_give_the_models_own_loss(tiny_base_dir, tokenizer, color_splits, tmp_path, packing):
    from transformers import TrainingArguments

    from ftassets.training.strategies import CompletionLossTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32).eval()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = strategy_for(lora_recipe()).build_trainer(model, args, color_splits, tokenizer, [], packing=packing)
    assert isinstance(trainer, CompletionLossTrainer)
    batch = trainer.data_collator(_color_rows(color_splits))
    with torch.no_grad():
        expected = model(**batch, use_cache=False).loss
        ours = trainer.compute_loss(model, dict(batch))
        kept = trainer.compute_loss(model, dict(batch), return_outputs=True)[1].logits.shape[-2]
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)
    # Logits only at the positions an answer token follows (in any row of the batch), not over the whole prompt.
    answer_follows = int((batch["labels"][:, 1:] != IGNORE_INDEX).any(dim=0).sum())
    assert kept == answer_follows < batch["input_ids"].shape[-1] / 2


def test_packing_trains_and_is_recorded(tiny_base_dir, color_splits, tmp_path):
    result = train(
        tiny_base_dir,
        color_splits,
        lora_recipe(packing=True, max_steps=8, save_steps=8),
        tmp_path / "adapter",
        tmp_path / "checkpoints",
        device="cpu",
        log=lambda message: None,
    )
    assert result.packing is True and result.steps == 8 and math.isfinite(result.final_train_loss)
    auto = lora_recipe()
    assert auto.packing == "auto"


def test_packing_is_refused_for_prompt_learning(tiny_base_dir, color_splits, tmp_path):
    from ftassets.training.recipes import parse_recipe

    recipe = parse_recipe({"method": "prefix", "max_steps": 2, "packing": True})
    with pytest.raises(RecipeError, match="packing: prefix prepends virtual tokens"):
        train(
            tiny_base_dir, color_splits, recipe, tmp_path / "a", tmp_path / "c", device="cpu", log=lambda message: None
        )


def test_best_checkpoint_needs_evaluated_checkpoints():
    with pytest.raises(ValueError, match="save_steps \\(10\\) to be a multiple of eval_steps \\(4\\)"):
        lora_recipe(keep_best_checkpoint=True, save_steps=10, eval_steps=4)


def test_best_checkpoint_is_loaded_at_the_end(tiny_base_dir, color_splits, tmp_path):
    messages = []
    # A learning rate this high makes the validation loss go up again, so the best checkpoint is not the last.
    recipe = lora_recipe(keep_best_checkpoint=True, max_steps=12, eval_steps=4, save_steps=4, learning_rate=0.3)
    result = train_on_cpu(tiny_base_dir, color_splits, recipe, tmp_path, log=messages.append)
    best_step, best_loss = min(result.val_loss, key=lambda entry: entry[1])
    state = __import__("json").loads((tmp_path / "checkpoints" / "checkpoint-12" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert state["best_metric"] == pytest.approx(best_loss)
