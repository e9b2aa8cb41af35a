"""A model store in an Azure Blob Storage container: blobs ``<prefix>/<key>/<file>`` plus the index blob.

The container client comes from dagster-azure's ``AzureBlobStorageResource`` in the Dagster layer, or
from ``azure-storage-blob`` directly; both work against Azurite for tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


class BlobModelStore(ModelStore):
    def __init__(self, container: Any, prefix: str = "") -> None:
        """``container``: an ``azure.storage.blob.ContainerClient`` (created if it does not exist)."""
        from azure.core.exceptions import ResourceExistsError

        self.container, self.prefix = container, prefix.strip("/")
        try:
            container.create_container()
        except ResourceExistsError:
            pass

    def _name(self, key: str, file: str = "") -> str:
        return "/".join(part for part in (self.prefix, check_key(key), file) if part)

    def _location(self, key: str) -> str:
        return f"{self.container.url}/{self._name(key)}"

    def upload(self, local_dir: Path, key: str) -> StoredArtifact:
        files = inventory(Path(local_dir))
        self.delete(key)
        for name in files:
            with open(Path(local_dir) / name, "rb") as handle:
                self.container.upload_blob(self._name(key, name), handle, overwrite=True)
        self.container.upload_blob(
            self._name(key, INDEX), json.dumps({"key": key, "files": files}, sort_keys=True), overwrite=True
        )
        return StoredArtifact(key, self._location(key), files)

    def index(self, key: str) -> StoredArtifact | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            payload = json.loads(self.container.download_blob(self._name(key, INDEX)).readall())
        except ResourceNotFoundError:
            return None
        return StoredArtifact(key, self._location(key), payload["files"])

    def download(self, key: str, local_dir: Path) -> StoredArtifact:
        artifact = self.index(key)
        if artifact is None:
            raise StoreError(
                f"{self._location(key)}: no stored artifact {key!r} in container {self.container.container_name!r}"
            )
        staging = staging_for(Path(local_dir))
        for name in artifact.files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as handle:
                self.container.download_blob(self._name(key, name)).readinto(handle)
        return verified_move(staging, Path(local_dir), artifact)

    def delete(self, key: str) -> None:
        index = self._name(key, INDEX)
        names = [b.name for b in self.container.list_blobs(name_starts_with=self._name(key) + "/")]
        for name in sorted(names, key=lambda n: n != index):
            self.container.delete_blob(name)
