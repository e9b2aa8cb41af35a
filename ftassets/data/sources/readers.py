"""Reading a task's ``source`` (``configs/tasks.yaml``) into canonical rows (see ``formats.py``), plain Python.

``load_source`` goes: locate the files (a file, a folder of ``train.*``/``validation.*``/``test.*`` files, one
file per split, or a ``datasets`` dataset) -> read each into records that know their origin (``file:line n`` for
JSONL and CSV, ``file:row i`` for a JSON array, Parquet or a dataset) -> ``filter`` -> ``split_column`` -> ``limit``
(per split) -> ``columns`` -> canonical rows. A source with any problem is refused whole (``DataSourceError``),
listing the first problems and counting all of them. Lines over ``FTASSETS_MAX_LINE_BYTES`` (default 1 MiB) are
refused without being held in memory; a file that changes while it is read is refused.

``source_version`` is the cheap identity of a source for staleness: its settings, each file's path, size and
sha256 (or a saved dataset's fingerprints). The sha256 are cached by path, size and mtime in
``$FTASSETS_HOME/cache/source_sha256.json`` (``~/.cache/ftassets/`` when ``FTASSETS_HOME`` is unset); a file
modified in the last 2 seconds is never cached, since a same-size rewrite could share its mtime.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftassets.artifacts import sha256_file
from ftassets.data.sources.formats import (
    DataSourceError,
    Problems,
    apply_columns,
    canonical_row,
    detect_row_format,
    schema_of,
)
from ftassets.data.sources.schema import FILE_FORMATS, ROW_FORMATS, SPLIT_NAMES, DataSource

MAX_LINE_BYTES = 1 << 20
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
SPLIT_FILE_STEMS = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}
HF_DISK_MARKERS = ("dataset_dict.json", "state.json")
POOL = "all"
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class SourceRows:
    schema: str
    """The canonical row schema: alpaca, chat, prompt_completion, preference or fields."""
    splits: dict[str, list[dict]]
    """The source's own splits (train/validation/test) when it gives them, else ``{"all": rows}``."""
    provenance: dict
    """JSON-able: the files read (path, sha256, bytes) or the dataset's fingerprints, formats, settings, row counts."""


@dataclass
class _Table:
    """One file (or dataset split) as read: records with their origins; ``columns`` when the whole table shares
    one header (CSV, Parquet, a dataset), reported once at ``header_origin`` when a mapped column is missing."""

    records: list[tuple[str, dict]]
    columns: list[str] | None
    header_origin: str
    facts: dict


def resolve_path(raw: str, config_dir: Path) -> Path:
    """``raw`` with ``$VARS`` and ``~`` expanded, relative to ``config_dir``; an unset variable is an error."""
    expanded = os.path.expanduser(os.path.expandvars(raw))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unset:
        names = ", ".join(f"${name}" for name in unset)
        raise DataSourceError(f"path {raw!r}: {names} is not set in the environment; set it or write the path out")
    path = Path(expanded)
    return (path if path.is_absolute() else config_dir / path).resolve()


