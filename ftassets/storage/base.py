"""The model store interface and what both implementations share: the index and its verification."""

from __future__ import annotations

import re
import shutil
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftassets.artifacts import sha256_file

INDEX = "_ftassets_index.json"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class StoreError(RuntimeError):
    """A key that is missing or malformed, or content that does not match its index."""


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    location: str
    files: dict[str, dict[str, Any]]

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files.values())


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise StoreError(
            f"model store key {key!r}: use path segments of letters, digits, '.', '_' and '-' "
            "separated by '/', e.g. adapter/tiny-lora/classification"
        )
    return key


class ModelStore(ABC):
    @abstractmethod
    def upload(self, local_dir: Path, key: str) -> StoredArtifact:
        """Copy every file of ``local_dir`` under ``key``, replacing what was there; the index goes last."""

    @abstractmethod
    def download(self, key: str, local_dir: Path) -> StoredArtifact:
        """Fetch ``key`` into ``local_dir`` (which must not exist), verifying every file against the index."""

    @abstractmethod
    def index(self, key: str) -> StoredArtifact | None:
        """The stored artifact's index, or None when ``key`` is absent (or its upload never finished)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (its index first, so it reads as absent even if deletion stops halfway)."""

    def exists(self, key: str) -> bool:
        return self.index(key) is not None


def inventory(directory: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``directory`` (its manifest included, the store's index not) with size and sha256."""
    return {
        str(path.relative_to(directory)): {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(Path(directory).rglob("*"))
        if path.is_file() and path.name != INDEX
    }


def verified_move(staging: Path, local_dir: Path, artifact: StoredArtifact) -> StoredArtifact:
    """Rename ``staging`` to ``local_dir`` once every file matches the index; otherwise remove it and raise."""
    try:
        actual = inventory(staging)
        differing = sorted(name for name in {*actual, *artifact.files} if actual.get(name) != artifact.files.get(name))
        if differing:
            raise StoreError(
                f"{artifact.location}: downloaded files do not match the index ({', '.join(differing[:5])}); "
                "the stored artifact is damaged or was replaced meanwhile: upload it again"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(local_dir)
    return artifact


def staging_for(local_dir: Path) -> Path:
    if local_dir.exists():
        raise StoreError(f"{local_dir}: already exists; download into a new folder")
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = local_dir.parent / f".{local_dir.name}.download-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging
