"""API evaluation throughput: how bounded concurrency turns per-request latency into examples per second.

Azure cannot be reached from our machines, so the endpoint is the loopback fake Azure of the tests
(``ftassets_tests/fakes/azure_openai.py``) answering every chat completion after a fixed delay (``--latency``,
default 0.5 s, in the range of a short GPT-5 mini answer with minimal reasoning). The client side is the
real one: ``AzureOpenAIBackend`` with the real openai SDK over HTTP, streaming, on the classification
task's test prompts. What is measured is our side (thread pool, streaming, usage and cost accounting),
not Azure's latency or rate limits.

    python benchmarks/api_eval_throughput.py [--examples 150] [--latency 0.5] [--concurrency 1 4 16 32]

The last line printed is one JSON object: examples per second per concurrency and the speed-up of the
highest over 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "ftassets_tests"))

from fakes.azure_openai import FakeAzure  # noqa: E402

from ftassets.config import load_project_config  # noqa: E402
from ftassets.data.datasets import build_splits  # noqa: E402
from ftassets.training.tokenize import chat_messages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=150)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()

    project = load_project_config(REPO / "configs")
    task = project.tasks["classification"]
    rows = (build_splits(task)["test"] * (1 + args.examples // task.config.sizes.test))[: args.examples]
    conversations = [chat_messages(r["prompt"], system_prompt=task.config.system_prompt) for r in rows]
    results = {}
    with FakeAzure(
        responder=lambda model, messages: "positive", api_key="bench-key", chat_delay_s=args.latency
    ) as fake:
        os.environ.update(AZURE_OPENAI_ENDPOINT=fake.url, AZURE_OPENAI_API_KEY="bench-key")
        from dataclasses import replace

        from ftassets.azure.settings import resolve_base
        from ftassets.backends.azure_openai import AzureOpenAIBackend

        for concurrency in args.concurrency:
            fake.state.seen_prompts.clear()
            target = replace(resolve_base(project, "gpt-5-mini"), concurrency=concurrency)
            with AzureOpenAIBackend(target, name="gpt-5-mini") as backend:
                started = time.perf_counter()
                generations = backend.generate(conversations, task.max_new_tokens)
                seconds = time.perf_counter() - started
            cost = sum(g.cost_usd for g in generations)
            results[concurrency] = {
                "examples_per_s": round(len(rows) / seconds, 2),
                "seconds": round(seconds, 2),
                "cost_per_1k_usd": round(cost / len(rows) * 1000, 5),
                "max_in_flight": fake.state.max_in_flight,
            }
            fake.state.max_in_flight = 0
            print(f"concurrency {concurrency:>3}: {results[concurrency]}", flush=True)
    low, high = min(results), max(results)
    print(
        json.dumps(
            {
                "benchmark": "api_eval_throughput",
                "examples": len(rows),
                "latency_s": args.latency,
                "by_concurrency": results,
                "speedup": round(results[high]["examples_per_s"] / results[low]["examples_per_s"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
