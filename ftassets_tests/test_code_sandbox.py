"""The sandbox the ``code`` task scores answers in: each misbehaving answer scores 0 with its reason, and every run
leaves no process and no folder behind."""

from pathlib import Path

import pytest

from ftassets.tasks._sandbox import PROJECT_ROOT, SandboxLimits, run_many, run_tests

LIMITS = SandboxLimits(wall_seconds=60.0, cpu_seconds=1, memory_bytes=256 << 20)
"""A wall clock far beyond what any answer here needs, so that only the answers meant to hang reach it however busy
the machine is: a busy loop meets the CPU limit, a memory bomb the memory limit, whatever the machine's speed."""
HANG = SandboxLimits(wall_seconds=1.0, cpu_seconds=1, memory_bytes=256 << 20)
TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(-1, 1) == 0"
CORRECT = "def add(a, b):\n    return a + b\n"


def processes_of(folder: str) -> list[int]:
    """Live processes whose command line names the run's folder (every sandboxed process does, children too), read
    from /proc as the sandbox itself is Linux-only."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and folder.encode() in (entry / "cmdline").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def sandboxed(code: str, tests: str = TESTS, limits: SandboxLimits = LIMITS):
    result = run_tests(code, tests, limits)
    assert result.folder and not Path(result.folder).exists(), "the run's folder was left behind"
    assert processes_of(result.folder) == [], "a sandboxed process was left running"
    assert result.passed == (result.reason == "passed")
    return result


def test_a_correct_answer_passes():
    result = sandboxed(CORRECT)
    assert (result.reason, result.message) == ("passed", "3 test(s) passed")


def test_a_wrong_answer_fails_naming_the_first_failing_test():
    result = sandboxed("def add(a, b):\n    return a * b + 1\n")
    assert result.reason == "failed"
    assert result.message == "test 2: assert add(2, 2) == 4"


def test_an_answer_that_does_not_compile_is_a_syntax_error():
    result = sandboxed("def add(a, b)\n    return a + b\n")
    assert result.reason == "syntax_error" and result.message.startswith("line 1:")


def test_an_answer_that_imports_the_standard_library_and_writes_in_its_own_folder_passes():
    code = (
        "import collections, json, math, re, tempfile\n"
        "def add(a, b):\n"
        "    with open('scratch.txt', 'w') as file:\n"
        "        file.write(json.dumps([a, b]))\n"
        "    tempfile.mkstemp()\n"
        "    return sum(json.loads(open('scratch.txt').read()))\n"
    )
    assert sandboxed(code).reason == "passed"


def test_a_hanging_answer_times_out_on_the_wall_clock():
    result = sandboxed("import time\ndef add(a, b):\n    time.sleep(600)\n", limits=HANG)
    assert result.reason == "timeout" and "wall-clock" in result.message
    assert result.seconds < 600, "the answer was not stopped before its sleep ended"


def test_a_busy_loop_times_out():
    result = sandboxed("def add(a, b):\n    while True:\n        pass\n")
    assert result.reason == "timeout" and "CPU time limit" in result.message


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def add(a, b):\n    raise RuntimeError('boom')\n", "test 1: assert add(1, 2) == 3: RuntimeError: boom"),
        ("import os\ndef add(a, b):\n    os.abort()\n", "killed by SIGABRT"),
        ("import sys\nsys.exit(0)\n", "running the solution: SystemExit: 0"),
        ("print('\\nnonce\\npassed\\nall good')\nimport os\nos._exit(0)\n", "exited with status 0 before reporting"),
    ],
    ids=["exception", "abort", "sys-exit", "fake-verdict-then-exit"],
)
def test_a_crashing_answer_is_crashed_with_what_happened(code, expected):
    result = sandboxed(code)
    assert result.reason == "crashed"
    assert expected in result.message


def test_a_memory_bomb_runs_out_of_memory():
    assert sandboxed("def add(a, b):\n    return len(bytearray(8 << 30))\n").reason in ("memory", "crashed")
    growing = sandboxed("def add(a, b):\n    hoard = []\n    while True:\n        hoard.append(' ' * (1 << 20))\n")
    assert growing.reason in ("memory", "crashed")


def test_an_answer_that_writes_outside_its_folder_is_forbidden_and_writes_nothing(tmp_path):
    target = tmp_path / "escaped.txt"
    result = sandboxed(f"def add(a, b):\n    open({str(target)!r}, 'w').write('x')\n    return a + b\n")
    assert result.reason == "forbidden"
    assert result.message == f"write outside its folder: open {target}"
    assert not target.exists()


def test_deleting_or_linking_outside_its_folder_is_forbidden(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    removal = sandboxed(f"import os\nos.remove({str(keep)!r})\n")
    link = sandboxed(f"import os\nos.link({str(keep)!r}, 'inside.txt')\n")
    assert (removal.reason, link.reason) == ("forbidden", "forbidden")
    assert keep.read_text() == "still here"


def test_reading_the_projects_files_is_forbidden():
    result = sandboxed(f"def add(a, b):\n    return open({str(PROJECT_ROOT / 'pyproject.toml')!r}).read()\n")
    assert result.reason == "forbidden"
    assert result.message.startswith("read of the project's files: open ")


def test_reading_or_listing_outside_its_folder_and_the_standard_library_is_forbidden():
    assert sandboxed("import os\nos.listdir('/')\n").message == "read outside its folder: os.listdir /"
    assert sandboxed("open('/etc/passwd').read()\n").reason == "forbidden"


def test_an_answer_that_opens_a_network_socket_is_forbidden():
    result = sandboxed("import socket\ndef add(a, b):\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n")
    assert (result.reason, result.message) == ("forbidden", "network: socket.__new__")


@pytest.mark.parametrize(
    ("code", "event"),
    [
        ("import os\ntry:\n    os.fork()\nexcept Exception:\n    pass\n", "os.fork"),
        ("import os\nos.system('sleep 30')\n", "os.system"),
        ("import subprocess\nsubprocess.run(['sleep', '30'])\n", "subprocess.Popen"),
        (
            "import multiprocessing, time\n"
            "multiprocessing.get_context('spawn').Process(target=time.sleep, args=(30,)).start()\n",
            "fork_exec",
        ),
        ("import os\nos.kill(1, 0)\n", "os.kill"),
    ],
    ids=["fork-caught", "system", "subprocess", "multiprocessing-spawn", "kill"],
)
def test_an_answer_that_forks_or_starts_a_process_is_forbidden_even_if_it_catches_the_refusal(code, event):
    result = sandboxed(code)
    assert result.reason == "forbidden"
    assert result.message.endswith(event)


def test_native_code_and_changing_its_own_limits_are_forbidden():
    assert sandboxed("import ctypes\n").message == "importing ctypes"
    raised = sandboxed("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (100, 100))\n")
    assert raised.message == "changing its limits: resource.setrlimit"


def test_many_runs_keep_their_order():
    results = run_many([(CORRECT, TESTS), ("def add(a, b):\n    return 0\n", TESTS), ("x = (", TESTS)], LIMITS)
    assert [result.reason for result in results] == ["passed", "failed", "syntax_error"]
    assert run_many([], LIMITS) == []
