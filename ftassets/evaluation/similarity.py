"""Semantic similarity of generated answers to their references: the cosine of their sentence embeddings.

The embeddings come from the endpoint configured in ``evaluation.similarity.embeddings`` (any OpenAI-compatible
``/v1/embeddings`` endpoint, or an Azure OpenAI deployment of azure.yaml, resolved and credentialed as an API base
is), or, where none is configured, from the evaluated entry's own base model: its last hidden state, mean-pooled
over each text's tokens. One embedder scores every variant of a cell (the base's weights, not the fine-tune's), so
their figures compare; its ``source`` is recorded next to the figure.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from ftassets.config import ConfigError, ProjectConfig
from ftassets.config.schemas import API_SOURCES, OpenAICompatibleBase, SimilaritySettings
from ftassets.tasks import TaskType

METRIC = "semantic_similarity"
SOURCE = "semantic_similarity_source"
COLUMNS = [METRIC, SOURCE]
EMBEDDINGS_SETTING = "evaluation.similarity.embeddings"


class Embedder(ABC):
    """Texts in, one vector per text out; ``source`` says where the vectors come from, for the evaluation row."""

    source: str

    @abstractmethod
    def embed(self, texts: list[str]) -> torch.Tensor:
        """A float tensor of shape (len(texts), dimensions)."""

    def close(self) -> None:  # noqa: B027 (a hook: an embedder that holds nothing leaves it as it is)
        """Release the model or connection."""

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class LocalEmbedder(Embedder):
    """A saved causal LM's last hidden state, mean-pooled over each text's tokens; the model loads on first use."""

    def __init__(self, model_dir: Path, device: str = "cpu", batch_size: int = 32, name: str | None = None) -> None:
        self.model_dir, self.device, self.batch_size = Path(model_dir), device, batch_size
        self.source = f"local:{name or self.model_dir.name} mean-pooled last hidden state"
        self.model = self.tokenizer = None

    def _load(self) -> None:
        from ftassets import loading
        from ftassets.devices import inference_dtype, resolve_device

        self.device = resolve_device(self.device)
        model = loading.load_causal_lm(self.model_dir, dtype=inference_dtype(self.device))
        self.model, self.tokenizer = model.to(self.device).eval(), loading.load_tokenizer(self.model_dir)

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> torch.Tensor:
        if self.model is None:
            self._load()
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        encoded = [self.tokenizer(text)["input_ids"][:limit] for text in texts]
        vectors = []
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            width = max(1, *map(len, batch))
            # Right padding: a causal model's real tokens never attend to it, and the mask leaves it out of the mean.
            input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids in batch], device=self.device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=self.device)
            hidden = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            vectors.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float().cpu())
        return torch.cat(vectors) if vectors else torch.empty(0, 0)

    def close(self) -> None:
        self.model = self.tokenizer = None


class EndpointEmbedder(Embedder):
    """An ``/embeddings`` endpoint through the openai SDK: an OpenAI-compatible server or an Azure OpenAI deployment."""

    def __init__(self, client: Any, model: str, source: str, batch_size: int = 32) -> None:
        self.client, self.model, self.source, self.batch_size = client, model, source, batch_size

    def embed(self, texts: list[str]) -> torch.Tensor:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            response = self.client.embeddings.create(model=self.model, input=texts[start : start + self.batch_size])
            vectors += [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        return torch.tensor(vectors, dtype=torch.float32) if vectors else torch.empty(0, 0)

    def close(self) -> None:
        self.client.close()


def endpoint_embedder(project: ProjectConfig, settings: SimilaritySettings) -> EndpointEmbedder:
    """The configured embeddings endpoint, resolved as an API base of models.yaml is (endpoint, key or Entra ID, API
    version); ``MissingCredentials`` naming the variables when some are unset."""
    from ftassets.azure.clients import openai_client
    from ftassets.azure.settings import required_variables, resolve_base
    from ftassets.endpoints import require_variables

    embeddings = settings.embeddings
    if embeddings.source == "azure_openai":
        if embeddings.deployment not in project.azure.deployments:
            raise ConfigError(
                f"experiments.yaml {EMBEDDINGS_SETTING}.deployment: {embeddings.deployment!r} is not a deployment "
                f"of azure.yaml; known: {', '.join(project.azure.deployments) or 'none'}"
            )
        config = embeddings
    else:
        config = OpenAICompatibleBase(**embeddings.model_dump(exclude={"source"}), source="openai_compatible")
    with_endpoint = replace(project, bases={**project.bases, EMBEDDINGS_SETTING: config})
    require_variables(
        required_variables(with_endpoint, EMBEDDINGS_SETTING),
        f"semantic similarity's embeddings (configs/experiments.yaml {EMBEDDINGS_SETTING})",
    )
    target = resolve_base(with_endpoint, EMBEDDINGS_SETTING)
    return EndpointEmbedder(
        openai_client(target), target.deployment, f"{target.source}:{target.model}", settings.batch_size
    )


def embedder_for(project: ProjectConfig, base: str, base_dir: Path, device: str = "cpu") -> Embedder | None:
    """The embedder of the evaluations of an entry on ``base``: the configured endpoint, else the base's own weights
    under ``base_dir``. None where similarity is off, or the base is an API model and no endpoint is configured."""
    settings = project.experiments.evaluation.similarity
    if not settings.enabled:
        return None
    if settings.embeddings is not None:
        return endpoint_embedder(project, settings)
    if project.bases[base].source in API_SOURCES:
        return None
    return LocalEmbedder(base_dir, device, settings.batch_size, name=base)


def compares_meaning(task_type: TaskType) -> bool:
    """Whether semantic similarity applies to a task type's answers: free text (summarization, instruction, chat,
    qa), not a label, code or SQL; each type declares it (``TaskType.semantic_similarity``)."""
    return task_type.semantic_similarity


def semantic_similarity(embedder: Embedder, answers: list[str | None], references: list[str]) -> list[float]:
    """The cosine of each answer's embedding with its reference's; 0 for an answer that is missing or blank. Answers
    and references are embedded together, in batches."""
    present = [index for index, answer in enumerate(answers) if isinstance(answer, str) and answer.strip()]
    scores = [0.0] * len(answers)
    if not present:
        return scores
    vectors = embedder.embed([answers[i] for i in present] + [references[i] for i in present])
    cosines = torch.nn.functional.cosine_similarity(vectors[: len(present)], vectors[len(present) :], dim=1)
    for index, cosine in zip(present, cosines.tolist()):
        scores[index] = cosine
    return scores


def similarity_row(embedder: Embedder, scores: list[float]) -> dict[str, Any]:
    """The evaluation row's columns: the mean similarity and its source."""
    return {METRIC: fmean(scores) if scores else math.nan, SOURCE: embedder.source}
