"""The user's own data read into canonical rows (ftassets/data/sources): every format, and every kind of bad data
refused whole with a message naming the file, the line or row, and the column."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ftassets.data.sources import DataSourceError, load_source, resolve_path, source_version
from ftassets.data.sources import readers as readers_module
from ftassets.data.sources.schema import DataSource

WHERE = "configs/tasks.yaml: tasks.mine.source"


@pytest.fixture(autouse=True)
def ftassets_home(tmp_path, monkeypatch):
    """The sha256 cache of source_version under the test's own home."""
    home = tmp_path / "home"
    monkeypatch.setenv("FTASSETS_HOME", str(home))
    return home


def write(directory: Path, name: str, content: str | bytes | list) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, list):
        content = "".join(json.dumps(row) + "\n" for row in content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def load(directory: Path, **source):
    return load_source(DataSource(**source), directory, WHERE)


def refusal(directory: Path, **source) -> str:
    with pytest.raises(DataSourceError) as caught:
        load(directory, **source)
    return str(caught.value)


def rows(result, split: str = "all") -> list[dict]:
    return [{key: value for key, value in row.items() if key != "_origin"} for row in result.splits[split]]


# Happy paths, one per format.


def test_alpaca_with_empty_or_missing_input_and_a_system(tmp_path):
    write(
        tmp_path,
        "a.jsonl",
        [
            {"instruction": "Add", "input": "1 2", "output": "3"},
            {"instruction": "Greet", "input": "", "output": "Hi"},
            {"instruction": "Wave", "output": "o/", "system": "Be brief.", "history": []},
        ],
    )
    result = load(tmp_path, path="a.jsonl")
    assert result.schema == "alpaca"
    assert rows(result) == [
        {"instruction": "Add", "input": "1 2", "output": "3"},
        {"instruction": "Greet", "input": "", "output": "Hi"},
        {"instruction": "Wave", "input": "", "output": "o/", "system": "Be brief."},
    ]
    assert [row["_origin"] for row in result.splits["all"]] == ["a.jsonl:line 1", "a.jsonl:line 2", "a.jsonl:line 3"]
    assert result.provenance["rows"] == {"read": 3, "filtered_out": 0, "kept": {"all": 3}}
    assert result.provenance["files"][0]["file_format"] == "jsonl"
    assert len(result.provenance["files"][0]["sha256"]) == 64


def test_alpaca_through_a_columns_mapping(tmp_path):
    write(tmp_path, "qa.jsonl", [{"question": "2+2?", "answer": "4"}])
    result = load(tmp_path, path="qa.jsonl", format="alpaca", columns={"instruction": "question", "output": "answer"})
    assert rows(result) == [{"instruction": "2+2?", "input": "", "output": "4"}]


def test_sharegpt_becomes_chat(tmp_path):
    conversation = [
        {"from": "system", "value": "Be kind."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
        {"from": "user", "value": "Bye"},
        {"from": "model", "value": "Bye!"},
    ]
    write(tmp_path, "s.jsonl", [{"conversations": conversation}])
    result = load(tmp_path, path="s.jsonl")
    assert result.schema == "chat"
    assert rows(result)[0]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Bye!"},
    ]


def test_chat_with_a_top_level_system(tmp_path):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    write(tmp_path, "c.jsonl", [{"system": "Be kind.", "messages": messages}, {"messages": messages}])
    result = load(tmp_path, path="c.jsonl", format="chat")
    assert rows(result) == [
        {"messages": [{"role": "system", "content": "Be kind."}, *messages]},
        {"messages": messages},
    ]


def test_prompt_completion_and_preference(tmp_path):
    write(tmp_path, "pc.jsonl", [{"prompt": "2+2=", "completion": "4", "extra": 1}])
    write(tmp_path, "pref.jsonl", [{"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."}])
    assert load(tmp_path, path="pc.jsonl").schema == "prompt_completion"
    assert rows(load(tmp_path, path="pc.jsonl")) == [{"prompt": "2+2=", "completion": "4"}]
    preference = load(tmp_path, path="pref.jsonl")
    assert preference.schema == "preference"
    assert rows(preference) == [{"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."}]


def test_csv_with_a_header_keeps_values_as_written(tmp_path):
    write(tmp_path, "i.csv", 'utterance,intent,score\n"hello, there",greet,07\nbye,leave,\n')
    result = load(tmp_path, path="i.csv", columns={"text": "utterance", "label": "intent"})
    assert result.schema == "fields"
    assert rows(result) == [{"text": "hello, there", "label": "greet"}, {"text": "bye", "label": "leave"}]
    assert rows(load(tmp_path, path="i.csv"))[0] == {"utterance": "hello, there", "intent": "greet", "score": "07"}
    assert rows(load(tmp_path, path="i.csv"))[1]["score"] is None


def test_csv_without_a_header_tsv_and_quoting(tmp_path):
    write(tmp_path, "n.csv", "hello;greet\nbye;leave\n")
    assert rows(load(tmp_path, path="n.csv", header=False, delimiter=";")) == [
        {"0": "hello", "1": "greet"},
        {"0": "bye", "1": "leave"},
    ]
    write(tmp_path, "t.tsv", "text\tlabel\na, b\tx\n")
    assert rows(load(tmp_path, path="t.tsv")) == [{"text": "a, b", "label": "x"}]
    write(tmp_path, "q.csv", "text,label\n'two\nlines',x\n'it''s',y\n")
    quoted = load(tmp_path, path="q.csv", quotechar="'")
    assert rows(quoted) == [{"text": "two\nlines", "label": "x"}, {"text": "it's", "label": "y"}]
    assert [row["_origin"] for row in quoted.splits["all"]] == ["q.csv:line 2", "q.csv:line 4"]


def test_json_array_and_an_object_holding_one_array(tmp_path):
    write(tmp_path, "a.json", json.dumps([{"prompt": "p", "completion": "c"}]))
    write(tmp_path, "o.json", json.dumps({"version": 2, "data": [{"prompt": "p", "completion": "c"}]}))
    for name in ("a.json", "o.json"):
        result = load(tmp_path, path=name)
        assert rows(result) == [{"prompt": "p", "completion": "c"}]
        assert result.splits["all"][0]["_origin"] == f"{name}:row 0"


def test_parquet(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"text": ["a", "b"], "label": [1, None]})
    frame.to_parquet(tmp_path / "p.parquet")
    result = load(tmp_path, path="p.parquet")
    assert rows(result) == [{"text": "a", "label": 1.0}, {"text": "b", "label": None}]
    assert result.splits["all"][1]["_origin"] == "p.parquet:row 1"


