"""Typed schemas of the files in ``configs/``. Unknown fields are errors; defaults live here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    model_validator,
)

from ftassets.config.sources import DataSource
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
    max_label_share_deviation: float | None = Field(
        0.15,
        gt=0,
        le=1,
        description="Largest allowed |share - 1/n_labels| of any label in any split; null: report, do not block "
        "(the default for a task with its own data, whose labels are rarely balanced).",
    )
    max_prompt_words: PositiveInt | None = Field(400, description="null: report, do not block.")


OWN_DATA_CHECKS = DatasetChecks(max_label_share_deviation=None, max_prompt_words=None)


class TaskConfig(_Strict):
    type: str
    description: str = ""
    source: DataSource | None = None
    """Where the rows come from (``ftassets/data/sources/schema.py``); none: the task type's synthetic generator."""
    labels: list[str] | None = None
    """A classification task's labels; none: the synthetic default, or for a task with a source, read from its data."""
    sizes: SplitSizes | None = None
    """Split sizes: required for a synthetic task; for a task with a source, used to cut a single pool of rows
    when ``source.fractions`` is not given (given splits are used as they are)."""
    seed: int = 0
    prompt_template: str | None = None
    system_prompt: str | None = None
    primary_metric: str | None = None
    max_new_tokens: PositiveInt | None = Field(None, le=16384, description="At most 16384 generated tokens.")
    params: dict[str, Any] = {}
    checks: DatasetChecks = DatasetChecks()
    over_length: Literal["truncate", "drop"] | None = None
    """Training rows longer than the recipe's ``max_seq_length``: cut from the right (``truncate``, the default) or
    left out (``drop``); counted in ``tokenized_splits``' metadata either way."""

    @model_validator(mode="after")
    def _sizes_or_source(self) -> TaskConfig:
        if self.source is None and self.sizes is None:
            raise ValueError("a synthetic task (no `source`) needs `sizes` (train, validation, test)")
        if self.source is not None and "checks" not in self.model_fields_set:
            object.__setattr__(self, "checks", OWN_DATA_CHECKS)
        if self.labels is not None:
            if "labels" in self.params and list(self.params["labels"]) != list(self.labels):
                raise ValueError("`labels` and `params.labels` differ; give the labels once")
            object.__setattr__(self, "params", {**self.params, "labels": list(self.labels)})
        return self

    @property
    def not_in_rows(self) -> tuple[str, ...]:
        """Fields that change no row of the dataset: a description (never fingerprinted), the evaluation's
        generation limit and primary metric (fingerprinted by ``evaluation``), the over-length policy
        (by ``tokenized_splits``). Editing them rebuilds only what reads them."""
        return ("description", "max_new_tokens", "primary_metric", "over_length")


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
    polarity_words: bool | None = None
    opinions: bool | None = None
    seed: int | None = None

    def spec_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"source"}).items() if v is not None}


class HuggingFaceBase(_Strict):
    """A causal LM loaded with ``from_pretrained``: a hub id (``org/name``) or a local directory."""

    source: Literal["huggingface"]
    id: str = Field(min_length=1, description="Hub id such as Qwen/Qwen2.5-0.5B-Instruct, or a local path.")
    revision: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = Field(
        None,
        description="The chat template, over the tokenizer's own: a Jinja template, or a family's name (chatml, "
        "llama3, phi3, gemma: ftassets/models/templates.py), whose special tokens are added where missing.",
    )
    pad_token: Literal["eos", "add"] = Field(
        "eos",
        description="When the tokenizer has no pad token (Llama 3, Mistral): 'eos' pads with its end-of-sequence "
        "token (padding is masked out of attention and loss, so the model still learns to stop); 'add' adds a "
        "dedicated <|pad|> token and resizes the embeddings. A tokenizer with a pad token keeps it.",
    )


class AzureOpenAIBase(_Strict):
    """An Azure OpenAI deployment named in azure.yaml: no weights, evaluated (and cloud fine-tuned) through the API."""

    source: Literal["azure_openai"]
    deployment: Slug = Field(description="A key of `deployments` in azure.yaml.")


class OpenAICompatibleBase(_Strict):
    """Any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp's server, OpenAI): no weights."""

    source: Literal["openai_compatible"]
    base_url_env: EnvVarName = Field(
        description="Name of the env var holding the base URL, e.g. http://127.0.0.1:8000/v1"
    )
    api_key_env: EnvVarName | None = Field(None, description="Name of the env var holding the key; None: no key.")
    model: str = Field(min_length=1)
    reasoning_model: bool = False
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    concurrency: PositiveInt = 8
    timeout_s: PositiveFloat = 120.0
    max_retries: NonNegativeInt = 4
    pricing: TokenPricing | None = None


