"""The data source schema lives with the rest of the configuration (``ftassets/config/sources.py``); this name
is kept for the readers and the teacher, which build on it."""

from ftassets.config.sources import (
    DATASET_FORMATS,
    FILE_FORMATS,
    ROW_FORMATS,
    SPLIT_NAMES,
    DataSource,
    SplitFractions,
    TeacherSource,
)

__all__ = [
    "DATASET_FORMATS",
    "FILE_FORMATS",
    "ROW_FORMATS",
    "SPLIT_NAMES",
    "DataSource",
    "SplitFractions",
    "TeacherSource",
]
