"""Direct preference optimization: a LoRA adapter trained with TRL's ``DPOTrainer``.

Preference pairs come from the dataset rows: the reference answer is chosen, the task's plausible wrong
answer (``rejected``) is rejected. ``preference_splits`` tokenizes both with the same chat-template code as
supervised training, so prompt, answer and end-of-turn token are split exactly as ``tokenize_examples`` does.

With ``dpo.start_from: sft`` a LoRA SFT stage on the ordinary train split runs first. Its adapter is folded
into the base weights in memory and a fresh LoRA is trained with DPO on top, so the reference policy (the
adapter disabled) is the SFT model. The artifact holds the SFT adapter in ``sft/`` and the DPO adapter at the
top level; ``load_finetuned`` and ``merge`` replay the same two steps. With ``start_from: base`` there is no
``sft/`` and the reference is the base.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from trl import DPOConfig, DPOTrainer

from ftassets.training.recipes import DpoRecipe
from ftassets.training.strategies import (
    STRATEGIES,
    LoraStrategy,
    RecipeError,
    _save_pretrained_with_tokenizer,
    artifact_tokenizer,
    checkpoint_dtype,
    load_causal_lm,
)
from ftassets.training.tokenize import IGNORE_INDEX, tokenize_examples

PREFERENCE_PREFIX = "preference_"
"""Preference splits are stored beside the SFT splits as ``preference_train`` and ``preference_validation``."""
SFT_SUBDIR = "sft"


def preference_splits(
    tokenizer, rows_by_split: dict[str, list[dict[str, Any]]], max_length: int, system_prompt: str | None = None
) -> tuple[dict[str, Dataset], dict[str, dict]]:
    """``preference_<split>`` datasets of ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (what TRL's
    ``DataCollatorForPreference`` reads) and ``length`` (for length-grouped batches), with their stats.

    Each side is prompt plus completion cut to ``max_length``; ``truncated`` and ``all_masked`` count sides.
    """
    splits, stats = {}, {}
    for split, rows in rows_by_split.items():
        missing = [row.get("id", index) for index, row in enumerate(rows) if not str(row.get("rejected") or "").strip()]
        if missing:
            raise ValueError(
                f"{len(missing)} {split} row(s) have no 'rejected' answer, e.g. {missing[:3]}; the dataset "
                "was built before preference pairs existed: materialize the dataset asset again"
            )
        prompts = [row["prompt"] for row in rows]
        chosen, chosen_stats = tokenize_examples(
            tokenizer, prompts, [row["answer"] for row in rows], max_length, system_prompt
        )
        rejected, rejected_stats = tokenize_examples(
            tokenizer, prompts, [row["rejected"] for row in rows], max_length, system_prompt
        )
        columns: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": [], "length": []}
        for chosen_row, rejected_row in zip(chosen, rejected):
            prompt_ids, chosen_ids = _prompt_and_completion(chosen_row)
            _, rejected_ids = _prompt_and_completion(rejected_row)
            columns["prompt_ids"].append(prompt_ids)
            columns["chosen_ids"].append(chosen_ids)
            columns["rejected_ids"].append(rejected_ids)
            columns["length"].append(len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)))
        name = PREFERENCE_PREFIX + split
        splits[name] = Dataset.from_dict(columns)
        lengths = columns["length"]
        stats[name] = {
            "examples": len(rows),
            "truncated": chosen_stats["truncated"] + rejected_stats["truncated"],
            "all_masked": chosen_stats["all_masked"] + rejected_stats["all_masked"],
            "tokens": chosen_stats["tokens"] + rejected_stats["tokens"],
            "answer_tokens": chosen_stats["answer_tokens"] + rejected_stats["answer_tokens"],
            "max_length": max(lengths, default=0),
            "mean_length": sum(lengths) / len(lengths) if lengths else 0.0,
        }
    return splits, stats


def _prompt_and_completion(example: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """Split a completion-only labelled example where its labels start."""
    labels = example["labels"]
    start = next((k for k, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    return example["input_ids"][:start], example["input_ids"][start:]


class PretokenizedDPOTrainer(DPOTrainer):
    """``DPOTrainer`` on splits that ``preference_splits`` already tokenized.

    TRL 1.16 tokenizes text or conversations itself and would re-derive prompt and completion from its own
    rendering; here both come from the same code as supervised training instead.
    """

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset


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
        base, _ = _fold_sft_stage(self.load_base(base_dir, device), Path(artifact_dir))
        return PeftModel.from_pretrained(base, artifact_dir).eval()

    def merge(self, artifact_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
        base, sft_layers = _fold_sft_stage(
            load_causal_lm(base_dir, "cpu", checkpoint_dtype(base_dir)), Path(artifact_dir)
        )
        adapted = PeftModel.from_pretrained(base, artifact_dir)
        dpo_layers = _tuner_layers(adapted)
        summary = _save_pretrained_with_tokenizer(
            adapted.merge_and_unload(), artifact_tokenizer(artifact_dir, base_dir), out_dir
        )
        return {"method": self.method, "merged_adapter_layers": sft_layers + dpo_layers, **summary}


def _fold_sft_stage(base: torch.nn.Module, artifact_dir: Path) -> tuple[torch.nn.Module, int]:
    """``base`` with the artifact's SFT-stage adapter merged in, and how many layers it adapted (0: no SFT stage)."""
    sft_dir = artifact_dir / SFT_SUBDIR
    if not (sft_dir / "adapter_config.json").exists():
        return base, 0
    staged = PeftModel.from_pretrained(base, sft_dir)
    layers = _tuner_layers(staged)
    return staged.merge_and_unload(), layers


def _tuner_layers(model: torch.nn.Module) -> int:
    return sum(1 for module in model.modules() if isinstance(module, BaseTunerLayer))


STRATEGIES[DpoStrategy.method] = DpoStrategy
