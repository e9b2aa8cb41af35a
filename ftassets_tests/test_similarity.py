"""Semantic similarity of generated answers to their references: embeddings from the entry's own base model (mean-
pooled last hidden state) or from a configured endpoint (OpenAI-compatible or Azure OpenAI, over loopback through
the real openai SDK), and the evaluation row of a generation task that carries the figure with its source."""

import dataclasses
import math
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from fakes.embeddings import FakeEmbeddings
from helpers import REPO, edit_yaml

from ftassets.config import ConfigError, load_project_config
from ftassets.config.schemas import EvaluationSettings
from ftassets.endpoints import MissingCredentials
from ftassets.evaluation.evaluate import comparison_table, evaluate_variant, summary_columns
from ftassets.evaluation.similarity import LocalEmbedder, compares_meaning, embedder_for, semantic_similarity
from ftassets.tasks import TASK_TYPES, get_task_type

SENTENCES = [
    "The council of Brookfield approved a new library that will cost 12 million dollars.",
    "Students in Ashford raised 900 dollars for the animal shelter with a bake sale.",
    "The Lions from Millbrook won the hockey final, scoring 31 points.",
]
UNRELATED = ["zq xv 7 7 7 ###", "!!!! ????", "x y z w v"]


def test_generation_types_get_similarity_and_label_code_and_sql_types_do_not():
    compared = {name for name, task_type in TASK_TYPES.items() if compares_meaning(task_type)}
    assert compared == {"summarization", "instruction", "chat", "qa"}


def test_the_tiny_base_embeds_identical_texts_alike_and_unrelated_ones_less(tiny_base_dir):
    with LocalEmbedder(tiny_base_dir, name="tiny") as embedder:
        assert embedder.source == "local:tiny mean-pooled last hidden state"
        identical = semantic_similarity(embedder, SENTENCES, SENTENCES)
        unrelated = semantic_similarity(embedder, SENTENCES, UNRELATED)
        blank = semantic_similarity(embedder, [None, "  ", SENTENCES[0]], [SENTENCES[0]] * 3)
        batched = embedder.embed(SENTENCES + UNRELATED)
    assert identical == pytest.approx([1.0] * 3, abs=1e-4)
    assert blank == pytest.approx([0.0, 0.0, 1.0], abs=1e-4), "a missing or blank answer scores 0"
    # Mean-pooled states of a tiny causal LM all point much the same way (unrelated texts still score high): lower.
    assert max(unrelated) < 0.999 and sum(unrelated) / len(unrelated) < 0.97, unrelated
    with LocalEmbedder(tiny_base_dir, batch_size=1) as one_at_a_time:
        assert torch.allclose(one_at_a_time.embed(SENTENCES + UNRELATED), batched, atol=1e-4), "padding is masked"


def test_without_an_endpoint_the_entrys_local_base_embeds_and_an_api_base_gets_none(config_dir, tmp_path):
    project = load_project_config(config_dir)
    local = embedder_for(project, "tiny", tmp_path / "tiny")
    assert isinstance(local, LocalEmbedder) and local.source == "local:tiny mean-pooled last hidden state"
    assert embedder_for(project, "gpt-5", tmp_path / "gpt-5") is None
    edit_yaml(config_dir / "experiments.yaml", lambda d: d["evaluation"]["similarity"].update(enabled=False))
    assert embedder_for(load_project_config(config_dir), "tiny", tmp_path / "tiny") is None


def with_embeddings(config_dir: Path, embeddings: dict, batch_size: int = 32):
    edit_yaml(
        config_dir / "experiments.yaml",
        lambda d: d["evaluation"]["similarity"].update(embeddings=embeddings, batch_size=batch_size),
    )
    return load_project_config(config_dir)


def test_an_openai_compatible_endpoint_embeds_in_batches_and_missing_variables_are_named(config_dir, monkeypatch):
    endpoint = {
        "source": "openai_compatible",
        "base_url_env": "FTASSETS_TEST_EMBEDDINGS_URL",
        "api_key_env": "FTASSETS_TEST_EMBEDDINGS_KEY",
        "model": "text-embedding-3-small",
    }
    project = with_embeddings(config_dir, endpoint, batch_size=2)
    with pytest.raises(MissingCredentials, match=r"\$FTASSETS_TEST_EMBEDDINGS_URL, \$FTASSETS_TEST_EMBEDDINGS_KEY"):
        embedder_for(project, "tiny", Path("unused"))
    with FakeEmbeddings(api_key="secret") as fake:
        monkeypatch.setenv("FTASSETS_TEST_EMBEDDINGS_URL", fake.base_url)
        monkeypatch.setenv("FTASSETS_TEST_EMBEDDINGS_KEY", "secret")
        with embedder_for(project, "gpt-5", Path("unused")) as embedder:
            scores = semantic_similarity(
                embedder,
                ["the red fox", "blue sky today", None, "alpha beta"],
                ["The red fox.", "a green field", "ignored", "alpha gamma"],
            )
        assert embedder.source == "openai_compatible:text-embedding-3-small"
        requests = fake.embedding_requests()
    assert scores == pytest.approx([1.0, 0.0, 0.0, 0.5])
    assert [len(r["input"]) for r in requests] == [2, 2, 2]
    assert {r["model"] for r in requests} == {"text-embedding-3-small"}


def test_an_azure_openai_deployment_embeds_through_the_azure_endpoints_resolution(config_dir, monkeypatch):
    def add_deployment(azure: dict) -> None:
        model = "text-embedding-3-large"
        azure["deployments"]["embeddings"] = {"endpoint": "default", "deployment": "embed-prod", "model": model}
        azure["pricing"][model] = {"input_per_1m": 0.13, "output_per_1m": 0.0, "as_of": "2024-01-25"}

    edit_yaml(config_dir / "azure.yaml", add_deployment)
    with pytest.raises(ConfigError, match="'nope' is not a deployment of azure.yaml"):
        embedder_for(with_embeddings(config_dir, {"source": "azure_openai", "deployment": "nope"}), "tiny", Path("x"))
    project = with_embeddings(config_dir, {"source": "azure_openai", "deployment": "embeddings"})
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    with FakeEmbeddings(api_key="azure-secret") as fake:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url)
        with pytest.raises(MissingCredentials, match=r"\$AZURE_OPENAI_API_KEY"):
            embedder_for(project, "tiny", Path("unused"))
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-secret")
        with embedder_for(project, "tiny", Path("unused")) as embedder:
            assert semantic_similarity(embedder, ["one two"], ["two one"]) == pytest.approx([1.0])
        paths = [r["path"] for r in fake.state.requests]
    assert embedder.source == "azure_openai:text-embedding-3-large"
    assert paths == ["/openai/deployments/embed-prod/embeddings"]


def test_a_summarization_evaluation_row_carries_semantic_similarity_and_its_source(tiny_base_dir):
    from ftassets.backends.local_hf import LocalHFBackend

    project = load_project_config(REPO / "configs")
    settings = EvaluationSettings(bootstrap_resamples=20)

    def evaluated(task_name: str, backend, embedder):
        task = dataclasses.replace(project.tasks[task_name], max_new_tokens=8)
        task_type = get_task_type(task.type)
        rows = [
            {"id": index, **record, "prompt": task_type.render_prompt(record, task.prompt_template)}
            | {"answer": task_type.reference(record)}
            for index, record in enumerate(task_type.generate(4, random.Random(0), {}))
        ]
        return task, evaluate_variant(backend, task, rows, "tiny-lora", "base", settings, embedder=embedder)

    with (
        LocalHFBackend(model_dir=tiny_base_dir, device="cpu", name="tiny") as backend,
        LocalEmbedder(tiny_base_dir, name="tiny") as embedder,
    ):
        task, summarization = evaluated("summarization", backend, embedder)
        _, classification = evaluated("classification", backend, embedder)
    row = summarization.row
    assert -1.0 <= row["semantic_similarity"] <= 1.0 and not math.isnan(row["semantic_similarity"])
    assert row["semantic_similarity_source"] == "local:tiny mean-pooled last hidden state"
    assert summarization.predictions["semantic_similarity"].mean() == pytest.approx(row["semantic_similarity"])
    assert "semantic_similarity" not in classification.row, "a label task gets no similarity"
    assert "semantic_similarity" not in classification.predictions

    table = comparison_table(task, ["tiny-lora"], {"tiny-lora": pd.DataFrame([row])})
    assert table.loc[0, "semantic_similarity"] == row["semantic_similarity"]
    assert table.loc[0, "semantic_similarity_source"] == row["semantic_similarity_source"]
    assert {"semantic_similarity", "semantic_similarity_source"} <= set(summary_columns(task, table))
