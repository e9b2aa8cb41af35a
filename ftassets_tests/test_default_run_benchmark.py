"""benchmarks/default_run.py's reading of ``ftassets run``'s output (the script's runs are measured by running it)."""

from helpers import benchmark_module

OUTPUT = """\
ftassets run: tasks classification; models tiny-lora, tiny-full
  running  dataset [classification] (missing)
  done     dataset [classification] in 0.7s (run ced5bab6)
  running  base_model [tiny-lora] (missing)
           pretrain step 1/1100: loss 7.630
  done     base_model [tiny-lora] in 74.1s (run 4c733d9a)
           base 'tiny' is current at /tmp/r1/.ftassets_home/artifacts/base_model/tiny; reusing it
  done     base_model [tiny-full] in 0.4s (run a00d52f9)
  done     adapter [tiny-lora|classification] in 54.7s (run 0e4b3be9)
  current  tokenized_splits [tiny-full|classification]
  FAILED   adapter [tiny-full|classification] (run 59e166fa): out of memory
  done     leaderboard [all] in 0.3s (run aa84fccc)
"""


def test_the_step_lines_give_each_steps_outcome_and_each_assets_seconds():
    module = benchmark_module("default_run")

    steps = module.parse_steps(OUTPUT)

    assert [(step["outcome"], step["asset"], step["partition"]) for step in steps] == [
        ("done", "dataset", "classification"),
        ("done", "base_model", "tiny-lora"),
        ("done", "base_model", "tiny-full"),
        ("done", "adapter", "tiny-lora|classification"),
        ("current", "tokenized_splits", "tiny-full|classification"),
        ("FAILED", "adapter", "tiny-full|classification"),
        ("done", "leaderboard", "all"),
    ]
    assert steps[4]["seconds"] is None and steps[5]["seconds"] is None
    assert module.seconds_by_asset(steps) == {"dataset": 0.7, "base_model": 74.5, "adapter": 54.7, "leaderboard": 0.3}


def test_the_median_round_is_reported_with_every_rounds_wall_time():
    module = benchmark_module("default_run")

    runs = [{"wall_s": 380.0, "cpu_s": 600.0}, {"wall_s": 350.0, "cpu_s": 580.0}, {"wall_s": 365.0, "cpu_s": 590.0}]

    assert module.median_of(runs) == {"wall_s": 365.0, "cpu_s": 590.0, "round_wall_s": [380.0, 350.0, 365.0]}
