"""Training methods: one strategy class per method, selected by the recipe's ``method`` field.

A strategy knows how to turn a base checkpoint into a trainable model, how to save what it trained,
how to load that back for evaluation, and how to fold it into plain weights for export. The trainer
and the Dagster layer only talk to this interface, so a new method (QLoRA: ``prepare_model`` on a 4-bit
base; DoRA or IA3: another ``peft_config``; prefix tuning: ``mergeable = False``; DPO: ``build_trainer``
with TRL) is one class here plus one recipe in ``recipes.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from datasets import Dataset
from peft import (
    IA3Config,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.optimizers import create_loraplus_optimizer
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
)
from transformers import (
    DataCollatorWithFlattening,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.pytorch_utils import Conv1D
from trl import DPOConfig

from ftassets import loading
from ftassets.devices import inference_dtype
from ftassets.training.dpo import (
    PREFERENCE_PREFIX,
    SFT_SUBDIR,
    PretokenizedDPOTrainer,
    fold_sft_stage,
    tuner_layers,
)
from ftassets.training.fused_lora import fuse_lora_layers
from ftassets.training.recipes import (
    DpoRecipe,
    FullRecipe,
    IA3Recipe,
    LoraRecipe,
    PrefixRecipe,
    PTuningRecipe,
    QLoraRecipe,
    Recipe,
)
from ftassets.training.tokenize import IGNORE_INDEX

SIXTEEN_OR_32_BIT = (torch.float32, torch.float16, torch.bfloat16)


class RecipeError(ValueError):
    """A recipe that cannot run on this model; the message names the field and what is allowed."""


def load_tokenizer(directory: Path):
    return loading.load_tokenizer(directory)


def artifact_tokenizer(artifact_dir: Path, base_dir: Path):
    """The tokenizer saved with a fine-tuned artifact, else the base's."""
    return load_tokenizer(artifact_dir if (artifact_dir / "tokenizer_config.json").exists() else base_dir)


def load_adapter_on_base(recipe: Recipe, adapter_dir: Path, base_dir: Path, device: str):
    """A trained adapter (or prompt encoder) applied to its base, and the tokenizer it was trained with."""
    from ftassets.training.quiet import known_harmless_warnings

    with known_harmless_warnings():
        model = strategy_for(recipe).load_finetuned(adapter_dir, base_dir, device)
    return model, artifact_tokenizer(adapter_dir, base_dir)


