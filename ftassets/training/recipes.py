"""Training recipes: one validated schema per method, selected by its ``method`` field.

Kept free of torch so that configuration loads fast and errors show before anything heavy starts.
A new method is one recipe class here (added to ``Recipe``) and one strategy class in
``strategies.py``. What a method can do is declared once, as class variables of its recipe
(``_Capabilities``); the rest of the code asks those, never the method's name.
"""

from __future__ import annotations

import typing
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, TypeAdapter, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraParams(_Strict):
    r: PositiveInt = 16
    alpha: PositiveFloat = 32
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["all-linear"] | list[str] = "all-linear"
    loraplus_lr_ratio: PositiveFloat | None = None
    """LoRA+ (peft's ``create_loraplus_optimizer``): the B matrices learn at ``learning_rate`` times this ratio,
    the A matrices at ``learning_rate``. None: one rate for both, as in plain LoRA."""


class IA3Params(_Strict):
    target_modules: Literal["auto"] | list[str] = "auto"
    """Layers whose activations IA3 rescales; "auto" takes peft's defaults for the model type (Llama:
    k_proj, v_proj, down_proj)."""
    feedforward_modules: Literal["auto"] | list[str] = "auto"
    """The subset of ``target_modules`` whose input (rather than output) is rescaled."""


class PrefixParams(_Strict):
    num_virtual_tokens: PositiveInt = 16


class PTuningParams(_Strict):
    num_virtual_tokens: PositiveInt = 16
    encoder_hidden_size: PositiveInt = 128
    encoder_reparameterization_type: Literal["MLP", "LSTM"] = "MLP"


