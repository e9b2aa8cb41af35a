"""Running untrusted Python (a model's answer) against unit tests, one fresh process per example.

Each run gets its own temporary folder (its working directory, ``HOME`` and ``TMPDIR``) and an isolated interpreter
(``-I -S -B``: no environment variables, no site-packages, no bytecode written) with a clean environment and no
stdin. Before the answer runs, the child program (``CHILD_PROGRAM``) sets kernel limits and installs an audit hook
(PEP 578), then reports one verdict on a private pipe, tagged with a random nonce so that what the answer prints or
writes cannot pass for it. The parent waits at most ``wall_seconds`` and then kills the whole process group (the
child starts its own session), so nothing it started is left running; the folder is removed on return.

What each layer does:

- ``RLIMIT_CPU`` (kernel): SIGXCPU after ``cpu_seconds`` of CPU, SIGKILL one second later.
- ``RLIMIT_AS`` (kernel): allocations beyond ``memory_bytes`` of address space fail (a ``MemoryError``).
- ``RLIMIT_FSIZE`` (kernel): no file written grows beyond ``file_bytes`` (the write fails).
- ``RLIMIT_NOFILE``, ``RLIMIT_CORE`` (kernel): few open files; no core dumps.
- ``RLIMIT_NPROC`` = 0 (kernel): no new process or thread, but only when not running as root (root ignores it).
- The audit hook (Python): ends the run as ``forbidden`` at the first socket, process creation (fork, exec, spawn,
  ``os.system``, ``subprocess``), signal to another process, ctypes, ``fcntl.ioctl``, change of its own limits,
  write, rename, delete or link outside its folder, or read outside its folder and the standard library (which also
  keeps it from the project's files). The verdict is reported from inside the hook and the process exits at once,
  so an answer cannot catch the refusal and go on.
- The process group kill (kernel): whatever is still running when the run ends is killed.

What this does not stop: the audit hook runs in the same interpreter as the answer, so it is a guard against
answers that misbehave by mistake, not a security boundary against hostile code (CPython's own documentation says
so). Code that walks interpreter frames or objects (``sys._getframe``, ``gc``) can reach the hook's helpers or the
nonce; a C extension or a memory-corruption bug escapes it entirely; file metadata (``os.stat``) is not audited;
many files each under ``file_bytes`` can still fill the disk until the wall-clock limit; and a process that escapes
the hook and then leaves the process group (``setsid``) escapes the final kill. For hostile code, run this inside an
OS-level sandbox as well (an unprivileged user, namespaces or a container, seccomp).
"""

from __future__ import annotations

import marshal
import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REASONS = ("passed", "failed", "syntax_error", "timeout", "crashed", "memory", "forbidden")
"""Why a run ended: its tests passed; an assertion of a test failed; the answer does not compile; it ran out of
wall-clock or CPU time; it raised or was killed; it ran out of memory; it did something the sandbox refuses."""
FOLDER_PREFIX = "ftassets-sandbox-"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use."""

    wall_seconds: float = 3.0
    cpu_seconds: int = 3
    memory_bytes: int = 512 * 2**20
    file_bytes: int = 2**20
    open_files: int = 64


@dataclass(frozen=True)
class SandboxResult:
    """The verdict of one run; ``reason`` is one of ``REASONS`` and ``message`` says which test or what happened."""

    passed: bool
    reason: str
    message: str
    seconds: float
    folder: str
    """The run's temporary folder (removed by the time the result is returned)."""


