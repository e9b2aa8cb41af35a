"""The incoming drop folder validates as the dataset asset does (issue 21, item 3): exact labels, the length gate,
the dataset's blocking gates judged with the rows accepted before, and an accepted file withdrawn by a command."""

import json
from pathlib import Path

import pytest
from helpers import edit_yaml

from ftassets import plan
from ftassets.config import load_project_config
from ftassets.data.datasets import DatasetError, add_incoming, build_splits, check_splits
from ftassets.data.incoming import accepted_rows, ingest

TASK = "classification"


def drop(config_dir: Path, name: str, rows: list, task: str = TASK) -> Path:
    folder = config_dir.parent / "incoming" / task
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def outcomes(config_dir: Path) -> dict[str, str | None]:
    """Dropped name -> None when accepted, else its reason (as the reason file says it)."""
    return {o.source: o.reason for o in ingest(load_project_config(config_dir))}


def test_a_label_must_be_one_of_the_tasks_labels_not_contain_one(config_dir):
    """Before: ``not positive`` passed, because the label check was the answer parser's regex search."""
    drop(config_dir, "contains.jsonl", [{"text": "The kettle was fine.", "label": "not positive"}])
    drop(config_dir, "exact.jsonl", [{"text": "The kettle was lovely.", "label": " positive "}])
    result = outcomes(config_dir)
    assert "line 1: label 'not positive' is not one of the task's labels" in result["contains.jsonl"], result
    assert result["exact.jsonl"] is None, "surrounding spaces are stripped, as the dataset strips its labels"
    assert accepted_rows(load_project_config(config_dir), TASK) == [
        {"text": "The kettle was lovely.", "label": "positive"}
    ]


def test_a_label_of_the_wrong_type_gets_a_reason_that_names_the_label(config_dir):
    """Before: ``field 'int' object has no attribute 'strip' is missing``."""
    drop(config_dir, "typed.jsonl", [{"text": "Fine.", "label": 1}, {"text": "No label."}, {"text": "A", "label": []}])
    reason = outcomes(config_dir)["typed.jsonl"]
    assert "line 1: label '1' is not one of the task's labels ['positive', 'negative', 'neutral']" in reason, reason
    assert "line 2: field 'label' is missing" in reason and "line 3: field 'label' must be non-empty text" in reason
    assert "has no attribute" not in reason


