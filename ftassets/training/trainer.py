"""Fine-tune a base model on tokenized splits with the transformers ``Trainer``.

``train`` reads top to bottom: pick the strategy, build the trainable model, configure the Trainer
from the recipe, train (resuming from the last checkpoint of the same run, if one exists), save
the result with its tokenizer, and summarise the run from the Trainer's log history.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback, TrainingArguments, set_seed

from ftassets.artifacts import file_inventory, read_manifest, write_manifest
from ftassets.devices import mixed_precision, peak_memory_mb, reset_peak_memory, resolve_device
from ftassets.tracking import MlflowRunRef, MlflowStepLogger
from ftassets.training.quiet import known_harmless_warnings
from ftassets.training.recipes import Recipe
from ftassets.training.strategies import count_parameters, load_tokenizer, strategy_for
from ftassets.training.tokenize import IGNORE_INDEX


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stops instead of saving garbage weights."""


@dataclass
class TrainingResult:
    method: str
    device: str
    world_size: int
    packing: bool
    trainable_params: int
    total_params: int
    steps: int
    epochs: float
    tokens_seen: int
    tokens_per_second: float
    wall_seconds: float
    peak_memory_mb: float
    train_loss: list[tuple[int, float]]
    val_loss: list[tuple[int, float]]
    final_train_loss: float
    final_val_loss: float | None

    def to_dict(self) -> dict:
        return asdict(self)