class DpoParams(_Strict):
    beta: PositiveFloat = 0.1
    """How far the policy may move from the reference: higher keeps it closer (TRL's ``DPOConfig.beta``)."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    start_from: Literal["sft", "base"] = "sft"
    """"sft": first a LoRA SFT stage on the train split, which is then the reference policy; "base": DPO on the base."""
    sft_epochs: PositiveFloat = 3
    sft_max_steps: PositiveInt | None = None
    sft_learning_rate: PositiveFloat = 2e-3

    @model_validator(mode="after")
    def _sft_settings_need_an_sft_stage(self) -> DpoParams:
        stray = [
            name
            for name, field in type(self).model_fields.items()
            if name.startswith("sft_") and getattr(self, name) != field.default
        ]
        if self.start_from == "base" and stray:
            raise ValueError(f"dpo.{', dpo.'.join(stray)} set but dpo.start_from is 'base', which has no SFT stage")
        return self


class _Capabilities(_Strict):
    """What a training method can do, declared once on its recipe class; every recipe derives from this."""

    mergeable: ClassVar[bool] = True
    """Whether the trained weights can be folded into the base (prefix tuning, for one, cannot)."""
    cloud: ClassVar[bool] = False
    """Trained by a cloud service from the dataset itself: no local tokenized splits, weights, merge or export."""
    needs_reference_model: ClassVar[bool] = False
    """Trains against a reference policy on preference pairs, so its tokenized splits include those pairs."""
    base_sources: ClassVar[tuple[str, ...]] = ("embedded", "huggingface")
    """The base ``source`` kinds (models.yaml ``bases``) the method can train."""
    base_source_note: ClassVar[str] = ""
    """Why only those sources, for the error that names a base of another source."""


class _RecipeBase(_Capabilities):
    """Hyper-parameters every local method shares. Defaults suit the embedded model on CPU."""

    epochs: PositiveFloat = 3
    max_steps: PositiveInt | None = None
    learning_rate: PositiveFloat = 2e-3
    batch_size: PositiveInt = 16
    gradient_accumulation_steps: PositiveInt = 1
    max_seq_length: PositiveInt = 256
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: PositiveFloat = 1.0
    eval_steps: PositiveInt = 50
    save_steps: PositiveInt = 100
    logging_steps: PositiveInt = 5
    gradient_checkpointing: bool = False
    packing: bool | Literal["auto"] = "auto"
    """Padding-free packing (one flattened row per batch, attention kept within each example). "auto" packs
    where the attention kernel handles packed rows natively (flash-attention on CUDA); elsewhere the dense
    block mask costs more than the padding it saves, so batches are grouped by length instead."""
    keep_best_checkpoint: bool = False
    """Load the checkpoint with the lowest validation loss at the end instead of the last one."""
    seed: int = 0

    @model_validator(mode="after")
    def _best_checkpoint_is_evaluated(self):
        if self.keep_best_checkpoint and self.save_steps % self.eval_steps:
            raise ValueError(
                f"keep_best_checkpoint needs save_steps ({self.save_steps}) to be a multiple of "
                f"eval_steps ({self.eval_steps}), so that every checkpoint has a validation loss"
            )
        return self


class LoraRecipe(_RecipeBase):
    method: Literal["lora"]
    lora: LoraParams = LoraParams()


class QLoraRecipe(_RecipeBase):
    """LoRA on a bitsandbytes 4-bit NF4 base (double quantization); merged into the 16/32-bit base."""

    method: Literal["qlora"]
    lora: LoraParams = LoraParams()
    bnb_4bit_compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class DoraRecipe(_RecipeBase):
    method: Literal["dora"]
    lora: LoraParams = LoraParams()


class IA3Recipe(_RecipeBase):
    method: Literal["ia3"]
    ia3: IA3Params = IA3Params()

    @model_validator(mode="after")
    def _feedforward_within_targets(self) -> IA3Recipe:
        targets, feedforward = self.ia3.target_modules, self.ia3.feedforward_modules
        if (targets == "auto") != (feedforward == "auto"):
            raise ValueError("ia3.feedforward_modules and ia3.target_modules must both be 'auto' or both be lists")
        if targets != "auto" and not set(feedforward) <= set(targets):
            raise ValueError(
                f"ia3.feedforward_modules {sorted(set(feedforward) - set(targets))} are not in "
                f"ia3.target_modules {targets}; feedforward modules must be a subset of the targets"
            )
        return self


class PrefixRecipe(_RecipeBase):
    method: Literal["prefix"]
    prefix: PrefixParams = PrefixParams()

    mergeable: ClassVar[bool] = False


class PTuningRecipe(_RecipeBase):
    method: Literal["ptuning"]
    ptuning: PTuningParams = PTuningParams()

    mergeable: ClassVar[bool] = False


class FullRecipe(_RecipeBase):
    method: Literal["full"]
    learning_rate: PositiveFloat = 5e-4

    @model_validator(mode="after")
    def _full_lr_is_sane(self) -> FullRecipe:
        if self.learning_rate > 1e-2:
            raise ValueError(f"learning_rate {self.learning_rate} is too high for full fine-tuning; use <= 0.01")
        return self


class DpoRecipe(_RecipeBase):
    """LoRA trained with TRL's DPO on (reference answer, plausible wrong answer) pairs; see ``dpo.py``."""

    method: Literal["dpo"]
    epochs: PositiveFloat = 2
    learning_rate: PositiveFloat = 5e-4
    lora: LoraParams = LoraParams()
    dpo: DpoParams = DpoParams()

    needs_reference_model: ClassVar[bool] = True

    @model_validator(mode="after")
    def _no_loraplus(self) -> DpoRecipe:
        if self.lora.loraplus_lr_ratio is not None:
            raise ValueError(
                "lora.loraplus_lr_ratio is not applied to DPO's SFT and preference stages; remove it, or use it "
                "with method lora, qlora or dora"
            )
        return self


