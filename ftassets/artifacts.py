"""Artifact directories on disk: atomic writes, manifests, and the project's home layout.

Every artifact is written to a temporary sibling directory and renamed into place, so a killed run
never leaves half an artifact and a failed run leaves the previous one intact. The writer holds a lock on its
staging directory; one that no live process holds, left by a killed run, is removed the next time that artifact
is written and when a run opens the store (``sweep_staging``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
STAGING = re.compile(r"^\.(?P<final>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}$")
OWNERLESS_BEFORE = time.time() - 1.0
"""A staging directory last changed over a second before this process started, and unlocked, has no live writer
(a writer locks its directory right after creating it); a newer one may be a writer's between those two calls."""
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
TRACKED_LIBRARIES = ("ftassets", "torch", "transformers", "peft", "tokenizers", "datasets", "dagster")


class DiskFull(OSError):
    """An artifact could not be written for lack of room (a full disk, a quota, a file-size limit)."""


def disk_full_reason(error: BaseException) -> str | None:
    """The reason when ``error`` means no room was left, also where a library (safetensors, pyarrow) wrapped the
    operating system's error in its own: its message then carries the system's wording."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return os.strerror(error.errno)
    return next((os.strerror(code) for code in DISK_FULL if os.strerror(code) in str(error)), None)


def default_home() -> Path:
    return Path(os.environ.get("FTASSETS_HOME", Path.cwd() / ".ftassets_home")).resolve()


class ArtifactStore:
    """The local model store: ``<root>/<asset>/<partition parts...>``; one directory per partition."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, asset: str, *parts: str) -> Path:
        return self.root.joinpath("artifacts", asset, *parts)

    def fingerprint(self, asset: str, *parts: str) -> str:
        """The fingerprint recorded by an upstream artifact; a clear error when it was never built."""
        manifest = read_manifest(self.path(asset, *parts))
        if manifest is None:
            raise FileNotFoundError(
                f"{asset} for {'/'.join(parts)} is missing at {self.path(asset, *parts)}; "
                f"materialize {asset} for it first"
            )
        return manifest["fingerprint"]

    def fingerprint_if_built(self, asset: str, *parts: str) -> str | None:
        """The recorded fingerprint, or None when the artifact was never built."""
        manifest = read_manifest(self.path(asset, *parts))
        return manifest["fingerprint"] if manifest else None

    def rejected_path(self, asset: str, *parts: str) -> Path:
        """Where an artifact that failed a blocking check is kept for inspection, never promoted over the last
        good one: ``<root>/rejected/<asset>/<parts...>/<UTC time>``."""
        return self.root.joinpath("rejected", asset, *parts, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))

    def damage(self, asset: str, *parts: str) -> str | None:
        """Why the artifact on disk no longer matches its manifest (a file missing, truncated or changed), or None.
        Sizes are always compared; sha256 only for a file whose size or mtime changed since it was last verified
        (``<root>/cache/verified.json``), so an unchanged artifact costs one ``stat`` per file."""
        directory = self.path(asset, *parts)
        manifest = read_manifest(directory)
        if manifest is None:
            return f"{asset}/{'/'.join(parts)}: manifest.json missing"
        cache_path = self.root / "cache" / "verified.json"
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        problem, changed = None, False
        for name, facts in manifest.get("files", {}).items():
            path = directory / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                problem = f"{asset}/{'/'.join(parts)}: {name} missing"
                break
            if stat.st_size != facts["bytes"]:
                problem = (
                    f"{asset}/{'/'.join(parts)}: {name} is {stat.st_size} bytes, its manifest says {facts['bytes']}"
                )
                break
            key, seen = str(path), [stat.st_size, stat.st_mtime_ns, facts["sha256"]]
            if cache.get(key) == seen:
                continue
            if sha256_file(path) != facts["sha256"]:
                problem = f"{asset}/{'/'.join(parts)}: {name} changed since it was written (sha256 differs)"
                break
            cache[key], changed = seen, True
        if changed:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            staging = cache_path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
            staging.write_text(json.dumps(cache))
            os.replace(staging, cache_path)
        return problem

    def work_path(self, asset: str, *parts: str) -> Path:
        """Scratch space that survives a failed run (checkpoints), never read as an artifact."""
        return self.root.joinpath("work", asset, *parts)

    @contextlib.contextmanager
    def writing(self, final: Path) -> Iterator[Path]:
        """Yield a fresh temporary directory that replaces ``final`` only if the block succeeds. The directory is
        locked while it is written; leftovers of killed writers of ``final`` are removed first."""
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_staging(final.parent, final.name)
        staging = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        owner = os.open(staging, os.O_RDONLY)
        try:
            fcntl.flock(owner, fcntl.LOCK_EX)
            try:
                yield staging
            except BaseException as error:
                shutil.rmtree(staging, ignore_errors=True)
                if reason := disk_full_reason(error):
                    raise DiskFull(
                        f"{final}: no room to write it ({reason}); the previous version is kept as it was; "
                        f"free space on the disk holding {final.parent} and run again"
                    ) from None
                raise
            retired = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            if final.exists():
                final.rename(retired)
            staging.rename(final)
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            os.close(owner)

    def sweep_staging(self) -> list[tuple[str, Path]]:
        """Clear what killed runs left under ``artifacts/`` and ``cache/`` (nothing a live writer holds): staging
        directories are removed, a retired artifact left without its replacement is put back. Returns
        ``("removed", staging)`` and ``("restored", artifact)`` pairs."""
        cleared = []
        for top in (self.root / "artifacts", self.root / "cache"):
            for directory, subdirectories, _ in os.walk(top):
                if any(STAGING.match(name) for name in subdirectories):
                    cleared += remove_abandoned_staging(Path(directory))
                subdirectories[:] = [name for name in subdirectories if not STAGING.match(name)]
        return cleared

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An inter-process lock, so two runs never build the same shared artifact at once."""
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def remove_abandoned_staging(parent: Path, final_name: str | None = None) -> list[tuple[str, Path]]:
    """Remove the staging (``.<name>.tmp-*``) and retired (``.<name>.old-*``) directories in ``parent`` (of
    ``final_name`` only, when given) that no live process writes: unlocked and older than this process. A retired
    directory is removed only beside its replacement; without one it is the last good artifact and is put back."""
    cleared = []
    for candidate in sorted(parent.iterdir()):
        match = STAGING.match(candidate.name)
        if not match or (final_name is not None and match["final"] != final_name) or not candidate.is_dir():
            continue
        final = parent / match["final"]
        if match["kind"] == "old" and not final.exists():
            if restore_retired(candidate, final):
                cleared.append(("restored", final))
            continue
        try:
            if candidate.stat().st_mtime >= OWNERLESS_BEFORE:
                continue
            handle = os.open(candidate, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            shutil.rmtree(candidate, ignore_errors=True)
            cleared.append(("removed", candidate))
        finally:
            os.close(handle)
    return cleared


def restore_retired(retired: Path, final: Path) -> bool:
    """Put back a retired artifact that a writer killed between its two renames left without a replacement, unless
    a live writer of ``final`` still holds its staging directory (it is about to rename it into place)."""
    for staging in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            handle = os.open(staging, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(handle)
    try:
        retired.rename(final)
    except OSError:
        return False
    return True


def write_manifest(directory: Path, **facts: Any) -> dict[str, Any]:
    """Write ``manifest.json`` describing what produced ``directory`` and what it holds."""
    manifest = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **facts,
        "libraries": library_versions(),
        "machine": machine_facts(),
        "source": source_commit(),
        "files": file_inventory(directory),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def file_inventory(directory: Path) -> dict[str, dict[str, Any]]:
    inventory = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            inventory[str(path.relative_to(directory))] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return inventory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_facts() -> dict[str, Any]:
    """What the figures of an artifact may depend on besides its inputs: CPU model, cores, torch threads, GPU."""
    import platform
    import sys

    facts: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "system": platform.system()}
    torch = sys.modules.get("torch")  # only where this process already uses it: importing it costs seconds
    if torch is not None:
        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name()
    return facts


@functools.cache
def _cpu_model() -> str:
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def source_commit() -> str | None:
    """The git commit of the ftassets checkout that produced an artifact (``+dirty`` with uncommitted changes to
    tracked files), or None for an installed package outside a checkout. Read once per process."""
    return checkout_commit(Path(__file__).resolve().parents[1])


def checkout_commit(checkout: Path) -> str | None:
    """The short commit of the git checkout at ``checkout``, ``+dirty`` with uncommitted changes to tracked files;
    None where it is not a checkout (or git cannot tell)."""
    import subprocess

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if (checkout / ".git").exists():
            git = ["git", "-C", str(checkout)]
            run = dict(capture_output=True, text=True, timeout=10)
            head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], **run)
            dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], **run)
            if head.returncode == 0:
                return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return None