API_SOURCES = ("azure_openai", "openai_compatible")
"""Base sources reached over HTTP: no local weights, so nothing to tokenize, train locally or merge."""

BaseConfig = Annotated[
    EmbeddedBase | HuggingFaceBase | AzureOpenAIBase | OpenAICompatibleBase, Field(discriminator="source")
]


class ModelEntry(_Strict):
    base: Slug
    recipe: Slug | None = Field(None, description="Recipe in experiments.yaml; None evaluates the base only.")
    description: str = ""
    repeats: PositiveInt = Field(
        1,
        description="Trainings with different seeds (the recipe's seed, then +1, +2, ...), each evaluated on the same "
        "test split; the comparison adds their mean, standard deviation and a seed-aware significance test. "
        "Only for a recipe that trains locally (ftassets/config/repeats.py).",
    )


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
    '2 = mostly wrong, 1 = wrong or unrelated. Reply with JSON only: {"score": <1-5>, "reason": "<one sentence>"}.'
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


class OpenAICompatibleEmbeddings(_Strict):
    """Sentence embeddings from any OpenAI-compatible ``POST /v1/embeddings`` endpoint (OpenAI, vLLM, Ollama,
    text-embeddings-inference)."""

    source: Literal["openai_compatible"]
    base_url_env: EnvVarName = Field(description="Name of the env var holding the base URL (https://.../v1).")
    api_key_env: EnvVarName | None = Field(None, description="Name of the env var holding the key; None: no key.")
    model: str = Field(min_length=1, description="The embeddings model, e.g. text-embedding-3-small.")
    timeout_s: PositiveFloat = 60.0
    max_retries: NonNegativeInt = 4


class SimilaritySettings(_Strict):
    """Semantic similarity of a generation task's answers to its references (``ftassets/evaluation/similarity.py``):
    the mean cosine of their sentence embeddings, recorded per variant next to where the embeddings came from."""

    enabled: bool = True
    embeddings: Annotated[OpenAICompatibleEmbeddings | AzureOpenAIBase, Field(discriminator="source")] | None = None
    """None: the evaluated entry's own base model, its last hidden state mean-pooled (a base with local weights; an
    API base gets no similarity then). Else an embeddings endpoint: ``source: openai_compatible`` with
    ``base_url_env``, ``api_key_env`` and ``model``, or ``source: azure_openai`` with a ``deployment`` of azure.yaml."""
    batch_size: PositiveInt = 32
    """Texts per forward pass of the local model, or per request to the endpoint."""


class EvaluationSettings(_Strict):
    batch_size: PositiveInt = 32
    """Most prompts per generation batch of a local model."""
    max_batch_tokens: PositiveInt = 16384
    """Most padded prompt tokens per generation batch: bounds a batch's memory when prompts are long."""
    max_test_examples: PositiveInt | None = None
    confidence: float = Field(0.95, gt=0, lt=1)
    bootstrap_resamples: PositiveInt = 1000
    price_per_device_hour_usd: dict[Literal["cpu", "cuda", "mps"], NonNegativeFloat] = {
        "cpu": 0.10,
        "cuda": 3.00,
        "mps": 0.10,
    }
    """What one hour of a local device costs, for local rows' cost per 1k examples. Defaults: a 2-vCPU cloud
    VM (~$0.10/h), one on-demand data-center GPU (~$3/h); set your own."""
    forgetting_examples: PositiveInt = 40
    """Test examples per other task when measuring forgetting (the cross-task matrix)."""
    judge: JudgeSettings = JudgeSettings()
    similarity: SimilaritySettings = SimilaritySettings()


class AutomationSettings(_Strict):
    """Sensors, schedules and the evaluation checks (ftassets/defs/sensors.py, schedules.py, checks.py)."""

    incoming_dir: str = "incoming"
    """Drop folder for new rows: ``<incoming_dir>/<task>/*.jsonl``; relative paths are relative to the folder
    that holds ``configs/``."""
    regression_threshold: NonNegativeFloat = 0.05
    """Largest allowed drop of a variant's primary metric between two evaluations of one partition."""
    under_triage_allowance: NonNegativeInt = 0
    """How many more emergencies a fine-tuned variant of a triage task may under-triage than its base before the
    ``no_under_triage`` check fails (and ``publish_to_model_store`` refuses the cell)."""


class ExperimentsFile(_Strict):
    default_experiment: Slug = "default"
    recipes: dict[Slug, Recipe]
    experiments: dict[Slug, Experiment]
    evaluation: EvaluationSettings = EvaluationSettings()
    automation: AutomationSettings = AutomationSettings()