def load_source(source: DataSource, config_dir: Path, where: str, *, max_line_bytes: int | None = None) -> SourceRows:
    """The user's rows of ``source`` as canonical rows; ``where`` (e.g. ``"configs/tasks.yaml: tasks.x.source"``)
    starts every error message."""
    if source.teacher is not None:
        raise DataSourceError(f"{where}: a teacher source is generated (ftassets/data/sources/teacher.py), not read")
    max_line_bytes = max_line_bytes or int(os.environ.get("FTASSETS_MAX_LINE_BYTES", MAX_LINE_BYTES))
    problems = Problems()
    location = _locate(source, config_dir, where)
    if location[0] == "hf_disk":
        tables = _read_hf_disk(location[1], location[2], source, where)
    elif source.format == "hf_files":
        tables = {key: _read_hf_files(path, display, source, where) for key, (path, display) in location[1].items()}
    else:
        tables = {
            key: _read_file(path, display, source, where, max_line_bytes, problems)
            for key, (path, display) in location[1].items()
        }
    problems.raise_if_any(where)
    files = [{"split": key, **table.facts} for key, table in tables.items()]

    read = sum(len(table.records) for table in tables.values())
    if not read:
        raise DataSourceError(f"{where}: {source.path or ', '.join(source.files.values())} holds no rows; give it rows")
    if source.filter:
        for table in tables.values():
            table.records = _filtered(table.records, source.filter, where)
    after_filter = sum(len(table.records) for table in tables.values())
    if not after_filter:
        raise DataSourceError(f"{where}: filter {source.filter!r} kept none of the {read} rows; loosen it")
    if source.split_column:
        tables = _by_split_column(tables, source, where, problems)
        problems.raise_if_any(where)
    if source.limit:
        for table in tables.values():
            table.records = table.records[: source.limit]

    row_format = _row_format(source, tables)
    splits = {key: _canonical_rows(table, source, row_format, problems) for key, table in tables.items()}
    problems.raise_if_any(where)
    provenance = {
        "format": source.format,
        "row_format": row_format,
        "schema": schema_of(row_format),
        "files": files,
        "columns": dict(source.columns),
        "filter": source.filter,
        "limit": source.limit,
        "split_column": source.split_column,
        "split": dict(source.split),
        "rows": {
            "read": read,
            "filtered_out": read - after_filter,
            "kept": {key: len(rows) for key, rows in splits.items()},
        },
    }
    return SourceRows(schema=schema_of(row_format), splits=splits, provenance=provenance)


def source_version(source: DataSource, config_dir: Path, where: str = "source") -> dict:
    """What identifies the source's data without reading it: its settings and each file's path, size and sha256
    (cached), or a saved dataset's fingerprints. Raises ``DataSourceError`` (starting with ``where``) when a file
    is missing."""
    settings = source.model_dump(mode="json")
    if source.teacher is not None:
        seed = source.teacher.seed_path
        files = [_file_version(POOL, _existing(seed, config_dir, where))] if seed else []
        return {"source": settings, "files": files}
    location = _locate(source, config_dir, where)
    if location[0] == "hf_disk":
        return {"source": settings, "hf_disk": {"path": str(location[1]), "fingerprints": _fingerprints(location[1])}}
    return {"source": settings, "files": [_file_version(key, path) for key, (path, _) in location[1].items()]}


# Locating the files.


def _locate(source: DataSource, config_dir: Path, where: str) -> tuple:
    """``("hf_disk", path, display)`` or ``("files", {split or "all": (path, display)})``."""
    if source.files:
        located = {split: (_existing(raw, config_dir, where), raw) for split, raw in source.files.items()}
        seen: dict[Path, str] = {}
        for split, (path, raw) in located.items():
            if path in seen:
                raise DataSourceError(
                    f"{where}: files: {seen[path]} and {split} name the same file {raw}; give each split its own file"
                )
            seen[path] = split
        return ("files", located)
    path = _existing(source.path, config_dir, where)
    is_dataset = path.is_dir() and any((path / marker).exists() for marker in HF_DISK_MARKERS)
    if source.format == "hf_disk" or (source.format == "auto" and is_dataset):
        return ("hf_disk", path, source.path)
    if path.is_dir():
        return ("files", _split_files(path, source.path, where))
    return ("files", {POOL: (path, source.path)})


def _existing(raw: str, config_dir: Path, where: str) -> Path:
    try:
        path = resolve_path(raw, config_dir)
    except DataSourceError as error:
        raise DataSourceError(f"{where}: {error}") from None
    if not path.exists():
        raise DataSourceError(f"{where}: {raw}: no such file or folder ({path}); relative paths start at {config_dir}")
    return path


def _split_files(folder: Path, display: str, where: str) -> dict[str, tuple[Path, str]]:
    """A folder's ``train.*``, ``validation.*`` (or ``valid.*``, ``dev.*``) and ``test.*`` files, one per split."""
    located: dict[str, tuple[Path, str]] = {}
    unexpected = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        split = SPLIT_FILE_STEMS.get(entry.name.split(".")[0])
        if split is None or not entry.is_file():
            unexpected.append(entry.name)
        elif split in located:
            raise DataSourceError(
                f"{where}: {display}: {located[split][0].name} and {entry.name} are both the {split} split; keep one"
            )
        else:
            located[split] = (entry, f"{display.rstrip('/')}/{entry.name}")
    if unexpected or not located:
        raise DataSourceError(
            f"{where}: {display}: a source folder holds only train.*, validation.* (or valid.*, dev.*) and test.* "
            f"files; {'unexpected: ' + ', '.join(unexpected) if unexpected else 'it has none'}. Move the others out"
        )
    return located