def load_causal_lm(directory: Path, device: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    return loading.load_causal_lm(directory, dtype=dtype).to(device)


def checkpoint_dtype(directory: Path) -> torch.dtype:
    """The dtype a checkpoint was saved in, if it is 16/32-bit floating point; fp32 otherwise."""
    dtype = getattr(loading.load_config(directory), "dtype", None)
    return dtype if dtype in SIXTEEN_OR_32_BIT else torch.float32


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Full names of the layers LoRA can adapt (GPT-2 style models use ``Conv1D`` instead of ``Linear``)."""
    return [name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D))]


def missing_linear_modules(model: torch.nn.Module, field: str, targets: list[str]) -> None:
    """Raise ``RecipeError`` naming ``field`` when a target matches no linear layer of ``model``."""
    linear = linear_module_names(model)
    missing = [
        target for target in targets if not any(name == target or name.endswith("." + target) for name in linear)
    ]
    if missing:
        available = sorted({name.rsplit(".", 1)[-1] for name in linear})
        raise RecipeError(f"{field}: {type(model).__name__} has no linear module(s) {missing}; available: {available}")


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


class CompletionLossTrainer(Trainer):
    """A ``Trainer`` for token-aligned models that computes logits only where a label follows.

    Loss is on answer tokens only, so the vocabulary projection and softmax over every prompt position are
    wasted work (a fifth of a step on the embedded model); the model's ``logits_to_keep`` skips them. The
    loss is the same token-mean cross entropy the model computes, normalised by the Trainer's count of
    target tokens across accumulation steps. The KV cache is off: it is useless in training, and a cache
    object would stop transformers from recognising packed rows (position ids restarting per example).
    """

    _keeps_logits: bool | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
        if self._keeps_logits is None:  # the model's signature does not change between steps
            self._keeps_logits = accepts_logits_to_keep(model)
        if self._keeps_logits:
            outputs, targets = model(**inputs, use_cache=False, logits_to_keep=keep), targets[:, keep]
        else:
            outputs = model(**inputs, use_cache=False)
        loss = torch.nn.functional.cross_entropy(
            outputs.logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        if num_items_in_batch is not None and self.model_accepts_loss_kwargs:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                # As in Trainer.compute_loss: num_items_in_batch was summed over every process.
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
        else:
            loss = loss / (targets != IGNORE_INDEX).sum().clamp(min=1)
        return (loss, outputs) if return_outputs else loss


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


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
    sequence_aligned: ClassVar[bool] = True
    """Whether the model's outputs line up one-to-one with the input tokens, which packing and answer-only
    logits rely on (prompt-learning methods prepend virtual tokens, so they do not)."""

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

    def optimizer(
        self, model: torch.nn.Module, recipe: Recipe, args: TrainingArguments, log: Callable[[str], None]
    ) -> torch.optim.Optimizer | None:
        """The optimizer ``build_trainer``'s trainer is to use, where the method needs its own; None leaves the
        Trainer's (AdamW with ``args``' settings)."""
        return None

    def build_trainer(
        self,
        model,
        args: TrainingArguments,
        splits: dict[str, Dataset],
        tokenizer,
        callbacks: list[TrainerCallback],
        packing: bool = False,
    ) -> Trainer:
        if packing:
            collator = DataCollatorWithFlattening()
        else:
            # Padding never reaches the loss (labels -100, attention 0), so eos is a safe pad when a tokenizer has none.
            collator = PaddingCollator(
                tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            )
        trainer_class = CompletionLossTrainer if self.sequence_aligned else Trainer
        return trainer_class(
            model=model,
            args=args,
            train_dataset=splits["train"],
            eval_dataset=splits.get("validation"),
            data_collator=collator,
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
            raise RecipeError(
                f"method: {self.method!r} adapters cannot be merged into weights; evaluate them with load_finetuned"
            )
        base = load_causal_lm(base_dir, "cpu", checkpoint_dtype(base_dir))
        adapted = PeftModel.from_pretrained(base, artifact_dir)
        adapter_layers = sum(1 for module in adapted.modules() if isinstance(module, BaseTunerLayer))
        merged = adapted.merge_and_unload()
        summary = _save_pretrained_with_tokenizer(merged, artifact_tokenizer(artifact_dir, base_dir), out_dir)
        return {"method": self.method, "merged_adapter_layers": adapter_layers, **summary}


class LoraStrategy(PeftStrategy):
    method = "lora"
    use_dora: ClassVar[bool] = False

    def validate(self, recipe: LoraRecipe, model: torch.nn.Module) -> None:
        super().validate(recipe, model)
        targets = recipe.lora.target_modules
        if targets != "all-linear":
            try:
                missing_linear_modules(model, "lora.target_modules", targets)
            except RecipeError as error:
                raise RecipeError(f"{error} or 'all-linear'") from None

    def peft_config(self, recipe: LoraRecipe, model: torch.nn.Module) -> LoraConfig:
        targets = recipe.lora.target_modules
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=targets if targets == "all-linear" else list(targets),
            bias="none",
            use_dora=self.use_dora,
        )

    def prepare_model(self, base_dir: Path, recipe: LoraRecipe, device: str) -> torch.nn.Module:
        model = super().prepare_model(base_dir, recipe, device)
        fuse_lora_layers(model)  # plain LoRA layers only; DoRA's keep peft's forward
        return model

    def optimizer(
        self, model: torch.nn.Module, recipe: LoraRecipe, args: TrainingArguments, log: Callable[[str], None]
    ) -> torch.optim.Optimizer | None:
        """LoRA+ (``lora.loraplus_lr_ratio``): peft's optimizer with the B matrices at that multiple of the rate."""
        ratio = recipe.lora.loraplus_lr_ratio
        if ratio is None:
            return None
        log(f"LoRA+: B matrices at {ratio:g} x the learning rate ({recipe.learning_rate * ratio:g})")
        return create_loraplus_optimizer(
            model,
            torch.optim.AdamW,
            lr=recipe.learning_rate,
            loraplus_lr_ratio=ratio,
            loraplus_weight_decay=recipe.weight_decay,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
        )


class DoraStrategy(LoraStrategy):
    """LoRA with weight decomposition: a trained magnitude per output row on top of the low-rank direction."""

    method = "dora"
    use_dora = True


