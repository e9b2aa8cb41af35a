"""A task's own data: the ``source`` of a task in ``configs/tasks.yaml`` read into canonical rows."""

from ftassets.data.sources.formats import DataSourceError
from ftassets.data.sources.readers import SourceRows, load_source, resolve_path, source_version

__all__ = ["DataSourceError", "SourceRows", "load_source", "resolve_path", "source_version"]