def _file_format(source: DataSource, path: Path, where: str) -> str:
    if source.format in FILE_FORMATS:
        return source.format
    if source.file_format != "auto":
        return source.file_format
    if path.suffix.lower() not in EXTENSIONS:
        raise DataSourceError(
            f"{where}: {path.name}: cannot tell the file format from the extension {path.suffix!r}; set `file_format` "
            f"(or `format`) to one of {', '.join(FILE_FORMATS)}"
        )
    return EXTENSIONS[path.suffix.lower()]


# Reading one file into records.


class _TrackedFile:
    """A file read once while hashing what was read; closing refuses it when it changed in the meantime."""

    def __init__(self, path: Path, display: str, where: str):
        self.path, self.display, self.where = path, display, where
        self.before = path.stat()
        self.handle = open(path, "rb")
        self.digest = hashlib.sha256()
        self.offset = 0

    def readline(self, limit: int) -> bytes:
        data = self.handle.readline(limit)
        self.digest.update(data)
        self.offset += len(data)
        return data

    def read(self) -> bytes:
        data = self.handle.read()
        self.digest.update(data)
        self.offset += len(data)
        return data

    def __enter__(self) -> _TrackedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def facts(self, file_format: str) -> dict:
        """Provenance of the file as read; raises when it is not the file on disk now."""
        self.read()
        self.handle.close()
        after = self.path.stat()
        digest = self.digest.hexdigest()
        same_stat = (after.st_size, after.st_mtime_ns) == (self.before.st_size, self.before.st_mtime_ns)
        if not same_stat or self.offset != after.st_size or sha256_file(self.path) != digest:
            raise DataSourceError(
                f"{self.where}: {self.display} changed while it was read ({self.before.st_size} -> {after.st_size} "
                "bytes); retry once the file is complete (write it elsewhere, then move it into place)"
            )
        _remember_sha256(self.path, after, digest)
        return {
            "path": str(self.path),
            "file": self.display,
            "file_format": file_format,
            "bytes": after.st_size,
            "sha256": digest,
        }


def _read_file(
    path: Path, display: str, source: DataSource, where: str, max_line_bytes: int, problems: Problems
) -> _Table:
    file_format = _file_format(source, path, where)
    _check_encoding(source.encoding, where)
    problems_before = problems.total
    with _TrackedFile(path, display, where) as file:
        if file_format == "jsonl":
            table = _read_jsonl(file, source.encoding, max_line_bytes, problems)
        elif file_format in ("csv", "tsv"):
            table = _read_csv(file, file_format, source, max_line_bytes, problems)
        elif file_format == "json":
            table = _read_json(file, source.encoding, problems)
        else:
            table = _read_parquet(file, problems)
        table.facts = file.facts(file_format)
    if not table.records and problems.total == problems_before:
        problems.add("empty file", display, f"no rows ({path.stat().st_size} bytes); give the file rows")
    return table


def _check_encoding(encoding: str, where: str) -> None:
    try:
        newline_ok = "\n".encode(encoding) == b"\n"
    except LookupError:
        raise DataSourceError(f"{where}: encoding {encoding!r} is not a known text encoding") from None
    if not newline_ok:
        raise DataSourceError(f"{where}: encoding {encoding!r} is not ASCII-compatible; save the file as UTF-8")


def _lines(file: _TrackedFile, encoding: str, max_line_bytes: int, problems: Problems):
    """``(line number, text)`` of each line that fits in ``max_line_bytes`` and decodes; the others are problems."""
    number = 0
    while raw := file.readline(max_line_bytes + 1):
        number += 1
        start = file.offset - len(raw)
        origin = f"{file.display}:line {number}"
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            size = len(raw)
            while not raw.endswith(b"\n") and (raw := file.readline(1 << 20)):
                size += len(raw)
            problems.add(
                "line too long",
                origin,
                f"{size:,} bytes, over the {max_line_bytes:,}-byte limit for one line; split the record or raise "
                "FTASSETS_MAX_LINE_BYTES",
            )
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as error:
            problems.add(
                "not text",
                origin,
                f"not valid {encoding} at byte offset {start + error.start} (byte 0x{raw[error.start]:02x}); save the "
                f"file as {encoding} or set `encoding`",
            )
            continue
        yield number, text.removeprefix("\ufeff") if number == 1 else text