CHILD_PROGRAM = r"""# ftassets sandbox child: limits, audit hook, then the answer and its tests
import _ast
import _posixsubprocess
import _signal
import marshal
import os
import posix
import resource
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
DEVICES = ("/dev/null", "/dev/urandom", "/dev/zero")
PATH_EVENTS = {
    "os.listdir": ((0,), ()),
    "os.scandir": ((0,), ()),
    "os.remove": ((), (0,)),
    "os.rmdir": ((), (0,)),
    "os.mkdir": ((), (0,)),
    "os.rename": ((), (0, 1)),
    "os.link": ((), (0, 1)),
    "os.symlink": ((), (1,)),
    "os.chmod": ((), (0,)),
    "os.chown": ((), (0,)),
    "os.utime": ((), (0,)),
    "os.truncate": ((), (0,)),
    "os.setxattr": ((), (0,)),
    "os.removexattr": ((), (0,)),
    "shutil.copyfile": ((0,), (1,)),
    "shutil.copymode": ((0,), (1,)),
    "shutil.copystat": ((0,), (1,)),
    "shutil.copytree": ((0,), (1,)),
    "shutil.move": ((), (0, 1)),
    "shutil.rmtree": ((), (0,)),
    "shutil.chown": ((), (0,)),
    "shutil.make_archive": ((), (0,)),
    "shutil.unpack_archive": ((0,), (1,)),
}
PROCESS_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.startfile", "os.killpg",
     "subprocess.Popen", "pty.spawn"}
)
REFUSED = {
    "fcntl.ioctl": "device control",
    "resource.setrlimit": "changing its limits",
    "resource.prlimit": "changing its limits",
    "urllib.Request": "network",
    "webbrowser.open": "network",
}
REFUSED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess"})


def main():
    job_path, result_fd = sys.argv[1], int(sys.argv[2])
    with open(job_path, "rb") as file:
        job = marshal.load(file)
    os.remove(job_path)
    report = reporter(result_fd, job["nonce"])
    folder = os.path.realpath(job["folder"])
    protected = [os.path.realpath(root) for root in job["protected"]]
    read_roots = [
        root
        for root in (os.path.realpath(entry) for entry in sys.path if entry and os.path.exists(entry))
        if not within(root, protected)
    ]
    limit(job)
    _posixsubprocess.fork_exec = lambda *args, **kwargs: report("forbidden", "starting a process: fork_exec")
    sys.addaudithook(guard(folder, read_roots, protected, report))
    run(job["code"], job["tests"], report)


def reporter(fd, nonce, write=posix.write, exit=posix._exit):
    def report(status, message=""):
        text = "\n" + nonce + "\n" + status + "\n" + message.replace("\n", " ")[:500] + "\n"
        write(fd, text.encode("utf-8", "replace"))
        exit(0)

    return report


def within(path, roots):
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def limit(job):
    cpu = job["cpu_seconds"]
    for name, value in (
        ("RLIMIT_CPU", (cpu, cpu + 1)),
        ("RLIMIT_AS", (job["memory_bytes"], job["memory_bytes"])),
        ("RLIMIT_FSIZE", (job["file_bytes"], job["file_bytes"])),
        ("RLIMIT_NOFILE", (job["open_files"], job["open_files"])),
        ("RLIMIT_NPROC", (0, 0)),
        ("RLIMIT_CORE", (0, 0)),
    ):
        resource.setrlimit(getattr(resource, name), value)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)


def guard(folder, read_roots, protected, report, realpath=os.path.realpath, fspath=os.fspath,
          fsdecode=os.fsdecode, isdir=os.path.isdir, own_pid=posix.getpid(), within=within):
    def resolved(raw):
        if isinstance(raw, int):
            return None
        try:
            return realpath(fsdecode(fspath("." if raw is None else raw)))
        except (TypeError, ValueError):
            return None

    def check_write(raw, event):
        path = resolved(raw)
        if path is not None and not within(path, (folder,)):
            report("forbidden", "write outside its folder: " + event + " " + path)

    def check_read(raw, event, directory_ok=True):
        path = resolved(raw)
        if path is None or within(path, (folder,)):
            return
        if within(path, protected):
            report("forbidden", "read of the project's files: " + event + " " + path)
        if path in DEVICES or (within(path, read_roots) and (directory_ok or not isdir(path))):
            return
        report("forbidden", "read outside its folder: " + event + " " + path)

    def hook(event, args):
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(flags, int) and flags & WRITE_FLAGS) or (
                isinstance(mode, str) and any(letter in mode for letter in "wax+")
            )
            if writes:
                check_write(path, event)
            else:
                check_read(path, event, directory_ok=False)
        elif event in PATH_EVENTS:
            reads, writes = PATH_EVENTS[event]
            for index in reads:
                check_read(args[index], event)
            for index in writes:
                check_write(args[index], event)
        elif event == "os.kill":
            if args[0] != own_pid:
                report("forbidden", "signalling another process: os.kill")
        elif event in PROCESS_EVENTS:
            report("forbidden", "starting a process: " + event)
        elif event.startswith("socket."):
            report("forbidden", "network: " + event)
        elif event.startswith("ctypes."):
            report("forbidden", "native code: " + event)
        elif event in REFUSED:
            report("forbidden", REFUSED[event] + ": " + event)
        elif event == "import" and args[0] in REFUSED_IMPORTS:
            report("forbidden", "importing " + args[0])

    return hook


def describe(error):
    try:
        return type(error).__name__ + ": " + str(error)
    except BaseException:
        return type(error).__name__


def run(code, tests, report):
    try:
        solution = compile(code, "<solution>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        where = "line " + str(error.lineno) + ": " if getattr(error, "lineno", None) else ""
        report("syntax_error", where + str(getattr(error, "msg", error)))
    try:
        statements = compile(tests, "<tests>", "exec", _ast.PyCF_ONLY_AST, dont_inherit=True).body
    except (SyntaxError, ValueError) as error:
        report("crashed", "the tests do not compile: " + describe(error))
    lines = tests.splitlines()
    step = "running the solution"
    namespace = {"__name__": "solution"}
    try:
        exec(solution, namespace)
        for number, statement in enumerate(statements, 1):
            source = " ".join(line.strip() for line in lines[statement.lineno - 1 : statement.end_lineno])
            step = "test " + str(number) + ": " + source[:200]
            exec(compile(_ast.Module(body=[statement], type_ignores=[]), "<tests>", "exec"), namespace)
    except AssertionError as error:
        report("failed", step + (" (" + describe(error) + ")" if error.args else ""))
    except MemoryError:
        report("memory", step + ": MemoryError")
    except BaseException as error:
        report("crashed", step + ": " + describe(error))
    report("passed", str(len(statements)) + " test(s) passed")


main()
"""