def test_numbers_as_labels_are_read_as_the_dataset_reads_them_for_a_task_with_its_own_data(config_dir):
    """A task over the user's file with labels ``"1"`` and ``"2"``: a dropped ``1`` is the label ``"1"``, as in the
    source; a ``3`` is no label of the task."""
    data = config_dir / "data"
    data.mkdir()
    rows = [{"text": f"item {i} {'alpha' if i % 2 else 'beta'}", "label": i % 2 + 1} for i in range(40)]
    (data / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = {"type": "classification", "source": {"path": "data/rows.jsonl", "format": "jsonl"}}
    edit_yaml(config_dir / "tasks.yaml", lambda d: d["tasks"].update(mine=task))
    drop(config_dir, "numbers.jsonl", [{"text": "a new one", "label": 1}], task="mine")
    drop(config_dir, "unknown.jsonl", [{"text": "another one", "label": 3}], task="mine")
    result = outcomes(config_dir)
    assert result["numbers.jsonl"] is None, result
    assert "line 1: label '3' is not one of the task's labels ['1', '2']" in result["unknown.jsonl"], result
    (row,) = accepted_rows(load_project_config(config_dir), "mine")
    assert row["label"] == "1" and row["_origin"].startswith("accepted/") and row["_origin"].endswith(":line 1")


def test_a_row_longer_than_the_datasets_length_gate_is_rejected_naming_the_file_and_line(config_dir):
    """Before: accepted, and the dataset then failed its length gate without naming the file."""
    long_text = "word " * 450
    drop(
        config_dir,
        "long.jsonl",
        [{"text": "Short and fine.", "label": "neutral"}, {"text": long_text, "label": "neutral"}],
    )
    reason = outcomes(config_dir)["long.jsonl"]
    assert reason.startswith("long.jsonl rejected") and "line 2: the prompt has 458 words" in reason, reason
    assert "tasks.classification.checks.max_prompt_words: 400" in reason and "line 1" not in reason
    assert not accepted_rows(load_project_config(config_dir), TASK)


def test_a_file_is_judged_with_the_accepted_rows_by_the_datasets_blocking_gates(config_dir):
    """Rows valid one by one but that fail a blocking gate of the dataset together (label balance; a test prompt in
    other case) reject the file; what is accepted builds, as the dataset asset builds it."""
    project = load_project_config(config_dir)
    task = project.tasks[TASK]
    test_text = build_splits(task)["test"][0]["text"]
    drop(config_dir, "good.jsonl", [{"text": "The lamp is lovely.", "label": "positive"}])
    drop(config_dir, "skewed.jsonl", [{"text": f"Review {i} was superb.", "label": "positive"} for i in range(400)])
    drop(config_dir, "leak.jsonl", [{"text": test_text.upper(), "label": "neutral"}])
    result = outcomes(config_dir)
    assert result["good.jsonl"] is None, result
    assert "would fail its blocking gate label_balance" in result["skewed.jsonl"], result
    assert "would fail its blocking gate no_train_test_contamination" in result["leak.jsonl"], result
    splits, counts = add_incoming(task, build_splits(task), accepted_rows(project, TASK))
    assert counts["incoming_rows_added"] == 1 and all(o.passed for o in check_splits(task, splits))


def test_an_accepted_file_is_withdrawn_by_a_command_and_leaves_the_dataset(config_dir, capsys, monkeypatch):
    """``ftassets incoming withdraw`` moves the accepted file to withdrawn/ (nothing deleted): the dataset's
    fingerprint is back to what it was, so the lineage reads stale; an unknown name is refused naming the task's
    accepted files. ``ftassets incoming list`` shows each file's state."""
    from ftassets.cli import main

    monkeypatch.setenv("FTASSETS_CONFIG_DIR", str(config_dir))
    before = plan.dataset_step(load_project_config(config_dir), TASK).fingerprint
    folder = drop(config_dir, "good.jsonl", [{"text": "The lamp is lovely.", "label": "positive"}])
    assert outcomes(config_dir) == {"good.jsonl": None}
    assert plan.dataset_step(load_project_config(config_dir), TASK).fingerprint != before
    (accepted,) = (folder / "accepted").glob("*-good.jsonl")

    assert main(["incoming", "withdraw", TASK, "other.jsonl"]) == 1
    error = capsys.readouterr().err
    assert f"no accepted file of task 'classification' in {folder / 'accepted'}" in error and accepted.name in error
    assert main(["incoming", "withdraw", TASK, "good.jsonl"]) == 0
    assert "its rows leave the dataset" in capsys.readouterr().out
    assert (folder / "withdrawn" / accepted.name).read_text() == json.dumps(
        {"text": "The lamp is lovely.", "label": "positive"}
    ) + "\n"
    assert not accepted.exists() and not accepted_rows(load_project_config(config_dir), TASK)
    assert plan.dataset_step(load_project_config(config_dir), TASK).fingerprint == before

    assert main(["incoming", "list", "--task", TASK]) == 0
    listed = capsys.readouterr().out
    assert "classification: 0 pending, 0 accepted, 0 rejected, 1 withdrawn" in listed and accepted.name in listed


def test_an_accepted_file_the_task_no_longer_accepts_stops_the_dataset_naming_the_withdraw_command(config_dir):
    """A file accepted under an older configuration (here, before labels were checked exactly) is read by the
    dataset with the same validation: the dataset stops, naming the file and how to withdraw it, and the sensor
    refuses new files of the task with the same advice (instead of failing every tick)."""
    accepted = config_dir.parent / "incoming" / TASK / "accepted"
    accepted.mkdir(parents=True)
    (accepted / "20260101T000000-abcd1234-old.jsonl").write_text(
        json.dumps({"text": "Meh.", "label": "not positive"}) + "\n"
    )
    project = load_project_config(config_dir)
    with pytest.raises(DatasetError) as error:
        accepted_rows(project, TASK)
    message = str(error.value)
    assert "20260101T000000-abcd1234-old.jsonl" in message and "line 1: label 'not positive'" in message, message
    assert f"ftassets incoming withdraw {TASK} 20260101T000000-abcd1234-old.jsonl" in message
    drop(config_dir, "new.jsonl", [{"text": "The lamp is lovely.", "label": "positive"}])
    reason = outcomes(config_dir)["new.jsonl"]
    assert "ftassets incoming withdraw" in reason and "drop it again after" in reason, "refused with the way out"