def _read_jsonl(file: _TrackedFile, encoding: str, max_line_bytes: int, problems: Problems) -> _Table:
    records = []
    for number, text in _lines(file, encoding, max_line_bytes, problems):
        if not text.strip():
            continue
        origin = f"{file.display}:line {number}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            problems.add(
                "not JSON", origin, f"not JSON ({error.msg} at character {error.pos + 1}); a line holds one JSON object"
            )
            continue
        if not isinstance(value, dict):
            problems.add(
                "not an object", origin, f"a JSON {_json_type(value)}, not an object; a line holds one {{...}}"
            )
            continue
        records.append((origin, value))
    return _Table(records, None, f"{file.display}:line 1", {})


def _read_csv(file: _TrackedFile, file_format: str, source: DataSource, max_line_bytes: int, problems: Problems):
    delimiter = source.delimiter or ("\t" if file_format == "tsv" else ",")
    first_line: list[int | None] = [None]

    def texts():
        for number, text in _lines(file, source.encoding, max_line_bytes, problems):
            if first_line[0] is None:
                first_line[0] = number
            yield text

    reader = csv.reader(texts(), delimiter=delimiter, quotechar=source.quotechar, strict=True)
    columns: list[str] | None = None
    records = []
    problems_before = problems.total
    while True:
        first_line[0] = None
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.add("bad quoting", f"{file.display}:line {first_line[0]}", f"not CSV ({error}); check the quotes")
            continue
        origin = f"{file.display}:line {first_line[0]}"
        if not fields:
            continue
        if columns is None:
            columns = fields if source.header else [str(index) for index in range(len(fields))]
            for name in {name for name in columns if columns.count(name) > 1}:
                problems.add("duplicate column", origin, "named twice in the header; rename one", name)
            if source.header:
                continue
        if len(fields) != len(columns):
            problems.add(
                "ragged row",
                origin,
                f"{len(fields)} fields where the {'header has' if source.header else 'first row has'} {len(columns)}; "
                f"quote fields that hold the delimiter {delimiter!r}",
            )
            continue
        records.append((origin, {name: value if value != "" else None for name, value in zip(columns, fields)}))
    if columns is not None and not records and problems.total == problems_before:
        problems.add("no rows", f"{file.display}:line 1", "only a header line, no rows; give the file rows")
    return _Table(records, columns, f"{file.display}:line 1", {})


def _read_json(file: _TrackedFile, encoding: str, problems: Problems) -> _Table:
    data = file.read()
    empty = _Table([], None, file.display, {})
    try:
        text = data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        problems.add(
            "not text",
            f"{file.display}:line {line}",
            f"not valid {encoding} at byte offset {error.start}; save the file as {encoding} or set `encoding`",
        )
        return empty
    if not text.strip():
        return empty
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        problems.add(
            "not JSON", f"{file.display}:line {error.lineno}", f"not JSON ({error.msg} at column {error.colno})"
        )
        return empty
    if isinstance(value, dict):
        lists = [key for key, item in value.items() if isinstance(item, list)]
        value = value[lists[0]] if len(lists) == 1 else value
    if not isinstance(value, list):
        problems.add(
            "not an array",
            file.display,
            f"a JSON {_json_type(value)}; a .json source is an array of objects (or an object with one array); "
            "use .jsonl for one object per line",
        )
        return empty
    records = []
    for index, item in enumerate(value):
        origin = f"{file.display}:row {index}"
        if isinstance(item, dict):
            records.append((origin, item))
        else:
            problems.add("not an object", origin, f"a JSON {_json_type(item)}, not an object; each item is a {{...}}")
    return _Table(records, None, file.display, {})