class QLoraStrategy(LoraStrategy):
    """LoRA trained on a bitsandbytes 4-bit NF4 base with double quantization.

    Evaluation and merging load the base in 16/32-bit and apply the adapter there, never to the 4-bit
    weights, so the adapter and the merged export are the same model.
    """

    method = "qlora"

    def validate(self, recipe: QLoraRecipe, model: torch.nn.Module) -> None:
        _require_bitsandbytes()
        super().validate(recipe, model)

    def prepare_model(self, base_dir: Path, recipe: QLoraRecipe, device: str) -> torch.nn.Module:
        _require_bitsandbytes()
        from transformers import BitsAndBytesConfig

        compute_dtype = getattr(torch, recipe.bnb_4bit_compute_dtype)
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        base = loading.load_causal_lm(
            base_dir, quantization_config=quantization, dtype=compute_dtype, device_map=device
        )
        self.validate(recipe, base)
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=recipe.gradient_checkpointing)
        return get_peft_model(base, self.peft_config(recipe, base))


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:
        raise RecipeError(
            f"method: 'qlora' needs bitsandbytes (pip install 'bitsandbytes>=0.45'; 4-bit NF4 runs on CPU with "
            f"torch >= 2.6, or on CUDA) and it failed to import: {error}; use method 'lora' instead"
        ) from error


class IA3Strategy(PeftStrategy):
    """IA3: learned per-channel scales on attention keys/values and on the feed-forward input."""

    method = "ia3"

    def target_modules(self, recipe: IA3Recipe, model: torch.nn.Module) -> tuple[list[str], list[str]]:
        """(target_modules, feedforward_modules), "auto" resolved through peft's defaults for the model type."""
        if recipe.ia3.target_modules != "auto":
            return list(recipe.ia3.target_modules), list(recipe.ia3.feedforward_modules)
        model_type = model.config.model_type
        if model_type not in TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING:
            available = sorted({name.rsplit(".", 1)[-1] for name in linear_module_names(model)})
            raise RecipeError(
                f"ia3.target_modules: no default for model_type {model_type!r}; set ia3.target_modules "
                f"and ia3.feedforward_modules to lists from {available}"
            )
        return (
            list(TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[model_type]),
            list(TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[model_type]),
        )

    def validate(self, recipe: IA3Recipe, model: torch.nn.Module) -> None:
        super().validate(recipe, model)
        targets, feedforward = self.target_modules(recipe, model)
        missing_linear_modules(model, "ia3.target_modules", targets)
        missing_linear_modules(model, "ia3.feedforward_modules", feedforward)

    def peft_config(self, recipe: IA3Recipe, model: torch.nn.Module) -> IA3Config:
        targets, feedforward = self.target_modules(recipe, model)
        return IA3Config(task_type="CAUSAL_LM", target_modules=targets, feedforward_modules=feedforward)


class PromptLearningStrategy(PeftStrategy):
    """Trained virtual tokens in front of every input; nothing to fold into the weights."""

    mergeable = False
    sequence_aligned = False

    def params(self, recipe: Recipe):
        return getattr(recipe, self.method)

    def validate(self, recipe: Recipe, model: torch.nn.Module) -> None:
        super().validate(recipe, model)
        if recipe.packing is True:
            raise RecipeError(
                f"packing: {self.method} prepends virtual tokens to every row, so examples cannot be "
                "packed into one row; use packing: false or 'auto'"
            )
        virtual, limit = self.params(recipe).num_virtual_tokens, getattr(model.config, "max_position_embeddings", None)
        if limit is not None and virtual >= limit:
            raise RecipeError(
                f"{self.method}.num_virtual_tokens: {virtual} leaves no room for input in "
                f"{type(model).__name__}'s {limit} positions; use fewer than {limit}"
            )


class PrefixStrategy(PromptLearningStrategy):
    method = "prefix"

    def peft_config(self, recipe: PrefixRecipe, model: torch.nn.Module) -> PrefixTuningConfig:
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=recipe.prefix.num_virtual_tokens)


class PTuningStrategy(PromptLearningStrategy):
    method = "ptuning"

    def peft_config(self, recipe: PTuningRecipe, model: torch.nn.Module) -> PromptEncoderConfig:
        return PromptEncoderConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=recipe.ptuning.num_virtual_tokens,
            encoder_hidden_size=recipe.ptuning.encoder_hidden_size,
            encoder_reparameterization_type=recipe.ptuning.encoder_reparameterization_type,
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


