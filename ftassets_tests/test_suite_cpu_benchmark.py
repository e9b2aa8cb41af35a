"""benchmarks/suite_cpu.py's crediting of sampled processes to the suite's groups (the script itself is measured by
running it around the README's test command)."""

import sys

import pytest
from helpers import benchmark_module


@pytest.fixture(scope="module")
def suite_cpu():
    yield benchmark_module("suite_cpu")
    del sys.modules["suite_cpu"]


def test_a_process_belongs_to_its_nearest_classified_ancestors_group(suite_cpu):
    table = {
        1: (0, "/sbin/init"),
        10: (1, "python -m pytest -q"),
        11: (10, "python -u -c import sys;exec(eval(sys.stdin.readline()))"),
        12: (11, "python -m dagster dev -m ftassets.definitions -h 127.0.0.1 -p 4000"),
        13: (12, "python -m dagster code-server start --socket /tmp/s"),
        14: (13, "python -B -c from multiprocessing.spawn import spawn_main; spawn_main()"),
        15: (11, "python -m ftassets.backends.llama_cpp_server --model x.gguf"),
        16: (10, "python ftassets_tests/e2e_world.py /tmp/world"),
        17: (16, "tail -F -c +0 /tmp/world/dagster_home/storage/x.out"),
        18: (1, "bash .ci/run"),
        19: (18, ".venv/bin/python .venv/bin/pip install -q -e .[dev]"),
    }
    groups = {pid: suite_cpu.group_of(pid, table) for pid in table}
    assert groups == {
        1: "other", 10: "controller", 11: "workers", 12: "dagster_dev", 13: "dagster_dev", 14: "dagster_dev",
        15: "workers", 16: "world", 17: "world", 18: "other", 19: "install",
    }  # fmt: skip


def test_each_process_is_credited_with_the_cpu_it_used_while_the_command_ran(suite_cpu):
    before = {(1, 0.0): ("other", 100.0), (10, 5.0): ("controller", 2.0)}
    during = {(1, 0.0): ("other", 101.0), (10, 5.0): ("controller", 4.0), (20, 9.0): ("workers", 30.0)}
    after = {(1, 0.0): ("other", 102.5), (10, 5.0): ("controller", 6.0), (21, 12.0): ("world", 7.0)}
    totals = suite_cpu.credit([before, during, after])
    # A process seen before the command started counts from then; one started later counts whole; the pid 20
    # that ended between samples keeps its last sampled time.
    assert totals == {
        "world": 7.0,
        "dagster_dev": 0.0,
        "workers": 30.0,
        "controller": 4.0,
        "install": 0.0,
        "other": 2.5,
    }