def _read_parquet(file: _TrackedFile, problems: Problems) -> _Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(file.read()))
    except (pa.ArrowException, OSError) as error:
        problems.add("not parquet", file.display, f"not a readable Parquet file ({error})")
        return _Table([], None, file.display, {})
    records = [(f"{file.display}:row {index}", row) for index, row in enumerate(table.to_pylist())]
    return _Table(records, table.column_names, f"{file.display} (its columns)", {})


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# Datasets (the `datasets` library) on disk.


def _read_hf_disk(path: Path, display: str, source: DataSource, where: str) -> dict[str, _Table]:
    """A ``save_to_disk`` folder: a ``Dataset`` is one pool; a ``DatasetDict``'s splits map through ``split``."""
    from datasets import Dataset, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError, ValueError, ...: all mean "not a saved dataset"
        raise DataSourceError(f"{where}: {display}: not a dataset saved with save_to_disk ({error})") from None
    fingerprints = _fingerprints(path)
    if isinstance(dataset, Dataset):
        return {POOL: _dataset_table(dataset, display, {"path": str(path), "fingerprint": fingerprints[POOL]})}
    keys = {split: source.split.get(split, split) for split in SPLIT_NAMES}
    for split, key in source.split.items():
        if key not in dataset:
            raise DataSourceError(
                f"{where}: split: {split}: {display} has no split {key!r}; it has {', '.join(dataset)}"
            )
    unmapped = [key for key in dataset if key not in keys.values() and key in ("valid", "dev")]
    if unmapped:
        raise DataSourceError(
            f"{where}: {display} has a {unmapped[0]!r} split; name it as validation with `split: {{validation: "
            f"{unmapped[0]}}}`"
        )
    tables = {
        split: _dataset_table(
            dataset[key], f"{display}/{key}", {"path": str(path / key), "fingerprint": fingerprints.get(key)}
        )
        for split, key in keys.items()
        if key in dataset
    }
    if not tables:
        raise DataSourceError(
            f"{where}: {display} has the splits {', '.join(dataset)}; map them with `split: {{train: ..., test: ...}}`"
        )
    return tables


def _dataset_table(dataset: Any, display: str, facts: dict) -> _Table:
    records = [(f"{display}:row {index}", row) for index, row in enumerate(dataset.to_list())]
    return _Table(records, list(dataset.column_names), f"{display} (its columns)", facts)


def _fingerprints(path: Path) -> dict[str, str]:
    """A saved dataset's fingerprints from its state files, without loading it."""
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        return {split: json.loads((path / split / "state.json").read_text())["_fingerprint"] for split in splits}
    return {POOL: json.loads((path / "state.json").read_text())["_fingerprint"]}


def _read_hf_files(path: Path, display: str, source: DataSource, where: str) -> _Table:
    """A local file read by ``datasets.load_dataset`` (its json, csv or parquet builder; never the hub)."""
    from datasets import load_dataset

    file_format = _file_format(source, path, where)
    kwargs: dict[str, Any] = {}
    if file_format in ("csv", "tsv"):
        if not source.header:
            raise DataSourceError(f"{where}: hf_files reads CSV with a header; use format: csv for header: false")
        kwargs = {
            "sep": source.delimiter or ("\t" if file_format == "tsv" else ","),
            "quotechar": source.quotechar,
            "encoding": source.encoding,
            "dtype": str,
        }
    builder = {"jsonl": "json", "json": "json", "csv": "csv", "tsv": "csv", "parquet": "parquet"}[file_format]
    before = path.stat()
    try:
        dataset = load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # datasets wraps the reader's error in its own classes
        raise DataSourceError(
            f"{where}: {display}: datasets could not read it as {file_format} ({error}); format: {file_format} "
            "reads it line by line and names the bad lines"
        ) from None
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise DataSourceError(f"{where}: {display} changed while it was read; retry once the file is complete")
    facts = {
        "path": str(path),
        "file": display,
        "file_format": file_format,
        "bytes": after.st_size,
        "sha256": _cached_sha256(path, after),
    }
    return _dataset_table(dataset, display, facts)


# From records to canonical rows.


