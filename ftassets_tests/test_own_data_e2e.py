"""A user's own data, end to end: six tasks defined only in YAML over the user's files (a 5-label CSV, Parquet,
alpaca JSONL, chat JSONL, preference JSONL and a ``save_to_disk`` dataset) run ``ftassets run`` through to
``comparison``; editing one data file then stales exactly that task's lineage in Dagster."""

import json
import os
import random
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest
import yaml
from helpers import REPO

from ftassets.config import load_project_config
from ftassets.definitions import build_definitions
from ftassets.defs.observe import observe_configuration
from ftassets.defs.partitions import cell_key
from ftassets.defs.staleness import Staleness

pytestmark = pytest.mark.e2e
INTENTS = {
    "billing issue": ["invoice", "charged twice", "refund my payment", "bill is wrong"],
    "cancel order": ["cancel my order", "stop the order", "do not ship it", "call off my purchase"],
    "track package": ["where is my parcel", "tracking number", "package location", "delivery status"],
    "reset password": ["forgot my password", "cannot log in", "reset the login", "locked out of my account"],
    "talk to agent": ["speak to a human", "real person please", "connect me to support staff", "agent now"],
}
OPENERS = ["hi", "hello", "hey there", "good morning", "excuse me", "quick question", "please help", "urgent"]
CLOSERS = ["thanks", "asap", "today", "if you can", "for order 12", "again", "right away", "please"]
TASKS = ("intents", "tickets", "support-answers", "support-chat", "support-preferences", "faq-disk")


def intent_rows(rng: random.Random, count: int) -> list[dict[str, str]]:
    rows = []
    for index in range(count):
        label = list(INTENTS)[index % len(INTENTS)]
        text = f"{rng.choice(OPENERS)}, {rng.choice(INTENTS[label])} {rng.choice(CLOSERS)} #{index}"
        rows.append({"utterance": text, "intent": label})
    return rows