def run_tests(code: str, tests: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` and then each top-level statement of ``tests`` in a fresh sandboxed process; never raises on
    what the code does."""
    limits = limits or SandboxLimits()
    start = time.monotonic()
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix=FOLDER_PREFIX) as folder:
        job_path = Path(folder, ".job")
        job_path.write_bytes(
            marshal.dumps(
                {
                    "nonce": nonce,
                    "folder": folder,
                    "code": code,
                    "tests": tests,
                    "protected": [str(PROJECT_ROOT)] if PROJECT_ROOT.parent != PROJECT_ROOT else [],
                    "cpu_seconds": max(1, int(limits.cpu_seconds)),
                    "memory_bytes": int(limits.memory_bytes),
                    "file_bytes": int(limits.file_bytes),
                    "open_files": int(limits.open_files),
                }
            )
        )
        stderr_path = Path(folder, ".stderr")
        read_end, write_end = os.pipe()
        try:
            with stderr_path.open("wb") as stderr:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-I",
                        "-S",
                        "-B",
                        "-X",
                        "utf8",
                        "-c",
                        CHILD_PROGRAM,
                        str(job_path),
                        str(write_end),
                    ],
                    cwd=folder,
                    env={"PATH": os.defpath, "HOME": folder, "TMPDIR": folder, "LC_ALL": "C.UTF-8"},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    pass_fds=(write_end,),
                    start_new_session=True,
                )
        finally:
            os.close(write_end)
        try:
            timed_out = not _exited_within(process, limits.wall_seconds)
        finally:
            _kill_group(process.pid)
            process.wait()
            reports = _reports(read_end, nonce)
            os.close(read_end)
        reason, message = _verdict(reports, timed_out, process.returncode, limits, _tail(stderr_path))
    return SandboxResult(reason == "passed", reason, message[:MAX_MESSAGE_CHARS], time.monotonic() - start, folder)


def run_many(
    jobs: Sequence[tuple[str, str]], limits: SandboxLimits | None = None, workers: int = 2
) -> list[SandboxResult]:
    """``run_tests`` of each (code, tests) pair, at most ``workers`` at a time, in the order given."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], limits), jobs))


def _exited_within(process: subprocess.Popen, seconds: float) -> bool:
    """Whether the child exits within ``seconds``; it is left unreaped, so its process group id stays its own
    until ``_kill_group`` has run."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(max(0.0, seconds) * 1000))
    finally:
        os.close(pidfd)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reports(read_end: int, nonce: str) -> list[tuple[str, str]]:
    """Every (status, message) the child reported on its pipe with the run's nonce."""
    os.set_blocking(read_end, False)
    chunks = []
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except BlockingIOError:
            break
        if not chunk or sum(map(len, chunks)) > 2**20:
            break
        chunks.append(chunk)
    lines = b"".join(chunks).decode("utf-8", "replace").split("\n")
    return [
        (lines[index + 1], lines[index + 2])
        for index, line in enumerate(lines[:-2])
        if line == nonce and lines[index + 1] in REASONS
    ]


def _tail(path: Path, size: int = 300) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - size))
            return " ".join(file.read().decode("utf-8", "replace").split())
    except OSError:
        return ""


def _verdict(
    reports: list[tuple[str, str]], timed_out: bool, returncode: int, limits: SandboxLimits, stderr: str
) -> tuple[str, str]:
    forbidden = [report for report in reports if report[0] == "forbidden"]
    if forbidden or reports:
        return (forbidden or reports)[0]
    if timed_out:
        return "timeout", f"no result within the wall-clock limit of {limits.wall_seconds:g} s"
    if returncode == -signal.SIGXCPU:
        return "timeout", f"the CPU time limit of {limits.cpu_seconds} s was reached"
    detail = f"; stderr: {stderr}" if stderr else ""
    if returncode == -signal.SIGKILL:
        return "crashed", f"killed (SIGKILL: the CPU hard limit, or out of memory){detail}"
    if returncode < 0:
        return "crashed", f"killed by {signal.Signals(-returncode).name}{detail}"
    return "crashed", f"exited with status {returncode} before reporting a result{detail}"