def test_hf_disk_dataset_and_dataset_dict_with_a_split_mapping(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list([{"prompt": "p", "completion": "c"}]).save_to_disk(str(tmp_path / "pool"))
    pool = load(tmp_path, path="pool")
    assert pool.provenance["format"] == "auto" and set(pool.splits) == {"all"}
    assert rows(pool) == [{"prompt": "p", "completion": "c"}]
    assert pool.splits["all"][0]["_origin"] == "pool:row 0"

    splits = DatasetDict(
        train=Dataset.from_list([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]),
        dev=Dataset.from_list([{"text": "c", "label": "x"}]),
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    result = load(tmp_path, path="dd", format="hf_disk", split={"validation": "dev"})
    assert {split: len(items) for split, items in result.splits.items()} == {"train": 2, "validation": 1}
    assert result.splits["validation"][0]["_origin"] == "dd/dev:row 0"
    assert "'dev' split" in refusal(tmp_path, path="dd", format="hf_disk")


def test_hf_files(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    write(tmp_path, "train.jsonl", [{"prompt": "p", "completion": "c"}])
    write(tmp_path, "test.jsonl", [{"prompt": "q", "completion": "d"}])
    result = load(tmp_path, files={"train": "train.jsonl", "test": "test.jsonl"}, format="hf_files")
    assert rows(result, "test") == [{"prompt": "q", "completion": "d"}]
    assert result.splits["train"][0]["_origin"] == "train.jsonl:row 0"


def test_a_folder_of_split_files(tmp_path):
    write(tmp_path, "data/train.jsonl", [{"text": "a"}, {"text": "b"}])
    write(tmp_path, "data/valid.csv", "text\nc\n")
    write(tmp_path, "data/test.jsonl", [{"text": "d"}])
    write(tmp_path, "data/.DS_Store", b"\0")
    result = load(tmp_path, path="data")
    assert {split: rows(result, split) for split in result.splits} == {
        "test": [{"text": "d"}],
        "train": [{"text": "a"}, {"text": "b"}],
        "validation": [{"text": "c"}],
    }
    assert result.splits["validation"][0]["_origin"] == "data/valid.csv:line 2"


def test_split_column_with_a_mapping(tmp_path):
    write(tmp_path, "s.csv", "text,part\na,TRAIN\nb,TRAIN\nc,TEST\n")
    result = load(tmp_path, path="s.csv", split_column="part", split={"train": "TRAIN", "test": "TEST"})
    assert {split: rows(result, split) for split in result.splits} == {
        "train": [{"text": "a"}, {"text": "b"}],
        "test": [{"text": "c"}],
    }


def test_one_file_per_split(tmp_path):
    write(tmp_path, "tr.jsonl", [{"text": "a"}])
    write(tmp_path, "te.csv", "text\nb\n")
    result = load(tmp_path, files={"train": "tr.jsonl", "test": "te.csv"})
    assert rows(result, "train") == [{"text": "a"}] and rows(result, "test") == [{"text": "b"}]
    assert [file["split"] for file in result.provenance["files"]] == ["train", "test"]


def test_filter_then_limit(tmp_path):
    write(tmp_path, "f.jsonl", [{"text": str(index), "keep": index % 2 == 0} for index in range(10)])
    result = load(tmp_path, path="f.jsonl", filter="keep == True", limit=3, columns={"text": "text"})
    assert rows(result) == [{"text": "0"}, {"text": "2"}, {"text": "4"}]
    assert result.provenance["rows"] == {"read": 10, "filtered_out": 5, "kept": {"all": 3}}


def test_home_and_variables_expand(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "shared"))
    write(tmp_path, "me/d.jsonl", [{"text": "home"}])
    write(tmp_path, "shared/d.jsonl", [{"text": "var"}])
    assert rows(load(tmp_path / "configs", path="~/d.jsonl")) == [{"text": "home"}]
    assert rows(load(tmp_path / "configs", path="$DATA_ROOT/d.jsonl")) == [{"text": "var"}]
    assert rows(load(tmp_path / "configs", path="${DATA_ROOT}/d.jsonl")) == [{"text": "var"}]
    assert resolve_path("../x.csv", tmp_path / "configs") == tmp_path / "x.csv"


# Bad data: refused whole, the message naming the file, the line or row, and the column.

MESSAGES_OK = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
BAD_JSONL = {
    "not JSON": ([{"text": "ok"}, "{oops"], {}, ["a.jsonl:line 2", "not JSON"]),
    "not an object": ([{"text": "ok"}, [1, 2]], {}, ["a.jsonl:line 2", "a JSON array, not an object"]),
    "missing mapped column": (
        [{"utterance": "ok"}, {"text": "no"}],
        {"columns": {"text": "utterance"}},
        ["a.jsonl:line 2, column 'utterance'", "missing (columns.text)"],
    ),
    "alpaca without output": (
        [{"instruction": "x", "output": "y"}, {"instruction": "z"}],
        {"format": "alpaca"},
        ["a.jsonl:line 2, column 'output'", "missing; alpaca rows need instruction and output"],
    ),
    "empty field": (
        [{"instruction": "  ", "output": "y"}],
        {"format": "alpaca"},
        ["a.jsonl:line 1, column 'instruction'", "empty"],
    ),
    "alpaca output not a string": (
        [{"instruction": "x", "output": 3}],
        {"format": "alpaca"},
        ["a.jsonl:line 1, column 'output'", "a int, not a string"],
    ),
    "messages not a list": (
        [{"messages": MESSAGES_OK}, {"messages": "Hi"}],
        {},
        ["a.jsonl:line 2, column 'messages'", "a str, not a list of turns"],
    ),
    "content not a string": (
        [{"messages": [MESSAGES_OK[0], {"role": "assistant", "content": ["Hello"]}]}],
        {},
        ["a.jsonl:line 1, column 'messages[1].content'", "a list, not a string"],
    ),
    "chat not ending with the assistant": (
        [{"messages": [*MESSAGES_OK, {"role": "user", "content": "More?"}]}],
        {},
        ["a.jsonl:line 1, column 'messages'", "user -> assistant -> user", "ending with an assistant turn"],
    ),
    "roles not alternating": (
        [{"messages": [MESSAGES_OK[0], *MESSAGES_OK]}],
        {},
        ["a.jsonl:line 1, column 'messages'", "user -> user -> assistant"],
    ),
    "unknown sharegpt speaker": (
        [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}]}],
        {},
        ["a.jsonl:line 1, column 'conversations[1].from'", "unknown speaker 'bot'"],
    ),
}


