"""Direct preference optimization: a LoRA adapter trained with TRL's ``DPOTrainer``.

Preference pairs come from the dataset rows: the reference answer is chosen, the task's plausible wrong
answer (``rejected``) is rejected. ``preference_splits`` tokenizes both with the same chat-template code as
supervised training, so prompt, answer and end-of-turn token are split exactly as ``tokenize_examples`` does.

With ``dpo.start_from: sft`` a LoRA SFT stage on the ordinary train split runs first. Its adapter is folded
into the base weights in memory and a fresh LoRA is trained with DPO on top, so the reference policy (the
adapter disabled) is the SFT model. The artifact holds the SFT adapter in ``sft/`` and the DPO adapter at the
top level; ``load_finetuned`` and ``merge`` replay the same two steps. With ``start_from: base`` there is no
``sft/`` and the reference is the base.

The strategy itself (``DpoStrategy``) sits with the others in ``strategies.py``; this module holds what it
builds on: the preference splits, the trainer and the folding of the SFT stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from trl import DPOTrainer

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


def fold_sft_stage(base: torch.nn.Module, artifact_dir: Path) -> tuple[torch.nn.Module, int]:
    """``base`` with the artifact's SFT-stage adapter merged in, and how many layers it adapted (0: no SFT stage)."""
    sft_dir = artifact_dir / SFT_SUBDIR
    if not (sft_dir / "adapter_config.json").exists():
        return base, 0
    staged = PeftModel.from_pretrained(base, sft_dir)
    layers = tuner_layers(staged)
    return staged.merge_and_unload(), layers


def tuner_layers(model: torch.nn.Module) -> int:
    return sum(1 for module in model.modules() if isinstance(module, BaseTunerLayer))
