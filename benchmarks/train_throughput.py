"""Training throughput of ftassets' LoRA path against a plain transformers ``Trainer`` + peft baseline.

Both train the same LoRA (the ``lora`` recipe of configs/experiments.yaml) on the same base, the same
tokenized task split, for the same number of steps at the same batch size. Every run is a fresh Python
process of this script, alternating baseline and ours, so neither inherits what the other (or the base
build) left in the process: the allocator's grown heap, warm caches, thread pools. The
baseline is what a user writes from the transformers/peft docs: random batches padded by
``DataCollatorForSeq2Seq`` and the model's own loss over full logits. Ours is ``ftassets.training.train``
with its defaults (length-grouped batches or padding-free packing, logits only where a label follows).
Tokens are the examples' real (non-padding) tokens; checkpointing and evaluation are off in both.

Both runs are timed the same two ways. ``*_tokens_per_second`` is training throughput: all tokens over the
time from the first step's start to the last step's end, taken by the same ``TrainerCallback`` in both.
``*_call_tokens_per_second`` divides by the whole ``train()`` call, which adds the Trainer's fixed start-up
(accelerator preparation, a full ``gc.collect()``): the same seconds in both, a large share of a run this
short, so that ratio (``ratio_including_setup``) is lower.

    python benchmarks/train_throughput.py [--steps 60] [--rounds 3] [--task classification] [--threads N] \
        [--base-dir DIR]

The last line printed is one JSON object with both figures and ``ratio`` (ours / baseline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=recipe.lora.target_modules,
        ),
    )
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100))
    args = TrainingArguments(
        output_dir=str(work_dir),
        max_steps=steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="constant",
        use_cpu=True,
        seed=recipe.seed,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=steps,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    timer = StepTimer()
    trainer = Trainer(model=model, args=args, train_dataset=train_split, data_collator=collator, callbacks=[timer])
    started = time.perf_counter()
    trainer.train()
    return collator.tokens / timer.seconds, collator.tokens / (time.perf_counter() - started)


def ours_tokens_per_second(
    base_dir: Path, train_split, recipe, steps: int, work_dir: Path
) -> tuple[float, float, bool]:
    quiet = recipe.model_copy(
        update={"max_steps": steps, "save_steps": steps + 1, "eval_steps": steps + 1, "logging_steps": steps}
    )
    timer = StepTimer()
    result = train(
        base_dir,
        {"train": train_split},
        quiet,
        work_dir / "out",
        work_dir / "checkpoints",
        device="cpu",
        log=lambda _: None,
        callbacks=[timer],
    )
    return result.tokens_seen / timer.seconds, result.tokens_seen / result.wall_seconds, result.packing


def tokenized_split(config, base_dir: Path, task_name: str, recipe):
    task = config.tasks[task_name]
    rows = build_splits(task)["train"]
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return tokenize_examples(
        tokenizer,
        [r["prompt"] for r in rows],
        [r["answer"] for r in rows],
        recipe.max_seq_length,
        task.config.system_prompt,
    )


def benchmark_recipe(config):
    return parse_recipe({**config.recipes["lora"].model_dump(), "lr_scheduler": "constant", "warmup_ratio": 0.0})


def run_one(role: str, base_dir: Path, task_name: str, steps: int) -> dict:
    """One timed run in this process: the ``--role`` a child is started with."""
    config = load_project_config()
    recipe = benchmark_recipe(config)
    train_split, stats = tokenized_split(config, base_dir, task_name, recipe)
    with tempfile.TemporaryDirectory() as work_dir:
        if role == "baseline":
            steady, whole = baseline_tokens_per_second(base_dir, train_split, recipe, steps, Path(work_dir))
            packing = False
        else:
            steady, whole, packing = ours_tokens_per_second(base_dir, train_split, recipe, steps, Path(work_dir))
    return {
        "steady": steady,
        "whole": whole,
        "packing": packing,
        "mean_length": stats["mean_length"],
        "batch_size": recipe.batch_size,
        "threads": torch.get_num_threads(),
    }


def run_child(role: str, base_dir: Path, options) -> dict:
    command = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--base-dir",
        str(base_dir),
        "--task",
        options.task,
        "--steps",
        str(options.steps),
    ] + (["--threads", str(options.threads)] if options.threads else [])
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"the {role} run failed (exit {finished.returncode}):\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating baseline/ours rounds; the median of each is reported"
    )
    parser.add_argument("--task", default="classification")
    parser.add_argument(
        "--base-dir", type=Path, help="an existing base model folder (default: build the embedded model)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice, one per core)")
    parser.add_argument("--role", choices=("baseline", "ours"), help=argparse.SUPPRESS)  # one timed run, in a child
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    if options.role:
        print(json.dumps(run_one(options.role, options.base_dir, options.task, options.steps)))
        return

    runs = {"baseline": [], "ours": []}
    with tempfile.TemporaryDirectory() as scratch:
        base_dir = options.base_dir
        if base_dir is None:
            base_dir = Path(scratch) / "base"
            build_embedded_model(base_dir, log=lambda _: None)
        for round_index in range(options.rounds):
            for role in runs:
                runs[role].append(run_child(role, base_dir, options))
            baseline, ours = runs["baseline"][-1], runs["ours"][-1]
            print(
                f"round {round_index}: baseline {baseline['steady']:,.0f} tokens/s "
                f"({baseline['whole']:,.0f} with setup), "
                f"ftassets {ours['steady']:,.0f} tokens/s ({ours['whole']:,.0f} with setup)",
                flush=True,
            )

    def median(role: str, figure: str) -> float:
        return round(statistics.median(run[figure] for run in runs[role]), 1)

    ours = runs["ours"][-1]
    result = {
        "benchmark": "train_throughput",
        "task": options.task,
        "device": "cpu",
        "torch_threads": ours["threads"],
        "steps": options.steps,
        "rounds": options.rounds,
        "batch_size": ours["batch_size"],
        "mean_example_tokens": round(ours["mean_length"], 1),
        "packing": ours["packing"],
        "baseline_tokens_per_second": median("baseline", "steady"),
        "ftassets_tokens_per_second": median("ours", "steady"),
        "baseline_call_tokens_per_second": median("baseline", "whole"),
        "ftassets_call_tokens_per_second": median("ours", "whole"),
        "round_ratios": [round(o["steady"] / b["steady"], 3) for b, o in zip(runs["baseline"], runs["ours"])],
    }
    result["ratio_including_setup"] = round(
        result["ftassets_call_tokens_per_second"] / result["baseline_call_tokens_per_second"], 3
    )
    result["ratio"] = round(result["ftassets_tokens_per_second"] / result["baseline_tokens_per_second"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
