"""Training methods: one strategy class per method, selected by the recipe's ``method`` field.

A strategy knows how to turn a base checkpoint into a trainable model, how to save what it trained,
how to load that back for evaluation, and how to fold it into plain weights for export. The trainer
and the Dagster layer only talk to this interface, so a new method (QLoRA: ``load_base`` in 4-bit;
DoRA or IA3: another ``peft_config``; prefix tuning: ``mergeable = False``; DPO: ``build_trainer``
with TRL) is one class here plus one recipe in ``recipes.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from datasets import Dataset
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments
from transformers.pytorch_utils import Conv1D

from ftassets.devices import inference_dtype
from ftassets.training.recipes import FullRecipe, LoraRecipe, Recipe
from ftassets.training.tokenize import IGNORE_INDEX

SIXTEEN_OR_32_BIT = (torch.float32, torch.float16, torch.bfloat16)


class RecipeError(ValueError):
    """A recipe that cannot run on this model; the message names the field and what is allowed."""


def load_tokenizer(directory: Path):
    return AutoTokenizer.from_pretrained(directory)


def artifact_tokenizer(artifact_dir: Path, base_dir: Path):
    """The tokenizer saved with a fine-tuned artifact, else the base's."""
    return load_tokenizer(artifact_dir if (artifact_dir / "tokenizer_config.json").exists() else base_dir)


def load_causal_lm(directory: Path, device: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device)


def checkpoint_dtype(directory: Path) -> torch.dtype:
    """The dtype a checkpoint was saved in, if it is 16/32-bit floating point; fp32 otherwise."""
    dtype = getattr(AutoConfig.from_pretrained(directory), "dtype", None)
    return dtype if dtype in SIXTEEN_OR_32_BIT else torch.float32


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Full names of the layers LoRA can adapt (GPT-2 style models use ``Conv1D`` instead of ``Linear``)."""
    return [name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D))]


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


class PaddingCollator:
    """Right-pads a batch: input_ids with the pad id, labels with -100, and builds the attention mask."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(example["input_ids"]) for example in examples)
        batch = {"input_ids": [], "labels": [], "attention_mask": []}
        for example in examples:
            padding = length - len(example["input_ids"])
            batch["input_ids"].append(example["input_ids"] + [self.pad_token_id] * padding)
            batch["labels"].append(example["labels"] + [IGNORE_INDEX] * padding)
            batch["attention_mask"].append([1] * len(example["input_ids"]) + [0] * padding)
        return {name: torch.tensor(rows) for name, rows in batch.items()}


def _save_pretrained_with_tokenizer(model, tokenizer, out_dir: Path) -> dict[str, Any]:
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "parameters": count_parameters(model)[1],
        "size_mb": round(sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file()) / 2**20, 3),
        "has_chat_template": bool(tokenizer.chat_template),
    }


