"""A model store on a local or mounted folder: ``<root>/<key>/...``, replaced by rename."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from ftassets.storage.base import (
    INDEX,
    ModelStore,
    StoredArtifact,
    StoreError,
    check_key,
    inventory,
    staging_for,
    verified_move,
)


class LocalModelStore(ModelStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def upload(self, local_dir: Path, key: str) -> StoredArtifact:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{final.name}.upload-{uuid.uuid4().hex[:8]}"
        shutil.copytree(local_dir, staging)
        (staging / INDEX).unlink(missing_ok=True)
        files = inventory(staging)
        (staging / INDEX).write_text(json.dumps({"key": key, "files": files}, indent=2, sort_keys=True))
        retired = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(retired)
        staging.rename(final)
        shutil.rmtree(retired, ignore_errors=True)
        return StoredArtifact(key, str(final), files)

    def index(self, key: str) -> StoredArtifact | None:
        path = self._path(key) / INDEX
        if not path.exists():
            return None
        return StoredArtifact(key, str(path.parent), json.loads(path.read_text())["files"])

    def download(self, key: str, local_dir: Path) -> StoredArtifact:
        artifact = self.index(key)
        if artifact is None:
            raise StoreError(f"{self._path(key)}: no stored artifact {key!r} in the local model store")
        staging = staging_for(local_dir)
        for name in artifact.files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self._path(key) / name, staging / name)
        return verified_move(staging, local_dir, artifact)

    def delete(self, key: str) -> None:
        (self._path(key) / INDEX).unlink(missing_ok=True)
        shutil.rmtree(self._path(key), ignore_errors=True)
