"""Model stores: where finished artifacts (adapters, merged models, GGUF files) are published for use elsewhere.

One interface, ``ModelStore``, with a local-folder implementation and an Azure Blob Storage one. A
stored artifact is a folder of files under a key; it counts as present only once its index (file list
with sizes and sha256) is written, which happens last, so a half-finished upload is never read.
"""

from ftassets.storage.base import ModelStore, StoredArtifact, StoreError
from ftassets.storage.blob import BlobModelStore
from ftassets.storage.local import LocalModelStore

__all__ = ["BlobModelStore", "LocalModelStore", "ModelStore", "StoreError", "StoredArtifact"]