class _LogAndGuard(TrainerCallback):
    """Logs progress to ``log`` and stops on a non-finite loss.

    A progress line (step, last training loss, time left) goes out on the first and last step and then at
    most every ``progress_seconds``, at a logging step or, when logging steps are further apart, at any step;
    a validation loss goes out whenever it is computed. Every logged value stays in the Trainer's history.
    """

    def __init__(self, log: Callable[[str], None], progress_seconds: float = 10.0) -> None:
        self.log = log
        self.progress_seconds = progress_seconds
        self.tokens_before = 0
        self.first_step = 0
        self.started = self.last_progress = 0.0
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.tokens_before = state.num_input_tokens_seen
        self.first_step = state.global_step
        self.started = time.perf_counter()
        self.last_progress = -math.inf

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True
        if not control.should_log and time.perf_counter() - self.last_progress >= self.progress_seconds:
            self._progress(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        for key in ("loss", "eval_loss"):
            if key in logs and not math.isfinite(logs[key]):
                raise TrainingDiverged(
                    f"{key} is {logs[key]} at step {state.global_step}; lower learning_rate "
                    f"(now {args.learning_rate:g}) or check the data"
                )
        if "eval_loss" in logs:
            self.log(f"step {state.global_step}/{state.max_steps}: validation loss {logs['eval_loss']:.4g}")
        if "loss" in logs:
            self.last_loss = logs["loss"]
            due = time.perf_counter() - self.last_progress >= self.progress_seconds
            if due or state.global_step >= state.max_steps:
                self._progress(state)

    def _progress(self, state) -> None:
        self.last_progress = now = time.perf_counter()
        done, left = state.global_step - self.first_step, max(state.max_steps - state.global_step, 0)
        eta = f", ETA {_clock((now - self.started) / done * left)}" if done else ""
        loss = f": loss {self.last_loss:.4g}" if self.last_loss is not None else ""
        self.log(f"step {state.global_step}/{state.max_steps}{loss}{eta}")


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _run_fingerprint(base_dir: Path, splits: dict[str, Dataset], recipe: Recipe) -> dict:
    """What must match for a checkpoint to be resumed: recipe, base and the exact training data."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        for column in splits[name].column_names:
            digest.update(repr(splits[name].data.table.column(column).to_pylist()).encode())
    return {
        "recipe": recipe.model_dump(mode="json"),
        "base_dir": str(Path(base_dir).resolve()),
        "data": digest.hexdigest(),
    }


class _ChecksumCheckpoints(TrainerCallback):
    """Writes a manifest (size and sha256 of every file) into each checkpoint once the Trainer has saved it, so a
    checkpoint truncated or garbled later is never resumed."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_manifest(Path(args.output_dir) / f"checkpoint-{state.global_step}", step=state.global_step)


def _checkpoint_damage(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` must not be resumed, or None. The Trainer writes ``trainer_state.json`` last, so a process
    killed while saving leaves a checkpoint without it; a checkpoint whose files no longer match its manifest was
    truncated or garbled since (one killed between the state and the manifest has no manifest and is complete)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        manifest = read_manifest(checkpoint)
    except (OSError, ValueError):
        return "it was not completely written"
    if manifest is None:
        return None
    found = file_inventory(checkpoint)
    for name, facts in manifest["files"].items():
        if name not in found:
            return f"{name} is missing"
        if found[name] != facts:
            return f"{name} is damaged ({found[name]['bytes']} bytes, sha256 differs from what was saved)"
    return None


def _resume_checkpoint(checkpoint_dir: Path, fingerprint: dict, log: Callable[[str], None]) -> str | None:
    """The last sound checkpoint of this same run, if any; checkpoints of another run, incomplete ones and
    damaged ones are removed, each with a log line saying why."""
    marker = checkpoint_dir / "run.json"
    same_run = marker.exists() and json.loads(marker.read_text()) == fingerprint
    candidates = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda path: int(path.name.rsplit("-", 1)[1]))
    problems = {path: _checkpoint_damage(path) if same_run else "it belongs to a different run" for path in candidates}
    sound = [path for path, problem in problems.items() if problem is None]
    if int(os.environ.get("RANK", "0")) != 0:
        return str(sound[-1]) if sound else None  # in a multi-process launch only rank 0 tidies up
    for path, problem in problems.items():
        if problem is not None:
            log(f"removing {path}: {problem}")
            shutil.rmtree(path)
    if sound:
        log(f"resuming from {sound[-1]}")
        return str(sound[-1])
    if any(problems.values()):
        log("starting over from step 0: no checkpoint of this run is left to resume from")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # Renamed into place: the other ranks of a multi-process launch read it while rank 0 writes it.
    staging = marker.with_name(f".{marker.name}.{os.getpid()}")
    staging.write_text(json.dumps(fingerprint, indent=2))
    os.replace(staging, marker)
    return None


def resolve_packing(recipe: Recipe, strategy, model) -> bool:
    """Whether to pack: the recipe's choice, with "auto" packing only where attention handles packed rows natively."""
    if recipe.packing != "auto":
        return recipe.packing
    attention = getattr(model.config, "_attn_implementation", None) or ""
    return strategy.sequence_aligned and "flash" in attention  # flash_attention_2/3 or a kernels-hub flash kernel


def train(
    base_dir: Path,
    splits: dict[str, Dataset],
    recipe: Recipe,
    out_dir: Path,
    checkpoint_dir: Path,
    device: str = "auto",
    log: Callable[[str], None] = print,
    mlflow_run: MlflowRunRef | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainingResult:
    """Fine-tune ``base_dir`` on ``splits["train"]`` (evaluating on ``splits["validation"]``) per ``recipe``;
    ``callbacks`` are extra transformers ``TrainerCallback``s (profilers, custom loggers)."""
    base_dir, out_dir, checkpoint_dir = Path(base_dir), Path(out_dir), Path(checkpoint_dir)
    device = resolve_device(device)
    if device.startswith("cuda:") and device != "cuda:0":
        raise ValueError(
            f"device {device!r}: the Trainer uses the first visible GPU; select it with CUDA_VISIBLE_DEVICES"
        )
    fully_masked = sum(all(label == IGNORE_INDEX for label in labels) for labels in splits["train"]["labels"])
    if fully_masked:
        raise ValueError(f"{fully_masked} training examples have every label masked; raise max_seq_length")

    strategy = strategy_for(recipe)
    set_seed(recipe.seed)
    with known_harmless_warnings():
        model = strategy.prepare_model(base_dir, recipe, device)
    tokenizer = load_tokenizer(base_dir)
    trainable_params, total_params = count_parameters(model)
    precision = mixed_precision(device)
    threads = f", {torch.get_num_threads()} CPU threads" if device == "cpu" else ""
    log(
        f"{recipe.method} on {device} ({precision or 'fp32'}{threads}): "
        f"{trainable_params:,} of {total_params:,} parameters trainable"
    )
    log(f"recipe: {recipe.model_dump_json()}")

    validation = splits.get("validation")
    if recipe.keep_best_checkpoint and validation is None:
        raise ValueError("keep_best_checkpoint needs a validation split to pick the best checkpoint by")
    packing = resolve_packing(recipe, strategy, model)
    log(
        "batches: "
        + (
            "packed into one row each, attention kept within every example"
            if packing
            else "grouped by length and padded to the longest"
        )
    )
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size * 2,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="constant_with_warmup" if recipe.lr_scheduler == "constant" else recipe.lr_scheduler,
        warmup_steps=recipe.warmup_ratio,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        activation_checkpointing=recipe.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        seed=recipe.seed,
        data_seed=recipe.seed,
        train_sampling_strategy="random" if packing else "group_by_length",
        include_num_input_tokens_seen="non_padding",
        ddp_backend="gloo" if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        eval_strategy="steps" if validation is not None else "no",
        eval_steps=recipe.eval_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=2,
        load_best_model_at_end=recipe.keep_best_checkpoint,
        metric_for_best_model="eval_loss" if recipe.keep_best_checkpoint else None,
        prediction_loss_only=True,
        logging_steps=recipe.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=device.startswith("cuda"),
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=True,
    )
    guard = _LogAndGuard(log)
    callbacks = [guard, _ChecksumCheckpoints(), *([MlflowStepLogger(mlflow_run)] if mlflow_run else []), *callbacks]
    trainer = strategy.build_trainer(model, args, splits, tokenizer, callbacks, packing=packing)
    trainer.remove_callback(PrinterCallback)
    optimizer = strategy.optimizer(trainer.model, recipe, args, log)
    if optimizer is not None:
        trainer.optimizer = optimizer  # the Trainer keeps an optimizer it is given (its scheduler and checkpoints too)

    resume_from = _resume_checkpoint(checkpoint_dir, _run_fingerprint(base_dir, splits, recipe), log)
    reset_peak_memory(device)
    started = time.perf_counter()
    with known_harmless_warnings():
        trainer.train(resume_from_checkpoint=resume_from)
    wall_seconds = time.perf_counter() - started

    if trainer.is_world_process_zero():
        out_dir.mkdir(parents=True, exist_ok=True)
        strategy.save(trainer.model, out_dir)
        tokenizer.save_pretrained(out_dir)
        (out_dir / "recipe.json").write_text(recipe.model_dump_json(indent=2))

    state = trainer.state
    train_loss = [(entry["step"], entry["loss"]) for entry in state.log_history if "loss" in entry]
    val_loss = [(entry["step"], entry["eval_loss"]) for entry in state.log_history if "eval_loss" in entry]
    result = TrainingResult(
        method=recipe.method,
        device=device,
        world_size=args.world_size,
        packing=packing,
        trainable_params=trainable_params,
        total_params=total_params,
        steps=state.global_step,
        epochs=round(state.epoch or 0.0, 4),
        tokens_seen=int(state.num_input_tokens_seen),
        tokens_per_second=round((state.num_input_tokens_seen - guard.tokens_before) / wall_seconds, 1),
        wall_seconds=round(wall_seconds, 3),
        peak_memory_mb=round(peak_memory_mb(device), 1),
        train_loss=train_loss,
        val_loss=val_loss,
        final_train_loss=train_loss[-1][1],
        final_val_loss=val_loss[-1][1] if val_loss else None,
    )
    log(
        f"trained {result.steps} steps in {result.wall_seconds:.1f} s, {result.tokens_per_second:,.0f} tokens/s, "
        f"final train loss {result.final_train_loss:.4f}, validation loss {result.final_val_loss}"
    )
    return result