class AzureSftRecipe(_Capabilities):
    """Supervised fine-tuning of an Azure OpenAI model as a cloud job, then a deployment of the result to
    evaluate it (``ftassets/azure/finetuning.py``). The model is the one the entry's base deployment serves."""

    method: Literal["azure_sft"]
    epochs: PositiveInt = 2
    batch_size: PositiveInt | None = None
    """None: Azure picks one from the training set's size."""
    learning_rate_multiplier: PositiveFloat | None = None
    training_type: Literal["Standard", "GlobalStandard", "developerTier"] = "GlobalStandard"
    """Where training runs (Azure's ``trainingType``); developerTier is cheapest, preemptible."""
    seed: int = 0
    suffix: str = Field("ftassets", pattern=r"^[a-zA-Z0-9-]+$", max_length=40)
    deployment_sku: Literal["Standard", "GlobalStandard", "DeveloperTier"] = "GlobalStandard"
    """DeveloperTier: no hosting fee, removed by Azure after 24 h; others bill per hour until deleted."""
    deployment_capacity: PositiveInt = 1

    mergeable: ClassVar[bool] = False
    cloud: ClassVar[bool] = True
    base_sources: ClassVar[tuple[str, ...]] = ("azure_openai",)


class FoundrySftRecipe(_Capabilities):
    """Fine-tuning of an open model from the Azure AI Foundry catalog (``azure-ai-ml`` ``create_finetuning_job``),
    for example Phi-4-mini-instruct from the ``azureml`` registry (``ftassets/azure/foundry.py``)."""

    method: Literal["foundry_sft"]
    model: str = Field(pattern=r"^azureml://registries/[^/]+/models/[^/]+/(versions|labels)/[^/]+$")
    task: Literal["chat_completion", "text_completion"] = "chat_completion"
    epochs: PositiveInt = 1
    learning_rate: PositiveFloat = 1e-4
    batch_size: PositiveInt = 1
    extra_hyperparameters: dict[str, str] = {}
    output_model_name_prefix: str = Field("ftassets", pattern=r"^[a-zA-Z0-9-]+$", max_length=40)
    instance_types: list[str] = ["Standard_NC24ads_A100_v4"]
    """Serverless compute for the job; ``compute`` (a cluster of the workspace) takes precedence when set."""
    compute: str | None = None

    mergeable: ClassVar[bool] = False
    cloud: ClassVar[bool] = True
    base_sources: ClassVar[tuple[str, ...]] = ("openai_compatible",)
    base_source_note: ClassVar[str] = "the catalog model's own serverless endpoint, evaluated as the base row"


Recipe = Annotated[
    LoraRecipe
    | QLoraRecipe
    | DoraRecipe
    | IA3Recipe
    | PrefixRecipe
    | PTuningRecipe
    | FullRecipe
    | DpoRecipe
    | AzureSftRecipe
    | FoundrySftRecipe,
    Field(discriminator="method"),
]
RECIPE_CLASSES: tuple[type[_Capabilities], ...] = typing.get_args(typing.get_args(Recipe)[0])


def method_of(recipe_class: type[_Capabilities]) -> str:
    """The ``method`` tag that selects ``recipe_class`` in a recipe."""
    return typing.get_args(recipe_class.model_fields["method"].annotation)[0]


METHODS = tuple(method_of(cls) for cls in RECIPE_CLASSES if not cls.cloud)
CLOUD_METHODS = tuple(method_of(cls) for cls in RECIPE_CLASSES if cls.cloud)
"""Trained by a cloud service from the dataset itself: no local tokenization, weights or merge."""

_RECIPE_ADAPTER = TypeAdapter(Recipe)


def parse_recipe(raw: dict) -> Recipe:
    """Validate a recipe read back from a manifest or assembled from overrides."""
    return _RECIPE_ADAPTER.validate_python(raw)


def is_mergeable(recipe: Recipe | None) -> bool:
    return recipe is not None and recipe.mergeable


def is_cloud(recipe: Recipe | None) -> bool:
    """Trained by a cloud service (``CLOUD_METHODS``): no local tokenized splits, weights, merge or export."""
    return recipe is not None and recipe.cloud
