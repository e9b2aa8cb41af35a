"""Generation throughput of the local backend's batched path against naive one-prompt-at-a-time ``generate``.

Both generate greedily, on the same model and the same test prompts of a task, with the same stop
tokens and ``max_new_tokens``. Ours is ``LocalHFBackend`` (length-sorted, left-padded batches, KV cache,
the prompts' shared prefix processed once, stop at end of turn); the baseline calls ``model.generate`` once
per prompt, as most evaluation scripts do. The model is the fully fine-tuned embedded model (trained here
for a few steps so it answers and stops like a fine-tuned model would), on CPU.

    python benchmarks/eval_throughput.py [--task classification] [--rounds 3] [--threads N]
                                         [--batch-size N] [--max-batch-tokens N]

Batch limits default to the evaluation's own (``evaluation.batch_size`` / ``max_batch_tokens`` in
configs/experiments.yaml). Naive and batched runs alternate for ``--rounds`` rounds; the median of each
is reported. The last line printed is one JSON object with both figures (generated tokens per second)
and ``ratio``; ``batched_no_prefix_cache_tokens_per_second`` (the same batches without prefix caching, run
in the same rounds) shows what the prefix cache adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from ftassets.backends.local_hf import LocalHFBackend
from ftassets.config import load_project_config
from ftassets.data.datasets import build_splits
from ftassets.models.embedded import build_embedded_model
from ftassets.training.recipes import parse_recipe
from ftassets.training.strategies import load_causal_lm, load_tokenizer
from ftassets.training.tokenize import chat_messages, encode_chats, stop_token_ids, tokenize_examples
from ftassets.training.trainer import train


def naive_generate(model, tokenizer, conversations, max_new_tokens: int) -> tuple[int, float, list[str]]:
    stops = stop_token_ids(tokenizer, model.generation_config)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops, pad_token_id=stops[0])
    generated, texts = 0, []
    started = time.perf_counter()
    with torch.inference_mode():
        for prompt in encode_chats(tokenizer, conversations, add_generation_prompt=True):
            output = model.generate(input_ids=torch.tensor([prompt]), generation_config=config)[
                0, len(prompt) :
            ].tolist()
            end = next((k + 1 for k, token in enumerate(output) if token in stops), len(output))
            generated += end
            texts.append(tokenizer.decode(output[:end], skip_special_tokens=True))
    return generated, time.perf_counter() - started, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="classification")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-batch-tokens", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int)
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    config = load_project_config()
    settings = config.experiments.evaluation
    batch_size = options.batch_size or settings.batch_size
    max_batch_tokens = options.max_batch_tokens or settings.max_batch_tokens
    task = config.tasks[options.task]
    splits = build_splits(task)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        build_embedded_model(scratch / "base", log=lambda _: None)
        tokenizer = load_tokenizer(scratch / "base")
        rows = splits["train"]
        train_split, _ = tokenize_examples(
            tokenizer, [r["prompt"] for r in rows], [r["answer"] for r in rows], 256, task.config.system_prompt
        )
        recipe = parse_recipe(
            {**config.recipes["full"].model_dump(), "max_steps": 150, "save_steps": 1000, "eval_steps": 1000}
        )
        train(
            scratch / "base",
            {"train": train_split},
            recipe,
            scratch / "tuned",
            scratch / "checkpoints",
            device="cpu",
            log=lambda _: None,
        )

        conversations = [chat_messages(r["prompt"], system_prompt=task.config.system_prompt) for r in splits["test"]]
        model = load_causal_lm(scratch / "tuned", "cpu").eval()
        backend = LocalHFBackend(model, tokenizer, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        uncached = LocalHFBackend(
            model, tokenizer, batch_size=batch_size, max_batch_tokens=max_batch_tokens, prefix_cache=False
        )
        prefix_tokens = len(
            backend.shared_prefix(encode_chats(tokenizer, conversations, add_generation_prompt=True))[0]
        )
        naive_runs, batched_runs, uncached_runs = [], [], []
        for round_index in range(options.rounds):
            naive_tokens, seconds, naive_texts = naive_generate(model, tokenizer, conversations, task.max_new_tokens)
            naive_runs.append(seconds)
            started = time.perf_counter()
            generations = backend.generate(conversations, task.max_new_tokens)
            batched_runs.append(time.perf_counter() - started)
            started = time.perf_counter()
            uncached_generations = uncached.generate(conversations, task.max_new_tokens)
            uncached_runs.append(time.perf_counter() - started)
            print(
                f"round {round_index}: naive {naive_runs[-1]:.2f} s, batched {batched_runs[-1]:.2f} s, "
                f"batched without prefix cache {uncached_runs[-1]:.2f} s",
                flush=True,
            )
        naive_seconds, batched_seconds = statistics.median(naive_runs), statistics.median(batched_runs)
        uncached_seconds = statistics.median(uncached_runs)
        batched_tokens = sum(g.completion_tokens for g in generations)
        agreement = sum(g.text == text for g, text in zip(generations, naive_texts)) / len(naive_texts)
        if [g.text for g in uncached_generations] != [g.text for g in generations]:
            raise SystemExit("prefix caching changed a generation")

    result = {
        "benchmark": "eval_throughput",
        "task": options.task,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "prompts": len(conversations),
        "batch_size": batch_size,
        "max_batch_tokens": max_batch_tokens,
        "rounds": options.rounds,
        "max_new_tokens": task.max_new_tokens,
        "mean_prompt_tokens": round(sum(g.prompt_tokens for g in generations) / len(generations), 1),
        "shared_prefix_tokens": prefix_tokens,
        "same_text_fraction": round(agreement, 3),
        "naive_tokens_per_second": round(naive_tokens / naive_seconds, 1),
        "batched_tokens_per_second": round(batched_tokens / batched_seconds, 1),
        "naive_seconds": round(naive_seconds, 2),
        "batched_seconds": round(batched_seconds, 2),
        "batched_no_prefix_cache_tokens_per_second": round(batched_tokens / uncached_seconds, 1),
        "batched_no_prefix_cache_seconds": round(uncached_seconds, 2),
    }
    result["ratio"] = round(result["batched_tokens_per_second"] / result["naive_tokens_per_second"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