@pytest.mark.parametrize("lines,source,expected", list(BAD_JSONL.values()), ids=list(BAD_JSONL))
def test_bad_jsonl_rows(tmp_path, lines, source, expected):
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    write(tmp_path, "a.jsonl", text)
    message = refusal(tmp_path, path="a.jsonl", **source)
    assert message.startswith(f"{WHERE}: the data is refused")
    for part in expected:
        assert part in message


BAD_FILES = {
    "not UTF-8": ("a.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', {}, ["a.jsonl:line 2", "byte offset 28"]),
    "not UTF-8 in a JSON array": ("a.json", b'[\n{"text": "caf\xe9"}]', {}, ["a.json:line 2", "not valid utf-8"]),
    "JSON array with a non-object": ("a.json", b'[{"text": "ok"}, "x"]', {}, ["a.json:row 1", "a JSON string"]),
    "JSON not an array": ("a.json", b'{"text": "ok"}', {}, ["a.json: a JSON object", "array of objects"]),
    "empty file": ("a.jsonl", b"\n\n", {}, ["a.jsonl: no rows"]),
    "header-only CSV": ("a.csv", b"text,label\n", {}, ["a.csv:line 1: only a header line, no rows"]),
    "ragged CSV row": (
        "a.csv",
        b"text,label\nok,x\nno,x,extra\n",
        {},
        ["a.csv:line 3", "3 fields where the header has 2"],
    ),
    "unterminated CSV quote": ("a.csv", b'text,label\n"ok,x\n', {}, ["a.csv:line 2", "not CSV"]),
    "missing column in a CSV header": (
        "a.csv",
        b"text,intent\nok,x\n",
        {"columns": {"label": "label"}},
        ["a.csv:line 1, column 'label'", "not a column (columns.label); the columns are text, intent"],
    ),
    "duplicate CSV column": ("a.csv", b"text,text\na,b\n", {}, ["a.csv:line 1, column 'text'", "named twice"]),
}


@pytest.mark.parametrize("name,content,source,expected", list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_bad_files(tmp_path, name, content, source, expected):
    write(tmp_path, name, content)
    message = refusal(tmp_path, path=name, **source)
    for part in expected:
        assert part in message


def test_bad_parquet_row_names_the_row(tmp_path):
    import pandas as pd

    pd.DataFrame({"prompt": ["a", "b"], "completion": ["c", " "]}).to_parquet(tmp_path / "p.parquet")
    assert "p.parquet:row 1, column 'completion': empty" in refusal(tmp_path, path="p.parquet")
    missing = refusal(tmp_path, path="p.parquet", columns={"prompt": "question"})
    assert "p.parquet (its columns), column 'question': not a column (columns.prompt)" in missing


def test_a_ten_megabyte_line_is_refused_with_its_size(tmp_path):
    huge = json.dumps({"text": "x" * 10_000_000})
    write(tmp_path, "a.jsonl", json.dumps({"text": "ok"}) + "\n" + huge + "\n" + json.dumps({"text": "ok"}) + "\n")
    message = refusal(tmp_path, path="a.jsonl")
    assert f"a.jsonl:line 2: {len(huge) + 1:,} bytes, over the 1,048,576-byte limit" in message
    assert "line 3" not in message
    assert rows(load_source(DataSource(path="a.jsonl"), tmp_path, WHERE, max_line_bytes=20_000_000))[1] == {
        "text": "x" * 10_000_000
    }


def test_many_problems_are_listed_then_counted(tmp_path):
    write(tmp_path, "a.jsonl", "".join("{bad\n" for _ in range(15)) + '{"instruction": "x"}\n' + "[1]\n")
    message = refusal(tmp_path, path="a.jsonl", format="alpaca")
    assert message.count("\n  a.jsonl:line") == 10
    assert "6 more problem(s): in all not JSON 15, not an object 1" in message


def test_a_file_that_changes_while_read(tmp_path, monkeypatch):
    path = write(tmp_path, "a.jsonl", [{"text": "a"}, {"text": "b"}])
    real_loads = json.loads
    appended = []

    def appending_loads(text, *args, **kwargs):
        if not appended:
            with open(path, "ab") as handle:
                handle.write(b'{"text": "late"}\n')
            appended.append(True)
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", appending_loads)
    message = refusal(tmp_path, path="a.jsonl")
    assert "a.jsonl changed while it was read" in message and "retry once the file is complete" in message


def test_missing_file_and_unset_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    assert "nope.jsonl: no such file or folder" in refusal(tmp_path, path="nope.jsonl")
    message = refusal(tmp_path, path="$NOT_SET_HERE/data.jsonl")
    assert message.startswith(WHERE) and "$NOT_SET_HERE is not set" in message
    with pytest.raises(DataSourceError, match="no such file"):
        source_version(DataSource(path="nope.jsonl"), tmp_path)


def test_a_failing_filter_names_its_expression(tmp_path):
    write(tmp_path, "a.csv", "text,score\na,1\n")
    message = refusal(tmp_path, path="a.csv", filter="grade > 2")
    assert "filter 'grade > 2' failed" in message and "columns text, score" in message
    assert "kept none of the 1 rows" in refusal(tmp_path, path="a.csv", filter="text == 'b'")


def test_an_unknown_split_column_value(tmp_path):
    write(tmp_path, "a.csv", "text,part\na,train\nb,holdout\nc,holdout\n")
    message = refusal(tmp_path, path="a.csv", split_column="part")
    assert "a.csv:line 3, column 'part': 'holdout' (2 row(s)) is not a split" in message


def test_a_folder_with_unexpected_files(tmp_path):
    write(tmp_path, "data/train.jsonl", [{"text": "a"}])
    write(tmp_path, "data/notes.txt", "hi")
    write(tmp_path, "data/train_old.jsonl", [{"text": "a"}])
    message = refusal(tmp_path, path="data")
    assert "data: a source folder holds only" in message and "unexpected: notes.txt, train_old.jsonl" in message


def test_two_files_for_one_split(tmp_path):
    write(tmp_path, "data/train.jsonl", [{"text": "a"}])
    write(tmp_path, "data/validation.jsonl", [{"text": "b"}])
    write(tmp_path, "data/dev.csv", "text\nc\n")
    assert "dev.csv and validation.jsonl are both the validation split" in refusal(tmp_path, path="data")
    message = refusal(tmp_path, files={"train": "data/train.jsonl", "test": "./data/train.jsonl"})
    assert "train and test name the same file ./data/train.jsonl" in message


# source_version: a cheap identity, changing with any byte of the data.


def test_source_version_follows_the_bytes_and_uses_its_cache(tmp_path, ftassets_home, monkeypatch):
    path = write(tmp_path, "a.jsonl", [{"text": "a"}])
    source = DataSource(path="a.jsonl", limit=5)
    first = source_version(source, tmp_path)
    assert first["files"] == [
        {"split": "all", "path": str(path), "size": path.stat().st_size, "sha256": readers_module.sha256_file(path)}
    ]
    assert first["source"]["limit"] == 5
    assert source_version(source, tmp_path) == first
    write(tmp_path, "a.jsonl", [{"text": "b"}])
    changed = source_version(source, tmp_path)
    assert changed["files"][0]["size"] == first["files"][0]["size"]
    assert changed["files"][0]["sha256"] != first["files"][0]["sha256"]
    assert source_version(DataSource(path="a.jsonl", limit=6), tmp_path) != changed

    an_hour_ago = path.stat().st_mtime_ns - 3600 * 10**9
    os.utime(path, ns=(an_hour_ago, an_hour_ago))
    cached = source_version(source, tmp_path)
    assert (
        json.loads((ftassets_home / "cache" / "source_sha256.json").read_text())[str(path)]["sha256"]
        == (cached["files"][0]["sha256"])
    )
    monkeypatch.setattr(readers_module, "sha256_file", lambda path: pytest.fail("the cached sha256 was not used"))
    assert source_version(source, tmp_path) == cached


def test_source_version_of_a_saved_dataset_and_of_split_files(tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"text": "a"}]).save_to_disk(str(tmp_path / "ds"))
    version = source_version(DataSource(path="ds"), tmp_path)
    fingerprint = json.loads((tmp_path / "ds" / "state.json").read_text())["_fingerprint"]
    assert version["hf_disk"] == {"path": str(tmp_path / "ds"), "fingerprints": {"all": fingerprint}}
    write(tmp_path, "data/train.jsonl", [{"text": "a"}])
    write(tmp_path, "data/test.jsonl", [{"text": "b"}])
    assert [file["split"] for file in source_version(DataSource(path="data"), tmp_path)["files"]] == ["test", "train"]


def test_an_empty_saved_dataset_and_a_split_mapping_to_nothing(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_dict({"text": []}).save_to_disk(str(tmp_path / "empty"))
    assert refusal(tmp_path, path="empty").startswith(f"{WHERE}: empty: ")  # datasets 5.2 cannot load it back
    DatasetDict(train=Dataset.from_list([{"text": "a"}])).save_to_disk(str(tmp_path / "dd"))
    assert "split: test: dd has no split 'heldout'; it has train" in refusal(
        tmp_path, path="dd", split={"test": "heldout"}
    )


def test_source_version_of_a_teacher_names_its_seed_file(tmp_path):
    seed = write(tmp_path, "seed.jsonl", [{"text": "a"}])
    teacher = {"base": "gpt", "count": 10, "budget_usd": 1.0, "seed_path": "seed.jsonl"}
    version = source_version(DataSource(teacher=teacher), tmp_path, WHERE)
    assert version["files"][0]["path"] == str(seed) and version["source"]["teacher"]["count"] == 10
    with pytest.raises(DataSourceError, match=f"^{WHERE}: nope.jsonl: no such file"):
        source_version(DataSource(teacher={**teacher, "seed_path": "nope.jsonl"}), tmp_path, WHERE)