class DpoStrategy(LoraStrategy):
    """LoRA trained with DPO, optionally after a LoRA SFT stage that becomes the reference policy."""

    method = "dpo"

    def prepare_model(self, base_dir: Path, recipe: DpoRecipe, device: str) -> torch.nn.Module:
        # build_trainer receives no recipe, and the SFT stage and DPO settings live in it.
        self.recipe, self.sft_adapter_dir = recipe, None
        return super().prepare_model(base_dir, recipe, device)

    def build_trainer(
        self,
        model,
        args: TrainingArguments,
        splits: dict[str, Dataset],
        tokenizer,
        callbacks: list[TrainerCallback],
        packing: bool = False,
    ) -> Trainer:
        """Runs the SFT stage first when the recipe starts from SFT; the trainer it returns does the DPO.

        ``packing`` applies to the SFT stage only: TRL pads preference batches (its ``padding_free`` is disabled).
        """
        # TRL trainers send a usage ping to the Hub unless told not to; training must not touch the network.
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        recipe = self.recipe
        train_split = PREFERENCE_PREFIX + "train"
        if train_split not in splits:
            raise RecipeError(
                f"method: 'dpo' needs the {train_split!r} split, which tokenized_splits writes only for "
                f"models whose recipe is dpo; splits given: {sorted(splits)}"
            )
        # The policy is a fresh LoRA on this model, so the reference (the adapter disabled) is the model itself.
        reference = (
            self._sft_stage(model, args, splits, tokenizer, callbacks, packing)
            if recipe.dpo.start_from == "sft"
            else model.unload()
        )
        inherited = {
            field.name: getattr(args, field.name) for field in dataclasses.fields(TrainingArguments) if field.init
        }
        config = DPOConfig(
            **inherited, beta=recipe.dpo.beta, loss_type=[recipe.dpo.loss_type], max_length=recipe.max_seq_length
        )
        return PretokenizedDPOTrainer(
            model=reference,
            args=config,
            train_dataset=splits[train_split],
            eval_dataset=splits.get(PREFERENCE_PREFIX + "validation"),
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=self.peft_config(recipe, reference),
        )

    def _sft_stage(
        self,
        model: PeftModel,
        args: TrainingArguments,
        splits: dict[str, Dataset],
        tokenizer,
        callbacks: list[TrainerCallback],
        packing: bool,
    ) -> torch.nn.Module:
        """Train ``model``'s LoRA on the SFT splits, keep the adapter, and return the base with it merged in."""
        params = self.recipe.dpo
        stage_dir = Path(args.output_dir) / "sft_stage"
        stage_args = dataclasses.replace(
            args,
            output_dir=str(stage_dir),
            num_train_epochs=params.sft_epochs,
            max_steps=params.sft_max_steps or -1,
            learning_rate=params.sft_learning_rate,
            save_strategy="no",
            load_best_model_at_end=False,
        )
        trainer = super().build_trainer(model, stage_args, splits, tokenizer, callbacks, packing)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        self.sft_adapter_dir = stage_dir / "adapter"
        if trainer.is_world_process_zero():
            model.save_pretrained(self.sft_adapter_dir)
        trainer.accelerator.wait_for_everyone()
        return model.merge_and_unload()

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        super().save(model, out_dir)
        if self.sft_adapter_dir is not None:
            shutil.copytree(self.sft_adapter_dir, Path(out_dir) / SFT_SUBDIR, dirs_exist_ok=True)

    def load_finetuned(self, artifact_dir: Path, base_dir: Path, device: str) -> torch.nn.Module:
        base, _ = fold_sft_stage(self.load_base(base_dir, device), Path(artifact_dir))
        return PeftModel.from_pretrained(base, artifact_dir).eval()

    def merge(self, artifact_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
        base, sft_layers = fold_sft_stage(
            load_causal_lm(base_dir, "cpu", checkpoint_dtype(base_dir)), Path(artifact_dir)
        )
        adapted = PeftModel.from_pretrained(base, artifact_dir)
        dpo_layers = tuner_layers(adapted)
        summary = _save_pretrained_with_tokenizer(
            adapted.merge_and_unload(), artifact_tokenizer(artifact_dir, base_dir), out_dir
        )
        return {"method": self.method, "merged_adapter_layers": sft_layers + dpo_layers, **summary}


STRATEGIES: dict[str, type[TrainingStrategy]] = {
    strategy.method: strategy
    for strategy in (
        LoraStrategy,
        QLoraStrategy,
        DoraStrategy,
        IA3Strategy,
        PrefixStrategy,
        PTuningStrategy,
        FullStrategy,
        DpoStrategy,
    )
}


def strategy_for(recipe: Recipe) -> TrainingStrategy:
    try:
        return STRATEGIES[recipe.method]()
    except KeyError:
        raise RecipeError(
            f"method: unknown training method {recipe.method!r}; available: {sorted(STRATEGIES)}"
        ) from None
