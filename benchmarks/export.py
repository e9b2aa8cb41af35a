"""GGUF export cost and llama.cpp against transformers generation speed, on the embedded model on CPU.

Exports the model (f16 by the project's writer, q8_0 and q4_k_m by llama.cpp's quantizer) exactly as the
``gguf_export`` asset does, parity gate included, and reports seconds per quant type and file sizes.
Then both runtimes decode greedily from the same prompt ids, one prompt at a time, for exactly
``--new-tokens`` tokens (no early stop, so both do the same work): transformers with its KV cache in
fp32, llama.cpp on each GGUF. The model is the embedded default base (built here, about 40 s) or any
saved checkpoint given with ``--model-dir`` (a merged model from ``.ftassets_home``, say).

    python benchmarks/export.py [--model-dir DIR] [--prompts 8] [--new-tokens 64] [--threads 2] [--rounds 3]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def transformers_tokens_per_second(model, prompt_ids: list[list[int]], new_tokens: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for ids in prompt_ids:
            model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                eos_token_id=None,
                pad_token_id=0,
            )
    return len(prompt_ids) * new_tokens / (time.perf_counter() - started)


def llama_tokens_per_second(llm, prompt_ids: list[list[int]], new_tokens: int) -> float:
    started = time.perf_counter()
    for ids in prompt_ids:
        llm.reset()
        llm.eval(ids)
        for _ in range(new_tokens):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return len(prompt_ids) * new_tokens / (time.perf_counter() - started)


def main() -> None:
    from ftassets.config import load_project_config
    from ftassets.data.datasets import build_splits
    from ftassets.export.export import ExportSettings, export_gguf, gguf_file_name
    from ftassets.export.llama_runtime import load_llama
    from ftassets.models.embedded import build_embedded_model
    from ftassets.training.strategies import load_causal_lm, load_tokenizer
    from ftassets.training.tokenize import chat_messages, encode_chats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--task", default="classification")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(scratch) / "embedded"
            build_embedded_model(model_dir, log=lambda line: None)
        project = load_project_config(Path(__file__).resolve().parents[1] / "configs")
        task = project.tasks[args.task]
        rows = build_splits(task)["test"][: args.prompts]
        conversations = [chat_messages(r["prompt"], system_prompt=task.config.system_prompt) for r in rows]
        out = Path(scratch) / "gguf"
        out.mkdir()
        settings = ExportSettings(parity_prompts=args.prompts, threads=args.threads)
        started = time.perf_counter()
        result = export_gguf(model_dir, out, "bench", conversations, settings, log=lambda line: None)
        export_seconds = time.perf_counter() - started

        tokenizer = load_tokenizer(model_dir)
        model = load_causal_lm(model_dir, "cpu").eval()
        prompt_ids = encode_chats(tokenizer, conversations, add_generation_prompt=True)
        n_ctx = max(map(len, prompt_ids)) + args.new_tokens + 8
        speeds: dict[str, list[float]] = {"transformers_fp32": []}
        runtimes = {
            q: load_llama(out / gguf_file_name("bench", q), n_ctx, args.threads, logits_all=True)
            for q in settings.quant_types
        }
        for _ in range(args.rounds):
            speeds["transformers_fp32"].append(transformers_tokens_per_second(model, prompt_ids, args.new_tokens))
            for quant_type, llm in runtimes.items():
                speeds.setdefault(f"llama_cpp_{quant_type}", []).append(
                    llama_tokens_per_second(llm, prompt_ids, args.new_tokens)
                )
        for llm in runtimes.values():
            llm.close()

    quantizations = result.summary["quantizations"]
    figures = {
        "benchmark": "export",
        "model": str(args.model_dir) if args.model_dir else "embedded default",
        "architecture": result.summary["writer"]["architecture"],
        "threads": args.threads,
        "prompts": len(prompt_ids),
        "new_tokens": args.new_tokens,
        "parity_passed": result.passed,
        "export_seconds_total": round(export_seconds, 2),
        "export_seconds": {q: round(f["seconds"], 3) for q, f in quantizations.items()},
        "file_mb": {q: f["size_mb"] for q, f in quantizations.items()},
        "fallback_tensors": {q: len(f["fallback_tensors"]) for q, f in quantizations.items()},
        "greedy_agreement": {q: g["agreement"] for q, g in result.summary["parity"]["greedy"].items()},
        "tokens_per_second": {name: round(statistics.median(values), 1) for name, values in speeds.items()},
    }
    figures["llama_cpp_vs_transformers"] = {
        q: round(figures["tokens_per_second"][f"llama_cpp_{q}"] / figures["tokens_per_second"]["transformers_fp32"], 2)
        for q in settings.quant_types
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