class TokenPricing(_Strict):
    """List price of an API model in USD per 1M tokens, as of a date; reasoning tokens bill as output."""

    input_per_1m: NonNegativeFloat
    cached_input_per_1m: NonNegativeFloat | None = Field(None, description="None: cached input bills as input.")
    output_per_1m: NonNegativeFloat
    as_of: str = Field(description="Date of the price list, e.g. 2025-08-07: prices change, keep it current.")
    deployment_type: str = "GlobalStandard"

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        cached_price = self.input_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m
        uncached = max(prompt_tokens - cached_tokens, 0)
        return (
            uncached * self.input_per_1m + cached_tokens * cached_price + completion_tokens * self.output_per_1m
        ) / 1e6


class AzureEndpoint(_Strict):
    endpoint_env: EnvVarName = Field(description="Name of the env var holding https://<resource>.openai.azure.com")
    api_key_env: EnvVarName | None = Field(None, description="Name of the env var holding the key; None: Entra ID.")
    api_version: str = "2025-04-01-preview"
    auth: Literal["api_key", "entra_id"] = "api_key"
    api: Literal["deployments", "v1"] = Field(
        "deployments",
        description="deployments: /openai/deployments/{name}/...?api-version=; v1: /openai/v1/ (no api-version).",
    )
    ad_token_env: EnvVarName = Field(
        "AZURE_OPENAI_AD_TOKEN",
        description="entra_id: a token acquired elsewhere, if set; else DefaultAzureCredential.",
    )
    timeout_s: PositiveFloat = 120.0
    max_retries: NonNegativeInt = 5
    concurrency: PositiveInt = 16

    @model_validator(mode="after")
    def _key_auth_names_its_variable(self) -> AzureEndpoint:
        if self.auth == "api_key" and self.api_key_env is None:
            raise ValueError(
                "auth is api_key but api_key_env is not set: name the env var holding the key, or use auth: entra_id"
            )
        return self


class AzureDeployment(_Strict):
    endpoint: Slug
    deployment: str
    model: str
    model_version: str | None = Field(None, description="e.g. 2025-04-14; a fine-tuning job names the model with it.")
    deployment_type: Literal["Standard", "GlobalStandard", "DataZoneStandard", "GlobalBatch", "Developer"] = (
        "GlobalStandard"
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class FineTuningPricing(_Strict):
    """What a cloud fine-tune costs: training tokens (x epochs) and, once deployed, hosting per hour."""

    training_per_1m_tokens: NonNegativeFloat
    hosting_per_hour: NonNegativeFloat
    as_of: str
    inference: TokenPricing | None = None
    """Per-token price of calling the fine-tuned deployment; None: the base model's price."""


class AzureFineTuning(_Strict):
    poll_interval_s: PositiveFloat = 30.0
    timeout_hours: PositiveFloat = 72.0
    pricing: dict[str, FineTuningPricing] = {}
    """Per fine-tunable base model (gpt-4.1-mini, ...)."""


class AzureMLSettings(_Strict):
    """Our own training strategies as an Azure ML command job (trainer launcher ``azureml``)."""

    workspace_env: EnvVarName = "AZUREML_WORKSPACE"
    compute: str = Field("gpu-cluster", description="A compute cluster of the workspace.")
    environment: str = "azureml://registries/azureml/environments/acpt-pytorch-2.2-cuda12.1/labels/latest"
    instance_count: PositiveInt = 1
    process_count_per_instance: PositiveInt = 1
    distribution: Literal["pytorch", "mpi"] = "pytorch"
    pipes_storage_url_env: EnvVarName = Field(
        "AZURE_STORAGE_ACCOUNT_URL", description="Blob account through which Dagster Pipes talks to the job."
    )
    pipes_container: str = "dagster-pipes"
    poll_interval_s: PositiveFloat = 15.0


class AzureFile(_Strict):
    endpoints: dict[Slug, AzureEndpoint] = {}
    deployments: dict[Slug, AzureDeployment] = {}
    pricing: dict[str, TokenPricing] = {}
    """Inference price per model name (a deployment's ``model``); a fine-tune of a model bills at its base's price."""
    fine_tuning: AzureFineTuning = AzureFineTuning()
    subscription_id_env: EnvVarName = "AZURE_SUBSCRIPTION_ID"
    resource_group_env: EnvVarName = "AZURE_RESOURCE_GROUP"
    account_name_env: EnvVarName = "AZURE_OPENAI_ACCOUNT"
    management_url: str = "https://management.azure.com"
    management_token_env: EnvVarName = Field(
        "AZURE_MANAGEMENT_TOKEN",
        description="A control-plane token acquired elsewhere, if set; else DefaultAzureCredential.",
    )
    azure_ml: AzureMLSettings = AzureMLSettings()


SCHEMAS: dict[str, type[_Strict]] = {
    "tasks.yaml": TasksFile,
    "models.yaml": ModelsFile,
    "experiments.yaml": ExperimentsFile,
    "azure.yaml": AzureFile,
}
