"""Fine-tuning speed and memory of a 0.5B model on one GPU: LoRA, QLoRA and full fine-tuning.

The model is Qwen2-0.5B's architecture (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864,
vocabulary 151936, tied embeddings) built from its config with random weights, so nothing is downloaded.
It is saved once to a temporary folder and every variant loads it back with ``from_pretrained``, as
ftassets' strategies load a base. The variants follow the shipped recipes (r=16, alpha 32, dropout 0.05,
all linear layers):

- ``lora``: bf16 base, adapters fused with ``ftassets.training.fused_lora`` as ``LoraStrategy`` does;
- ``lora_unfused``: the same, with peft's own LoRA forward (what ``fuse_lora_layers`` saves);
- ``qlora``: bitsandbytes 4-bit NF4 base with double quantization and bf16 compute, through
  ``prepare_model_for_kbit_training``, as ``QLoraStrategy`` does;
- ``full``: every weight trained, fp32 master weights, as ``FullStrategy`` does;
- ``*_gc``: the same with gradient checkpointing (non-reentrant, as the trainer sets it).

The strategies themselves are not imported: ``ftassets.training.strategies`` pulls in datasets, TRL and
pydantic (through the recipes), which the GPU machine does not have. The models are built here with the
same peft and transformers calls and the same settings instead.

Each step is a forward with the model's own loss over every position, a backward, a gradient-norm clip at
1.0 and a fused AdamW step, under bf16 autocast (what the Trainer does with ``bf16=True``). Batches are
random token ids, every row full (no padding), so the tokens of a step are batch x sequence length.
Warm-up steps are not timed; each timed step is bracketed by ``torch.cuda.synchronize()`` and the
median step time is reported. Peak memory is ``torch.cuda.max_memory_allocated`` from loading the model
to the last step (on CPU: the process's peak resident set size, which never goes down).

MFU counts model FLOPs per token, never recomputation (so checkpointing lowers MFU) or 4-bit dequantization:

- full fine-tuning: ``6 N + 12 L d T`` (nanoGPT/PaLM: forward 2N, backward 4N, attention scores and
  values 12 L d T with no causal discount);
- LoRA and QLoRA: ``4 N + 6 N_adapter + 12 L d T``: the frozen base costs forward 2N plus the backward's
  activation gradients 2N (no weight gradients), the adapters all three, attention the same as above;

where N counts the weights of every matmul (all linear layers plus the tied embedding as the output
head), L the layers, d = heads x head size, T the sequence length. The peak it is divided by is measured
here (an 8192^3 bf16 ``torch.matmul`` on random data, 3 warm-ups, median of 10 timed with CUDA events) and
also taken from the datasheet (989 TFLOP/s dense bf16 for H100/H200 SXM).

    python benchmarks/gpu_finetune.py [--batch 8] [--seq 1024] [--variants lora,qlora,...] [--out PATH]
    python benchmarks/gpu_finetune.py --tiny     # 2 layers, hidden 64: a CPU smoke test of every code path

Only torch, transformers, peft and (for QLoRA) bitsandbytes are needed besides the repository itself
(``PYTHONPATH=.`` where ftassets is not installed): ``ftassets.training`` imports nothing else at import time.

The last line printed is one JSON object with every figure, the versions and the settings.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, Qwen2Config
from transformers.utils import logging as transformers_logging

from ftassets.training.fused_lora import fuse_lora_layers
from ftassets.training.quiet import known_harmless_warnings

QWEN2_05B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
)
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=1024,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)
VARIANTS = ("lora", "lora_gc", "lora_unfused", "qlora", "qlora_gc", "full", "full_gc")
DATASHEET_BF16_TFLOPS = 989.0
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", bias="none")


def bitsandbytes_status() -> tuple[str | None, str | None]:
    """(the native library bitsandbytes loaded, why QLoRA cannot run here or None)."""
    try:
        from bitsandbytes.cextension import lib
    except Exception as error:
        return None, f"bitsandbytes failed to import: {type(error).__name__}: {error}"
    # A library that failed to load is a stand-in that raises its error on first use: QLoRA then records it.
    loaded = getattr(getattr(lib, "_lib", None), "_name", None)
    return f"{type(lib).__name__}: {loaded}", None


def peak_matmul_tflops(device: str, size: int, repeats: int = 10, warmup: int = 3) -> float:
    """Dense bf16 matmul rate on random data: median of ``repeats`` timed runs after ``warmup``."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(warmup):
        torch.matmul(a, b)
    seconds = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            torch.matmul(a, b)
            end.record()
            torch.cuda.synchronize()
            seconds.append(start.elapsed_time(end) / 1000)
        else:
            started = time.perf_counter()
            torch.matmul(a, b)
            seconds.append(time.perf_counter() - started)
    del a, b
    return 2 * size**3 / statistics.median(seconds) / 1e12


