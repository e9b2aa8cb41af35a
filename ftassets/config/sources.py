"""Where a task's rows come from: the ``source`` of a task in ``configs/tasks.yaml``.

A task without ``source`` is synthetic (its task type's generator). Otherwise its rows come from the user's
file or folder, a ``datasets`` dataset on disk, or a teacher LLM:

```yaml
tasks:
  intents:
    type: classification                     # labels come from the data unless `labels:` lists them
    source: {path: data/intents.csv, format: csv, columns: {text: utterance, label: intent}}
  support-answers:
    type: instruction
    source: {path: data/support.jsonl, format: alpaca}
  support-chat:
    type: chat
    source: {path: data/chats.jsonl, format: chat}    # OpenAI `messages` rows
```

``format`` names either a file format (``jsonl``, ``json``, ``csv``, ``tsv``, ``parquet``: the row schema is then
detected from the columns, or given by ``columns``), a row format (``alpaca``, ``sharegpt``, ``chat``,
``prompt_completion``, ``preference``: the file format then comes from ``file_format`` or the file's extension),
``hf_disk`` (a ``save_to_disk`` folder) or ``hf_files`` (``datasets.load_dataset`` over local files), or ``auto``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

FILE_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
ROW_FORMATS = ("alpaca", "sharegpt", "chat", "prompt_completion", "preference")
DATASET_FORMATS = ("hf_disk", "hf_files")
SPLIT_NAMES = ("train", "validation", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitFractions(_Strict):
    """How a single pool of rows is cut when the source gives no splits (stratified by label for classification)."""

    train: PositiveFloat = 0.8
    validation: NonNegativeFloat = 0.1
    test: PositiveFloat = 0.1

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1 (train + validation + test = {total:g})")
        return self


class TeacherSource(_Strict):
    """Rows written by a strong model: any OpenAI-compatible or Azure OpenAI endpoint, named as a base of
    ``configs/models.yaml`` (so its endpoint, credentials and price are configured once, like a model entry)."""

    base: str = Field(description="A key of `bases` in models.yaml whose source is azure_openai or openai_compatible.")
    count: PositiveInt = Field(description="How many valid, distinct rows to generate in all.")
    budget_usd: PositiveFloat = Field(description="Generation stops before the next request would exceed this.")
    prompt_version: str = "v1"
    """The versioned generation prompt of the task type (``ftassets/data/sources/teacher.py``)."""
    seed_path: str | None = None
    """Optional file of the user's own rows (same formats as ``path``): few-shot examples, and nothing repeats them."""
    few_shot: PositiveInt = 3
    rows_per_request: PositiveInt = 8
    temperature: NonNegativeFloat = 0.8
    max_requests: PositiveInt = 200


class DataSource(_Strict):
    path: str | None = None
    """A file or folder; relative paths start at the config folder; ``~`` and ``$VARS`` expand."""
    format: Literal["auto", *FILE_FORMATS, *ROW_FORMATS, *DATASET_FORMATS] = "auto"
    file_format: Literal["auto", *FILE_FORMATS] = "auto"
    """The file format when ``format`` names a row format (default: from the file's extension)."""
    columns: dict[str, str] = {}
    """The task's field -> the user's column, e.g. ``{text: utterance, label: intent}``."""
    filter: str | None = None
    """A pandas ``DataFrame.query`` expression over the user's columns, applied before the mapping."""
    limit: PositiveInt | None = None
    """Keep at most this many rows (the first ones, after the filter)."""
    split_column: str | None = None
    """A column naming each row's split (values mapped through ``split``, default train/validation/test)."""
    split: dict[str, str] = {}
    """ftassets split -> the source's split name (a ``DatasetDict`` key, a ``split_column`` value)."""
    files: dict[str, str] = {}
    """One file per split: ftassets split -> path (instead of ``path``)."""
    fractions: SplitFractions | None = None
    """Cut a single pool of rows by these fractions (default: the task's ``sizes`` if given, else 0.8/0.1/0.1)."""
    delimiter: str | None = None
    """CSV/TSV field delimiter (default ``,`` for csv and a tab for tsv)."""
    header: bool = True
    """Whether the CSV/TSV file's first line names the columns; without one, columns are ``0``, ``1``, ..."""
    quotechar: str = '"'
    encoding: str = "utf-8"
    teacher: TeacherSource | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        origins = [
            name for name, given in (("path", self.path), ("files", self.files), ("teacher", self.teacher)) if given
        ]
        if len(origins) != 1:
            raise ValueError(
                "a source names exactly one of `path` (a file or folder), `files` (one file per split) or `teacher` "
                f"(a teacher LLM; its `seed_path` names the user's example rows); got {origins or 'none'}"
            )
        for name in (*self.split, *self.files):
            if name not in SPLIT_NAMES:
                raise ValueError(f"unknown split {name!r}; splits are {', '.join(SPLIT_NAMES)}")
        return self