def _filtered(records: list[tuple[str, dict]], expression: str, where: str) -> list[tuple[str, dict]]:
    if not records:
        return records
    import pandas as pd

    frame = pd.DataFrame.from_records([values for _, values in records])
    try:
        kept = frame.query(expression)
    except Exception as error:  # any error of the user's expression (syntax, unknown column, types)
        raise DataSourceError(
            f"{where}: filter {expression!r} failed: {type(error).__name__}: {error}. It is a pandas DataFrame.query "
            f"expression over the columns {', '.join(map(str, frame.columns))} (CSV values are text: compare with "
            "quotes; `name with spaces` in backticks)"
        ) from None
    return [records[position] for position in kept.index]


def _by_split_column(tables: dict[str, _Table], source: DataSource, where: str, problems: Problems):
    """The pool's records grouped by their ``split_column`` value (mapped through ``split``), that column dropped."""
    if set(tables) != {POOL}:
        raise DataSourceError(f"{where}: split_column needs one file of rows; the source already gives the splits")
    pool = tables[POOL]
    column = source.split_column
    by_value = {source.split.get(split, split): split for split in SPLIT_NAMES}
    grouped: dict[str, list] = {split: [] for split in SPLIT_NAMES}
    unknown: dict[str, list] = {}
    for origin, values in pool.records:
        if column not in values:
            problems.add("missing field", origin, "missing; split_column names it", column)
            continue
        value = values[column]
        split = by_value.get(str(value))
        if split is None:
            unknown.setdefault(str(value), []).append(origin)
            continue
        grouped[split].append((origin, {key: item for key, item in values.items() if key != column}))
    for value, origins in unknown.items():
        mapping = ", ".join(f"{split} <- {name!r}" for name, split in by_value.items())
        problems.add(
            "unknown split",
            origins[0],
            f"{value!r} ({len(origins)} row(s)) is not a split ({mapping}); map it with `split: {{train: {value}}}` "
            "(or validation, test) or drop those rows with `filter`",
            column,
        )
    columns = [name for name in pool.columns if name != column] if pool.columns is not None else None
    return {split: _Table(records, columns, pool.header_origin, {}) for split, records in grouped.items() if records}


def _row_format(source: DataSource, tables: dict[str, _Table]) -> str:
    if source.format in ROW_FORMATS:
        return source.format
    keys = {key for table in tables.values() for _, values in table.records for key in values}
    return detect_row_format((keys - set(source.columns.values())) | set(source.columns))


def _canonical_rows(table: _Table, source: DataSource, row_format: str, problems: Problems) -> list[dict]:
    mapped = source.columns
    if table.columns is not None:
        for field_name, column in mapped.items():
            if column not in table.columns:
                problems.add(
                    "missing column",
                    table.header_origin,
                    f"not a column (columns.{field_name}); the columns are {', '.join(map(str, table.columns))}",
                    column,
                )
    rows = []
    for origin, values in table.records:
        missing = [(field_name, column) for field_name, column in mapped.items() if column not in values]
        if missing:
            if table.columns is None:
                for field_name, column in missing:
                    problems.add(
                        "missing column",
                        origin,
                        f"missing (columns.{field_name}); the row has {', '.join(values)}",
                        column,
                    )
            continue
        rows.append(canonical_row(row_format, apply_columns(values, mapped, row_format), origin, problems))
    return rows


# The sha256 cache of source_version.


def sha256_cache_path() -> Path:
    home = os.environ.get("FTASSETS_HOME")
    return (Path(home) / "cache" if home else Path.home() / ".cache" / "ftassets") / "source_sha256.json"


def _file_version(split: str, path: Path) -> dict:
    if not path.is_file():
        raise DataSourceError(f"source: {path}: no such file")
    stat = path.stat()
    return {"split": split, "path": str(path), "size": stat.st_size, "sha256": _cached_sha256(path, stat)}


def _cached_sha256(path: Path, stat: os.stat_result) -> str:
    entry = _read_cache().get(str(path))
    if entry and (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
        return entry["sha256"]
    digest = sha256_file(path)
    _remember_sha256(path, stat, digest)
    return digest


def _remember_sha256(path: Path, stat: os.stat_result, digest: str) -> None:
    if time.time_ns() - stat.st_mtime_ns < RACY_NS:
        return
    cache = _read_cache()
    cache[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    target = sha256_cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(cache, sort_keys=True))
    staging.replace(target)


def _read_cache() -> dict:
    try:
        return json.loads(sha256_cache_path().read_text())
    except (OSError, ValueError):
        return {}