def matmul_weights(model: torch.nn.Module) -> int:
    """N: weights that take part in a matmul per token (linear layers, the output head once if tied)."""
    return sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def enable_checkpointing(model: torch.nn.Module) -> None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.23; the older name warns there
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False


def build_variant(name: str, base_dir: Path, device: str) -> tuple[torch.nn.Module, dict]:
    """The model to train for ``name`` and facts about how it was built."""
    method, checkpointing = name.removesuffix("_gc").removesuffix("_unfused"), name.endswith("_gc")
    facts: dict = {"method": method, "gradient_checkpointing": checkpointing}
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
        model.requires_grad_(True)
        facts["weights"] = "fp32 master weights, bf16 autocast"
    elif method == "lora":
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16).to(device)
        model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **LORA))
        facts["fused_lora_layers"] = 0 if name.endswith("_unfused") else fuse_lora_layers(model)
        facts["weights"] = "bf16 base, peft adapters (fp32), bf16 autocast"
    elif method == "qlora":
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        base = AutoModelForCausalLM.from_pretrained(
            base_dir, quantization_config=quantization, dtype=torch.bfloat16, device_map=device
        )
        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **LORA))
        facts["weights"] = "NF4 double-quant base, bf16 compute, peft adapters (fp32), bf16 autocast"
    else:
        raise ValueError(f"unknown variant {name!r}; available: {', '.join(VARIANTS)}")
    if checkpointing:
        enable_checkpointing(model)
    model.config.use_cache = False
    model.train()
    facts["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    facts["parameters"] = sum(p.numel() for p in model.parameters())
    facts["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    return model, facts


def flops_per_token(method: str, matmul_n: int, adapter_n: int, config: Qwen2Config, seq: int) -> dict:
    head_size = config.hidden_size // config.num_attention_heads
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * head_size * seq
    if method == "full":
        formula, weights = "6N + 12LdT", 6 * matmul_n
    else:
        formula, weights = "4N + 6N_adapter + 12LdT", 4 * matmul_n + 6 * adapter_n
    return {"formula": formula, "weights": weights, "attention": attention, "total": weights + attention}


def time_variant(
    name: str, base_dir: Path, options, device: str, config: Qwen2Config, matmul_n: int, peaks: dict
) -> dict:
    free(device)
    loaded = time.perf_counter()
    model, facts = build_variant(name, base_dir, device)
    facts["load_seconds"] = round(time.perf_counter() - loaded, 2)
    facts["memory_after_load_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1) if device == "cuda" else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=device == "cuda")
    generator = torch.Generator(device="cpu").manual_seed(0)
    batches = [
        torch.randint(0, config.vocab_size, (options.batch, options.seq), generator=generator).to(device)
        for _ in range(2)
    ]
    tokens = options.batch * options.seq

    def step(input_ids: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for index in range(options.warmup):
        step(batches[index % 2])
    seconds, losses = [], []
    for index in range(options.steps):
        sync(device)
        started = time.perf_counter()
        loss = step(batches[index % 2])
        sync(device)
        seconds.append(time.perf_counter() - started)
        losses.append(loss)
    step_seconds = statistics.median(seconds)
    adapter_n = facts["trainable_parameters"] if facts["method"] != "full" else 0
    flops = flops_per_token(facts["method"], matmul_n, adapter_n, config, options.seq)
    achieved = flops["total"] * tokens / step_seconds / 1e12
    result = {
        "variant": name,
        **facts,
        "tokens_per_step": tokens,
        "step_seconds_median": round(step_seconds, 5),
        "step_seconds_min": round(min(seconds), 5),
        "step_seconds_max": round(max(seconds), 5),
        "tokens_per_second": round(tokens / step_seconds, 1),
        "tokens_per_second_mean": round(tokens * len(seconds) / sum(seconds), 1),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "peak_memory_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1) if device == "cuda" else None,
        "flops_per_token": flops,
        "model_tflops": round(achieved, 2),
        "mfu_vs_measured_peak": round(achieved / peaks["measured"], 4) if peaks["measured"] else None,
        "mfu_vs_datasheet": round(achieved / peaks["datasheet"], 4) if peaks["datasheet"] else None,
        "loss_first_last": [round(float(losses[0]), 4), round(float(losses[-1]), 4)],
    }
    return result  # the model, optimizer and batches go with this frame; the next variant frees the cache


def versions() -> dict:
    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }
    for package in ("peft", "accelerate", "bitsandbytes"):
        try:
            found[package] = __import__(package).__version__
        except Exception as error:
            found[package] = f"unavailable: {type(error).__name__}"
    return found


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'variant':<14}{'tokens/s':>12}{'step ms':>10}{'peak MiB':>11}{'TFLOP/s':>10}{'MFU meas.':>11}"
        f"{'MFU 989':>9}{'trainable':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row or "skipped" in row:
            print(f"{row['variant']:<14}  {row.get('skipped') or 'ERROR: ' + row['error']}")
            continue
        percent = lambda value: f"{100 * value:.1f}%" if value is not None else "-"  # noqa: E731
        print(
            f"{row['variant']:<14}{row['tokens_per_second']:>12,.0f}{1000 * row['step_seconds_median']:>10.1f}"
            f"{row['peak_memory_mb']:>11,.0f}{row['model_tflops']:>10.1f}{percent(row['mfu_vs_measured_peak']):>11}"
            f"{percent(row['mfu_vs_datasheet']):>9}{row['trainable_parameters']:>13,}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2 layers, hidden 64, small batches: a smoke test (CPU)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--variants", default=None, help=f"comma-separated, from {','.join(VARIANTS)} (default: all)")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default 8; tiny 2)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per row (default 1024; tiny 64)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument(
        "--matmul-size", type=int, default=None, help="side of the peak-rate matmul (default 8192; tiny 256)"
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=330,
        help="skip variants not started by then, so a capped run still prints its JSON",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON object here")
    options = parser.parse_args()
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()

    device = options.device if options.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    options.batch = options.batch or (2 if options.tiny else 8)
    options.seq = options.seq or (64 if options.tiny else 1024)
    matmul_size = options.matmul_size or (256 if options.tiny else 8192)
    variants = options.variants.split(",") if options.variants else list(VARIANTS)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; available: {', '.join(VARIANTS)}")
    config = Qwen2Config(**(TINY if options.tiny else QWEN2_05B))
    device_name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"device {device_name}; {json.dumps(versions())}", flush=True)

    measured = peak_matmul_tflops(device, matmul_size)
    peaks = {"measured": measured, "datasheet": DATASHEET_BF16_TFLOPS if device == "cuda" else None}
    print(
        f"bf16 matmul {matmul_size}^3: {measured:.1f} TFLOP/s measured"
        + (f", datasheet {DATASHEET_BF16_TFLOPS:.0f}" if device == "cuda" else ""),
        flush=True,
    )

    bnb_library, no_qlora = bitsandbytes_status()  # after the matmul, so torch has loaded cuBLAS for it
    print(f"bitsandbytes native library: {bnb_library or no_qlora}", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base_dir = Path(scratch) / "base"
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        matmul_n = matmul_weights(model)
        total_n = sum(p.numel() for p in model.parameters())
        model.save_pretrained(base_dir)
        del model
        print(
            f"model: {total_n:,} parameters, N = {matmul_n:,} matmul weights; batch {options.batch} x seq "
            f"{options.seq}; {options.warmup} warm-up + {options.steps} timed steps",
            flush=True,
        )
        for name in variants:
            if name.startswith("qlora") and no_qlora:
                rows.append({"variant": name, "skipped": no_qlora})
            elif time.perf_counter() - started > options.budget_seconds:
                rows.append({"variant": name, "skipped": f"time budget of {options.budget_seconds:.0f} s spent"})
            else:
                try:
                    with known_harmless_warnings():
                        rows.append(time_variant(name, base_dir, options, device, config, matmul_n, peaks))
                except Exception as error:
                    traceback.print_exc()
                    rows.append({"variant": name, "error": f"{type(error).__name__}: {error}"[:500]})
                    free(device)
            row = rows[-1]
            print(
                f"{name}: "
                + (
                    f"{row['tokens_per_second']:,.0f} tokens/s, {row['peak_memory_mb']:,.0f} MiB peak"
                    if "tokens_per_second" in row
                    else row.get("skipped") or row.get("error")
                ),
                flush=True,
            )

    print()
    print_table(rows)
    result = {
        "benchmark": "gpu_finetune",
        "device": device,
        "device_name": device_name,
        "versions": versions(),
        "settings": {
            "tiny": options.tiny,
            "model_config": TINY if options.tiny else QWEN2_05B,
            "batch": options.batch,
            "seq": options.seq,
            "tokens_per_step": options.batch * options.seq,
            "warmup_steps": options.warmup,
            "timed_steps": options.steps,
            "lora": LORA,
            "optimizer": "AdamW lr 1e-4 (fused on CUDA), clip 1.0",
            "precision": "bf16 autocast",
            "padding": "none: every row full, tokens = batch x seq",
        },
        "bitsandbytes_library": bnb_library,
        "parameters": total_n,
        "matmul_weights_n": matmul_n,
        "peak_bf16_matmul": {
            "size": matmul_size,
            "measured_tflops": round(measured, 1),
            "datasheet_tflops": peaks["datasheet"],
        },
        "mfu_note": "model FLOPs only (no recomputation, no dequantization); full: 6N+12LdT, "
        "LoRA/QLoRA: 4N+6N_adapter+12LdT per token; attention without causal discount",
        "variants": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    line = json.dumps(result)
    if options.out:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(line + "\n")
    print(line)
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
