"""Typed schemas of the files in ``configs/``. Unknown fields are errors; defaults live here."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, StringConstraints

from ftassets.training.recipes import Recipe

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSizes(_Strict):
    train: PositiveInt
    validation: PositiveInt
    test: PositiveInt


class DatasetChecks(_Strict):
    max_label_share_deviation: float = Field(
        0.15, gt=0, le=1, description="Largest allowed |share - 1/n_labels| of any label in any split."
    )
    max_prompt_words: PositiveInt = 400


class TaskConfig(_Strict):
    type: str
    description: str = ""
    sizes: SplitSizes
    seed: int = 0
    prompt_template: str | None = None
    system_prompt: str | None = None
    primary_metric: str | None = None
    max_new_tokens: PositiveInt | None = None
    params: dict[str, Any] = {}
    checks: DatasetChecks = DatasetChecks()


class TasksFile(_Strict):
    tasks: dict[Slug, TaskConfig]


class EmbeddedBase(_Strict):
    """The tiny Llama model the project builds itself (tokenizer, weights, chat template)."""

    source: Literal["embedded"]
    vocab_size: PositiveInt | None = None
    hidden_size: PositiveInt | None = None
    intermediate_size: PositiveInt | None = None
    num_hidden_layers: PositiveInt | None = None
    num_attention_heads: PositiveInt | None = None
    num_key_value_heads: PositiveInt | None = None
    pretrain_steps: PositiveInt | None = None
    seed: int | None = None

    def spec_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"source"}).items() if v is not None}


class HuggingFaceBase(_Strict):
    """A causal LM loaded with ``from_pretrained``: a hub id (``org/name``) or a local directory."""

    source: Literal["huggingface"]
    id: str = Field(min_length=1, description="Hub id such as Qwen/Qwen2.5-0.5B-Instruct, or a local path.")
    revision: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = Field(None, description="Overrides the tokenizer's template when it has none.")


BaseConfig = Annotated[Union[EmbeddedBase, HuggingFaceBase], Field(discriminator="source")]


class ModelEntry(_Strict):
    base: Slug
    recipe: Slug | None = Field(None, description="Recipe in experiments.yaml; None evaluates the base only.")
    description: str = ""


class ModelsFile(_Strict):
    bases: dict[Slug, BaseConfig]
    models: dict[Slug, ModelEntry]


class Experiment(_Strict):
    tasks: list[Slug] = Field(min_length=1)
    models: list[Slug] = Field(min_length=1)
    description: str = ""


DEFAULT_RUBRIC = (
    "You grade answers. Given a task prompt, a reference answer and a candidate answer, rate how well the "
    "candidate answers the prompt as the reference does: 5 = equivalent, 4 = minor omissions, 3 = partly right, "
    "2 = mostly wrong, 1 = wrong or unrelated. Reply with JSON only: {\"score\": <1-5>, \"reason\": \"<one sentence>\"}."
)


class JudgeSettings(_Strict):
    """An optional LLM judge for open-ended tasks, through any OpenAI-compatible endpoint (off by default)."""

    enabled: bool = False
    tasks: list[str] = ["summarization", "instruction"]
    model: str = "gpt-5-mini"
    base_url_env: str = "FTASSETS_JUDGE_BASE_URL"
    api_key_env: str = "FTASSETS_JUDGE_API_KEY"
    rubric_version: str = "1"
    rubric: str = DEFAULT_RUBRIC
    max_completion_tokens: PositiveInt = 300


class EvaluationSettings(_Strict):
    batch_size: PositiveInt = 32
    max_test_examples: PositiveInt | None = None
    confidence: float = Field(0.95, gt=0, lt=1)
    bootstrap_resamples: PositiveInt = 1000
    price_per_device_hour_usd: dict[Literal["cpu", "cuda", "mps"], NonNegativeFloat] = {"cpu": 0.10, "cuda": 3.00, "mps": 0.10}
    """What one hour of a local device costs, for local rows' cost per 1k examples. Defaults: a 2-vCPU cloud
    VM (~$0.10/h), one on-demand data-center GPU (~$3/h); set your own."""
    forgetting_examples: PositiveInt = 40
    """Test examples per other task when measuring forgetting (the cross-task matrix)."""
    judge: JudgeSettings = JudgeSettings()


class ExperimentsFile(_Strict):
    default_experiment: Slug = "default"
    recipes: dict[Slug, Recipe]
    experiments: dict[Slug, Experiment]
    evaluation: EvaluationSettings = EvaluationSettings()


class AzureEndpoint(_Strict):
    endpoint_env: EnvVarName = Field(description="Name of the env var holding https://<resource>.openai.azure.com")
    api_key_env: EnvVarName | None = Field(None, description="Name of the env var holding the key; None: Entra ID.")
    api_version: str = "2025-04-01-preview"
    auth: Literal["api_key", "entra_id"] = "api_key"


class AzureDeployment(_Strict):
    endpoint: Slug
    deployment: str
    model: str
    deployment_type: Literal["Standard", "GlobalStandard", "DataZoneStandard", "GlobalBatch", "Developer"] = (
        "GlobalStandard"
    )


class AzureFile(_Strict):
    endpoints: dict[Slug, AzureEndpoint] = {}
    deployments: dict[Slug, AzureDeployment] = {}
    subscription_id_env: EnvVarName = "AZURE_SUBSCRIPTION_ID"
    resource_group_env: EnvVarName = "AZURE_RESOURCE_GROUP"
    account_name_env: EnvVarName = "AZURE_OPENAI_ACCOUNT"


SCHEMAS: dict[str, type[_Strict]] = {
    "tasks.yaml": TasksFile,
    "models.yaml": ModelsFile,
    "experiments.yaml": ExperimentsFile,
    "azure.yaml": AzureFile,
}