def instruction_pairs(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Tiny instructions with a learnable answer: repeat a word."""
    words = ["apple", "river", "stone", "cloud", "green", "seven", "piano", "tiger", "maple", "ocean"]
    return [
        (f"repeat the word {w} twice (#{i})", f"{w} {w}") for i, w in enumerate(rng.choice(words) for _ in range(count))
    ]


def write_project(root) -> None:
    rng = random.Random(0)
    data = root / "configs" / "data"
    data.mkdir(parents=True)
    pd.DataFrame(intent_rows(rng, 300)).to_csv(data / "intents.csv", index=False)
    pairs = instruction_pairs(rng, 120)
    pd.DataFrame({"question": [p for p, _ in pairs], "reply": [a for _, a in pairs]}).to_parquet(
        data / "tickets.parquet"
    )
    with open(data / "support.jsonl", "w") as handle:
        for i, (prompt, answer) in enumerate(pairs):
            handle.write(
                json.dumps({"instruction": prompt, "input": "" if i % 2 else "be brief", "output": answer}) + "\n"
            )
    with open(data / "chats.jsonl", "w") as handle:
        for prompt, answer in pairs:
            messages = [
                {"role": "system", "content": "You are a support bot."},
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hello, how can I help?"},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            ]
            handle.write(json.dumps({"messages": messages}) + "\n")
    with open(data / "preferences.jsonl", "w") as handle:
        for prompt, answer in pairs:
            handle.write(json.dumps({"prompt": prompt, "chosen": answer, "rejected": "I cannot help."}) + "\n")
    import datasets

    faq = datasets.Dataset.from_list([{"question": p, "answer": a} for p, a in pairs])
    datasets.DatasetDict({"train": faq.select(range(100)), "test": faq.select(range(100, 120))}).save_to_disk(
        str(data / "faq")
    )
    tasks = {
        "intents": {
            "type": "classification",
            "source": {
                "path": "data/intents.csv",
                "format": "csv",
                "columns": {"text": "utterance", "label": "intent"},
            },
        },
        "tickets": {
            "type": "instruction",
            "source": {
                "path": "data/tickets.parquet",
                "format": "parquet",
                "columns": {"instruction": "question", "output": "reply"},
            },
        },
        "support-answers": {"type": "instruction", "source": {"path": "data/support.jsonl", "format": "alpaca"}},
        "support-chat": {"type": "chat", "source": {"path": "data/chats.jsonl", "format": "chat"}},
        "support-preferences": {
            "type": "instruction",
            "source": {"path": "data/preferences.jsonl", "format": "preference"},
        },
        "faq-disk": {
            "type": "instruction",
            "source": {
                "path": "data/faq",
                "format": "hf_disk",
                "columns": {"instruction": "question", "output": "answer"},
            },
        },
    }
    (root / "configs" / "tasks.yaml").write_text(yaml.safe_dump({"tasks": tasks}, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory, world):
    """The six tasks over files written here, and the shipped `tiny-lora` (the embedded base, which the e2e world
    has built, and the shipped lora recipe)."""
    root = tmp_path_factory.mktemp("own_data")
    (root / "configs").mkdir()
    write_project(root)
    base = world["home"] / "artifacts" / "base_model" / "tiny"
    (root / "configs" / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "bases": {"tiny": {"source": "huggingface", "id": str(base)}},
                "models": {"tiny-lora": {"base": "tiny", "recipe": "lora"}},
            }
        )
    )
    # The shipped lora recipe for four epochs instead of eight: these tasks test the data path, not the accuracy.
    recipe = yaml.safe_load((REPO / "configs" / "experiments.yaml").read_text())["recipes"]["lora"] | {"epochs": 4}
    (root / "configs" / "experiments.yaml").write_text(
        yaml.safe_dump(
            {
                "recipes": {"lora": recipe},
                "experiments": {"default": {"tasks": ["intents"], "models": ["tiny-lora"]}},
                "evaluation": {"bootstrap_resamples": 100, "forgetting_examples": 8},
            }
        )
    )
    (root / "dagster_home").mkdir()
    (root / "dagster_home" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "FTASSETS_HOME": str(root / "home"),
        "FTASSETS_CONFIG_DIR": str(root / "configs"),
        "FTASSETS_MLFLOW": "0",
        "OMP_NUM_THREADS": "1",
    }
    return dict(root=root, config_dir=root / "configs", env=env)


def ftassets_run(project, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ftassets", "run", "--tasks", *TASKS, "--models", "tiny-lora", "--no-forgetting"]
    return subprocess.run(
        command + list(args), cwd=project["root"], env=project["env"], capture_output=True, text=True, timeout=1500
    )


def test_six_tasks_from_the_users_files_run_through_comparison_and_the_5_label_fine_tune_beats_base(project):
    result = ftassets_run(project)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    defs = build_definitions(project["config_dir"], project["root"] / "home")
    instance = dg.DagsterInstance.from_config(str(project["root"] / "dagster_home"))
    for task in TASKS:
        table = defs.load_asset_value("comparison", partition_key=task, instance=instance)
        assert {"base", "finetuned"} <= set(table[table.model == "tiny-lora"].variant), task
    rows = defs.load_asset_value("comparison", partition_key="intents", instance=instance).set_index(
        ["model", "variant"]
    )
    answers = defs.load_asset_value("comparison", partition_key="support-answers", instance=instance)
    tuned_rows = answers[answers.variant != "base"].set_index("variant")
    assert {"finetuned", "gguf-q8_0", "gguf-q4_k_m"} <= set(tuned_rows.index), answers[["model", "variant"]]
    assert tuned_rows.semantic_similarity.between(-1, 1).all(), "free-text answers, GGUF rows included, get similarity"
    assert set(tuned_rows.semantic_similarity_source) == {"local:tiny mean-pooled last hidden state"}
    tuned, base = rows.loc[("tiny-lora", "finetuned"), "accuracy"], rows.loc[("tiny-lora", "base"), "accuracy"]
    assert tuned > base, rows[["accuracy", "macro_f1"]]
    labels = json.loads((project["root"] / "home" / "artifacts" / "dataset" / "intents" / "manifest.json").read_text())[
        "labels"
    ]
    assert sorted(labels) == sorted(INTENTS)

    again = ftassets_run(project)
    assert again.returncode == 0 and "0 step(s) ran" in again.stdout, again.stdout[-3000:]

    with open(project["config_dir"] / "data" / "support.jsonl", "a") as handle:
        handle.write(
            json.dumps({"instruction": "repeat the word delta twice (#999)", "input": "", "output": "delta delta"})
            + "\n"
        )
    config = load_project_config(project["config_dir"])
    observe_configuration(instance, config)
    staleness = Staleness(instance, defs.resolve_asset_graph())
    stale = {
        (asset, task)
        for task in TASKS
        for asset in ("dataset", "tokenized_splits", "adapter", "merged_model", "gguf_export", "evaluation")
        if staleness.why(asset, task if asset == "dataset" else cell_key(task, "tiny-lora"))
    }
    expected = {
        (a, "support-answers")
        for a in ("dataset", "tokenized_splits", "adapter", "merged_model", "gguf_export", "evaluation")
    }
    assert stale == expected, stale
    instance.dispose()
