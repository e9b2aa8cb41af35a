"""Training throughput of ftassets' LoRA path against a plain transformers ``Trainer`` + peft baseline.

Both train the same LoRA (the ``lora`` recipe of configs/experiments.yaml) on the same base, the same
tokenized task split, for the same number of steps at the same batch size, in this process. The
baseline is what a user writes from the transformers/peft docs: random batches padded by
``DataCollatorForSeq2Seq`` and the model's own loss over full logits. Ours is ``ftassets.training.train``
with its defaults (length-grouped batches or padding-free packing, logits only where a label follows).
Tokens are the examples' real (non-padding) tokens; checkpointing and evaluation are off in both.

Both runs are timed the same two ways. ``*_tokens_per_second`` is training throughput: all tokens over the
time from the first step's start to the last step's end, taken by the same ``TrainerCallback`` in both.
``*_call_tokens_per_second`` divides by the whole ``train()`` call, which adds the Trainer's fixed start-up
(accelerator preparation, a full ``gc.collect()``): the same seconds in both, a large share of a run this
short, so that ratio (``ratio_including_setup``) is lower.

    python benchmarks/train_throughput.py [--steps 60] [--task classification] [--threads N] [--base-dir DIR]

The last line printed is one JSON object with both figures and ``ratio`` (ours / baseline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from ftassets.config import load_project_config
from ftassets.data.datasets import build_splits
from ftassets.models.embedded import build_embedded_model
from ftassets.training.recipes import parse_recipe
from ftassets.training.tokenize import tokenize_examples
from ftassets.training.trainer import train


class CountingCollator:
    """Counts the real tokens of every batch it collates."""

    def __init__(self, inner) -> None:
        self.inner, self.tokens = inner, 0

    def __call__(self, features):
        self.tokens += sum(len(feature["input_ids"]) for feature in features)
        return self.inner(features)


class StepTimer(TrainerCallback):
    """Seconds from the first training step's start to the last step's end."""

    def __init__(self) -> None:
        self.first = self.last = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first is None:
            self.first = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.last - self.first


def baseline_tokens_per_second(base_dir: Path, train_split, recipe, steps: int, work_dir: Path) -> tuple[float, float]:
    set_seed(recipe.seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        task_type="CAUSAL_LM", r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
        target_modules=recipe.lora.target_modules,
    ))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    args = TrainingArguments(
        output_dir=str(work_dir), max_steps=steps, per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate, lr_scheduler_type="constant", use_cpu=True, seed=recipe.seed,
        save_strategy="no", eval_strategy="no", logging_steps=steps, report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0,
    )
    timer = StepTimer()
    trainer = Trainer(model=model, args=args, train_dataset=train_split, data_collator=collator, callbacks=[timer])
    started = time.perf_counter()
    trainer.train()
    return collator.tokens / timer.seconds, collator.tokens / (time.perf_counter() - started)


def ours_tokens_per_second(base_dir: Path, train_split, recipe, steps: int, work_dir: Path) -> tuple[float, float, bool]:
    quiet = recipe.model_copy(update={"max_steps": steps, "save_steps": steps + 1, "eval_steps": steps + 1, "logging_steps": steps})
    timer = StepTimer()
    result = train(base_dir, {"train": train_split}, quiet, work_dir / "out", work_dir / "checkpoints", device="cpu",
                   log=lambda _: None, callbacks=[timer])
    return result.tokens_seen / timer.seconds, result.tokens_seen / result.wall_seconds, result.packing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2, help="alternating baseline/ours rounds; the median of each is reported")
    parser.add_argument("--task", default="classification")
    parser.add_argument("--base-dir", type=Path, help="an existing base model folder (default: build the embedded model)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, one per core)")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    config = load_project_config()
    recipe = parse_recipe({**config.recipes["lora"].model_dump(), "lr_scheduler": "constant", "warmup_ratio": 0.0})
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        base_dir = options.base_dir
        if base_dir is None:
            base_dir = scratch / "base"
            build_embedded_model(base_dir, log=lambda _: None)
        task = config.tasks[options.task]
        rows = build_splits(task)["train"]
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        train_split, stats = tokenize_examples(
            tokenizer, [r["prompt"] for r in rows], [r["answer"] for r in rows], recipe.max_seq_length, task.config.system_prompt
        )
        baseline, ours, baseline_call, ours_call, packing = [], [], [], [], None
        for round_index in range(options.rounds):
            steady, whole = baseline_tokens_per_second(base_dir, train_split, recipe, options.steps, scratch / f"baseline{round_index}")
            baseline.append(steady)
            baseline_call.append(whole)
            steady, whole, packing = ours_tokens_per_second(base_dir, train_split, recipe, options.steps, scratch / f"ours{round_index}")
            ours.append(steady)
            ours_call.append(whole)
            print(f"round {round_index}: baseline {baseline[-1]:,.0f} tokens/s ({baseline_call[-1]:,.0f} with setup), "
                  f"ftassets {ours[-1]:,.0f} tokens/s ({ours_call[-1]:,.0f} with setup)", flush=True)

    result = {
        "benchmark": "train_throughput",
        "task": options.task,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "steps": options.steps,
        "batch_size": recipe.batch_size,
        "mean_example_tokens": round(stats["mean_length"], 1),
        "packing": packing,
        "baseline_tokens_per_second": round(statistics.median(baseline), 1),
        "ftassets_tokens_per_second": round(statistics.median(ours), 1),
        "baseline_call_tokens_per_second": round(statistics.median(baseline_call), 1),
        "ftassets_call_tokens_per_second": round(statistics.median(ours_call), 1),
    }
    result["ratio_including_setup"] = round(result["ftassets_call_tokens_per_second"] / result["baseline_call_tokens_per_second"], 3)
    result["ratio"] = round(result["ftassets_tokens_per_second"] / result["baseline_tokens_per_second"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