class TrainingStrategy(ABC):
    method: ClassVar[str]
    mergeable: ClassVar[bool]

    def validate(self, recipe: Recipe, model: torch.nn.Module) -> None:
        """Raise ``RecipeError`` when ``recipe`` cannot train ``model``."""
        if recipe.method != self.method:
            raise RecipeError(f"method: {self.__class__.__name__} trains {self.method!r}, not {recipe.method!r}")

    @abstractmethod
    def prepare_model(self, base_dir: Path, recipe: Recipe, device: str) -> torch.nn.Module:
        """The model to train, on ``device``, with exactly the method's parameters trainable."""

    @abstractmethod
    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Write what was trained (adapter or full weights) into ``out_dir``."""

    @abstractmethod
    def load_finetuned(self, artifact_dir: Path, base_dir: Path, device: str) -> torch.nn.Module:
        """The fine-tuned model for evaluation, in eval mode."""

    @abstractmethod
    def merge(self, artifact_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
        """Plain merged weights plus tokenizer in ``out_dir``; returns a summary."""

    def build_trainer(self, model, args: TrainingArguments, splits: dict[str, Dataset], tokenizer,
                      callbacks: list[TrainerCallback]) -> Trainer:
        # Padding never reaches the loss (labels -100, attention 0), so eos is a safe pad when a tokenizer has none.
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return Trainer(
            model=model,
            args=args,
            train_dataset=splits["train"],
            eval_dataset=splits.get("validation"),
            data_collator=PaddingCollator(pad_id),
            processing_class=tokenizer,
            callbacks=callbacks,
        )


class PeftStrategy(TrainingStrategy):
    """A peft adapter trained on a frozen base; subclasses supply the adapter config."""

    mergeable = True

    @abstractmethod
    def peft_config(self, recipe: Recipe, model: torch.nn.Module) -> PeftConfig: ...

    def load_base(self, base_dir: Path, device: str) -> torch.nn.Module:
        return load_causal_lm(base_dir, device, inference_dtype(device))

    def prepare_model(self, base_dir: Path, recipe: Recipe, device: str) -> torch.nn.Module:
        base = self.load_base(base_dir, device)
        self.validate(recipe, base)
        return get_peft_model(base, self.peft_config(recipe, base))

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)

    def load_finetuned(self, artifact_dir: Path, base_dir: Path, device: str) -> torch.nn.Module:
        return PeftModel.from_pretrained(self.load_base(base_dir, device), artifact_dir).eval()

    def merge(self, artifact_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
        if not self.mergeable:
            raise RecipeError(f"method: {self.method!r} adapters cannot be merged into weights; evaluate them with load_finetuned")
        base = load_causal_lm(base_dir, "cpu", checkpoint_dtype(base_dir))
        adapted = PeftModel.from_pretrained(base, artifact_dir)
        adapter_layers = sum(1 for name, _ in adapted.named_modules() if name.endswith("lora_A"))
        merged = adapted.merge_and_unload()
        summary = _save_pretrained_with_tokenizer(merged, artifact_tokenizer(artifact_dir, base_dir), out_dir)
        return {"method": self.method, "merged_adapter_layers": adapter_layers, **summary}


class LoraStrategy(PeftStrategy):
    method = "lora"

    def validate(self, recipe: LoraRecipe, model: torch.nn.Module) -> None:
        super().validate(recipe, model)
        targets = recipe.lora.target_modules
        linear = linear_module_names(model)
        missing = [] if targets == "all-linear" else [
            target for target in targets if not any(name == target or name.endswith("." + target) for name in linear)
        ]
        if missing:
            available = sorted({name.rsplit(".", 1)[-1] for name in linear})
            raise RecipeError(
                f"lora.target_modules: {type(model).__name__} has no linear module(s) {missing}; "
                f"available: {available} or 'all-linear'"
            )

    def peft_config(self, recipe: LoraRecipe, model: torch.nn.Module) -> LoraConfig:
        targets = recipe.lora.target_modules
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=targets if targets == "all-linear" else list(targets),
            bias="none",
        )


class FullStrategy(TrainingStrategy):
    """Every weight trainable, kept in fp32 (mixed precision comes from the trainer's autocast)."""

    method = "full"
    mergeable = True

    def prepare_model(self, base_dir: Path, recipe: FullRecipe, device: str) -> torch.nn.Module:
        model = load_causal_lm(base_dir, device, torch.float32)
        self.validate(recipe, model)
        model.requires_grad_(True)
        return model

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        model.save_pretrained(out_dir)

    def load_finetuned(self, artifact_dir: Path, base_dir: Path, device: str) -> torch.nn.Module:
        return load_causal_lm(artifact_dir, device, inference_dtype(device)).eval()

    def merge(self, artifact_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
        model = load_causal_lm(artifact_dir, "cpu", checkpoint_dtype(artifact_dir))
        summary = _save_pretrained_with_tokenizer(model, artifact_tokenizer(artifact_dir, base_dir), out_dir)
        return {"method": self.method, "merged_adapter_layers": 0, **summary}


STRATEGIES: dict[str, type[TrainingStrategy]] = {strategy.method: strategy for strategy in (LoraStrategy, FullStrategy)}


def strategy_for(recipe: Recipe) -> TrainingStrategy:
    try:
        return STRATEGIES[recipe.method]()
    except KeyError:
        raise RecipeError(f"method: unknown training method {recipe.method!r}; available: {sorted(STRATEGIES)}") from None
