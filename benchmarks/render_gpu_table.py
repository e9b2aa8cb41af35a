"""Render a recorded ``benchmarks/gpu_finetune.py`` JSON (its ``--out`` file) as the markdown table BENCHMARKS.md
shows, so the figures there are generated from the run, never typed.

    python benchmarks/render_gpu_table.py benchmarks/results/gpu_finetune_h200.json
"""

import json
import sys


def render(result: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items())
    settings = result["settings"]
    peak = result["peak_bf16_matmul"]
    lines = [
        f"Device: {result['device_name']}; {versions}.",
        f"Model: Qwen2-0.5B architecture from its config, random weights ({result['parameters']:,} parameters); "
        f"batch {settings['batch']} x {settings['seq']} tokens, {settings['precision']}, {settings['optimizer']}.",
        f"Peak bf16 matmul measured in the same run: {peak['measured_tflops']} TFLOP/s "
        f"(datasheet {peak['datasheet_tflops']}). MFU counts model FLOPs only: {result['mfu_note']}.",
        "",
        "| variant | gradient checkpointing | tokens/s | step (ms) | peak memory (MiB) | TFLOP/s | MFU (measured peak) "
        "| MFU (datasheet) | trainable parameters |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in result["variants"]:
        if "error" in v:
            lines.append(f"| {v['variant']} | | failed: {v['error'][:80]} | | | | | | |")
            continue
        lines.append(
            f"| {v['variant']} | {'yes' if v['gradient_checkpointing'] else 'no'} | {v['tokens_per_second']:,.0f} | "
            f"{v['step_seconds_median'] * 1000:.1f} | {v['peak_memory_mb']:,.0f} | {v['model_tflops']:.1f} | "
            f"{v['mfu_vs_measured_peak']:.1%} | {v['mfu_vs_datasheet']:.1%} | {v['trainable_parameters']:,} |"
        )
    by_name = {v["variant"]: v for v in result["variants"] if "error" not in v}

    def ratio(a: str, b: str, key: str = "tokens_per_second") -> str:
        return f"{by_name[a][key] / by_name[b][key]:.2f}x" if a in by_name and b in by_name else "n/a"

    lines += [
        "",
        f"Ratios from the same run: LoRA / full tokens/s {ratio('lora', 'full')}; "
        f"QLoRA / LoRA {ratio('qlora', 'lora')}; "
        f"fused LoRA layers / peft's forward {ratio('lora', 'lora_unfused')}; LoRA peak memory with / without gradient "
        f"checkpointing {ratio('lora_gc', 'lora', 'peak_memory_mb')}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(open(sys.argv[1]).read())))
