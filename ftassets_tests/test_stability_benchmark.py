"""benchmarks/stability.py's summary of its runs: per entry the mean, standard deviation and range of the metric
over every (threads, seed) run, and the largest range (the script's training runs are measured by running it)."""

import pytest
from helpers import benchmark_module


def stability_module():
    return benchmark_module("stability")


def test_the_summary_gives_each_entry_its_spread_over_threads_and_seeds():
    runs = [
        {"entry": "tiny-lora", "threads": threads, "seed": seed, "accuracy": value}
        for (threads, seed), value in zip([(1, 0), (1, 1), (2, 0), (2, 1)], [0.90, 0.94, 0.92, 0.96])
    ] + [{"entry": "tiny-full", "threads": threads, "seed": 0, "accuracy": 0.98} for threads in (1, 2)]

    summary = stability_module().summarize(runs, "accuracy")

    lora, full = summary["tiny-lora"], summary["tiny-full"]
    assert lora["mean"] == pytest.approx(0.93) and lora["range"] == pytest.approx(0.06)
    assert lora["std"] == pytest.approx(0.025820, abs=1e-4) and lora["runs"] == 4
    assert lora["values"] == {
        "threads1-seed0": 0.90,
        "threads1-seed1": 0.94,
        "threads2-seed0": 0.92,
        "threads2-seed1": 0.96,
    }
    assert full == {**full, "mean": 0.98, "std": 0.0, "range": 0.0, "runs": 2}
    assert stability_module().max_range(summary) == pytest.approx(0.06)


def test_runs_on_bases_built_with_other_seeds_are_named_by_the_base_seed():
    runs = [
        {"entry": "tiny-lora", "threads": 2, "seed": 0, "base_seed": base_seed, "accuracy": value}
        for base_seed, value in [(0, 0.99), (1, 0.89), (2, 0.95)]
    ]

    summary = stability_module().summarize(runs, "accuracy")

    assert summary["tiny-lora"]["values"] == {
        "base0-threads2-seed0": 0.99,
        "base1-threads2-seed0": 0.89,
        "base2-threads2-seed0": 0.95,
    }
    assert stability_module().max_range(summary) == pytest.approx(0.10)
