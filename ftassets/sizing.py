"""What a fine-tune will cost before it runs (``ftassets run --plan``): parameters, trainable parameters, an
estimate of peak training memory, and the tokens and steps it trains on.

Parameter counts are exact: the base's architecture is built from its configuration on the ``meta`` device
(accelerate's ``init_empty_weights``: no weights are allocated or read, so a 70B config costs nothing) and the
recipe's own PEFT configuration is applied to it, as training would. The configuration is the built base's
``config.json`` when ``base_model`` has been materialized, a local model folder's, a hub id's (the config file only,
where a hub is reachable), or, for the embedded model not yet built, the one its spec gives.

Peak memory is an estimate, stated as one: weights in the training dtype (4-bit for QLoRA's linear layers),
gradients and AdamW's two moments for the trainable parameters (fp32), and activations after Korthikanti et al.,
"Reducing Activation Recomputation in Large Transformer Models" (2022): ``s*b*h*(34 + 5*a*s/h)`` bytes per layer
in 16-bit (twice that in fp32), or only each layer's input with gradient checkpointing, plus the fp32 logits.
Framework overhead (CUDA context, allocator fragmentation, the data loader) is not in it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.config import ProjectConfig
from ftassets.config.schemas import API_SOURCES, EmbeddedBase, HuggingFaceBase
from ftassets.training.recipes import is_cloud

GIB = 1024**3


@dataclass(frozen=True)
class CellSize:
    task: str
    model: str
    base: str
    method: str | None
    architecture: str | None = None
    parameters: int | None = None
    trainable: int | None = None
    weights_bytes: int = 0
    gradient_bytes: int = 0
    optimizer_bytes: int = 0
    activation_bytes: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    train_examples: int | None = None
    train_tokens: int | None = None
    tokens_measured: bool = False
    """True when counted from the built tokenized splits; else an upper bound (examples x max_seq_length)."""
    steps: int | None = None
    note: str | None = None
    """Why there is nothing to size (an API entry, no recipe, a cloud fine-tune)."""

    @property
    def peak_bytes(self) -> int:
        return self.weights_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes


def size_cells(
    project: ProjectConfig, store: ArtifactStore, tasks: list[str], models: list[str], device: str = "cpu"
) -> list[CellSize]:
    """One ``CellSize`` per (task, model) of the selection, in that order; nothing is built or loaded."""
    shapes: dict[str, tuple[object, str]] = {}
    sizes = []
    for model in models:
        base = project.base_of(model)
        recipe = project.recipe_of(model)
        method = getattr(recipe, "method", None)
        for task in tasks:
            note = _nothing_to_train(project, model, recipe)
            if note:
                sizes.append(CellSize(task, model, base, method, note=note))
                continue
            if base not in shapes:
                shapes[base] = base_config(project, store, base)
            config, _ = shapes[base]
            sizes.append(_size(project, store, task, model, base, recipe, config, device))
    return sizes


def _nothing_to_train(project: ProjectConfig, model: str, recipe) -> str | None:
    source = project.bases[project.base_of(model)].source
    if source in API_SOURCES:
        return f"served by an API ({source}): nothing to train here"
    if recipe is None:
        return "no recipe: evaluated as a base only"
    if is_cloud(recipe):
        return f"{recipe.method}: trained in the cloud, sized by its provider"
    return None


def base_config(project: ProjectConfig, store: ArtifactStore, base: str):
    """The transformers configuration of ``base`` and where it came from, without loading any weights."""
    from transformers import AutoConfig

    built = store.path("base_model", base)
    if (built / "config.json").exists():
        from ftassets.loading import load_config

        return load_config(built), f"the built base at {built}"
    spec = project.bases[base]
    if isinstance(spec, EmbeddedBase):
        from ftassets.models.embedded import EmbeddedSpec, embedded_config

        config = embedded_config(dataclasses.replace(EmbeddedSpec(), **spec.spec_overrides()))
        return config, "the embedded spec (not built yet: its tokenizer may end a few tokens short of vocab_size)"
    if isinstance(spec, HuggingFaceBase):
        try:
            config = AutoConfig.from_pretrained(
                spec.id, revision=spec.revision, trust_remote_code=spec.trust_remote_code
            )
        except OSError as error:
            raise ValueError(
                f"base {base!r} (configs/models.yaml bases.{base}.id = {spec.id!r}): its config.json could not be "
                f"read ({error}); use a local folder, or plan on a machine that reaches the hub"
            ) from None
        return config, f"{spec.id}/config.json"
    raise ValueError(f"base {base!r}: source {spec.source!r} has no weights to size")


def _size(project, store, task, model, base, recipe, config, device) -> CellSize:
    architecture, parameters, trainable, linear = _counts(config, recipe, project.bases[base])
    precision = _precision(device)
    compute_bytes = 2 if precision in ("bf16", "fp16") else 4
    if recipe.method == "qlora":
        weights = linear // 2 + (parameters - linear) * compute_bytes
        precision = f"nf4+{precision}"
    elif recipe.method == "full":
        weights = parameters * 4  # trained weights stay fp32 (mixed precision computes in 16-bit)
    else:
        weights = parameters * compute_bytes
    examples, tokens, measured, longest = _training_tokens(project, store, task, model, recipe)
    sequence = min(longest, recipe.max_seq_length)
    activations = _activation_bytes(config, recipe.batch_size, sequence, compute_bytes, recipe.gradient_checkpointing)
    per_step = recipe.batch_size * recipe.gradient_accumulation_steps
    steps = recipe.max_steps or (math.ceil(recipe.epochs * math.ceil(examples / per_step)) if examples else None)
    return CellSize(
        task,
        model,
        base,
        recipe.method,
        architecture=architecture,
        parameters=parameters,
        trainable=trainable,
        weights_bytes=weights,
        gradient_bytes=trainable * 4,
        optimizer_bytes=trainable * 8,
        activation_bytes=activations,
        device=device,
        precision=precision,
        train_examples=examples,
        train_tokens=tokens,
        tokens_measured=measured,
        steps=steps,
    )


def _precision(device: str) -> str:
    """What training on ``device`` computes in: the GPU's own choice where one is here, bf16 for a GPU planned
    from elsewhere, fp32 on CPU."""
    if not device.startswith("cuda"):
        return "fp32"
    import torch

    from ftassets.devices import mixed_precision

    return (mixed_precision(device) or "fp32") if torch.cuda.is_available() else "bf16"


def _counts(config, recipe, base_spec) -> tuple[str, int, int, int]:
    """(architecture, parameters, trainable parameters, parameters in linear layers) of the base with the recipe
    applied."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from ftassets.training.strategies import PeftStrategy, strategy_for

    remote = bool(getattr(base_spec, "trust_remote_code", False))
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote)
    model.tie_weights()  # on the meta device the tied head stays a separate tensor until told
    parameters = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    if linear and getattr(config, "tie_word_embeddings", False):
        head = model.get_output_embeddings()
        linear -= head.weight.numel() if head is not None else 0  # the tied head is the embedding: not quantized
    strategy = strategy_for(recipe)
    if not isinstance(strategy, PeftStrategy):
        return type(model).__name__, parameters, parameters, linear
    from peft import get_peft_model

    with init_empty_weights():
        peft_model = get_peft_model(model, strategy.peft_config(recipe, model))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    return type(model).__name__, parameters, trainable, linear


def _training_tokens(project, store, task, model, recipe) -> tuple[int, int | None, bool, int]:
    """(train examples, train tokens per epoch, whether counted, longest example) from the built splits, else
    from the task's configured size with every example at ``max_seq_length``."""
    manifest = read_manifest(store.path("tokenized_splits", model, task))
    if manifest and "stats" in manifest:
        train = manifest["stats"]["train"]
        return train["examples"], train["tokens"], True, train["max_length"]
    sizes = project.tasks[task].config.sizes
    examples = sizes.train if sizes is not None else 0
    return examples, examples * recipe.max_seq_length if examples else None, False, recipe.max_seq_length


def _activation_bytes(config, batch: int, sequence: int, compute_bytes: int, checkpointing: bool) -> int:
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    per_token_16bit = 34 * hidden + 5 * heads * sequence
    one_layer = batch * sequence * per_token_16bit * compute_bytes // 2
    kept = batch * sequence * hidden * compute_bytes * layers + one_layer if checkpointing else one_layer * layers
    logits = batch * sequence * config.vocab_size * 4 * 2  # fp32 logits and their gradient
    return kept + logits


def format_sizes(sizes: list[CellSize]) -> str:
    """The plan as a table, one line per cell, then the method."""
    header = ("entry", "task", "method", "architecture", "params", "trainable", "precision", "peak memory (est.)")
    rows = [header]
    notes = []
    for size in sizes:
        if size.note:
            notes.append(f"{size.model} [{size.task}]: {size.note}")
            continue
        tokens = (
            f"{size.train_tokens:,} tokens" if size.tokens_measured else f"<= {size.train_tokens:,} tokens (unbuilt)"
        )
        rows.append(
            (
                size.model,
                size.task,
                size.method or "",
                size.architecture or "",
                _count(size.parameters),
                f"{_count(size.trainable)} ({size.trainable / size.parameters:.2%})",
                size.precision,
                f"{size.peak_bytes / GIB:.2f} GiB on {size.device}",
            )
        )
        notes.append(
            f"{size.model} [{size.task}]: {size.train_examples} examples, {tokens} per epoch, {size.steps} steps; "
            f"weights {_gib(size.weights_bytes)}, gradients {_gib(size.gradient_bytes)}, AdamW "
            f"{_gib(size.optimizer_bytes)}, activations {_gib(size.activation_bytes)}"
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines + [""] + notes)


def _count(value: int | None) -> str:
    if value is None:
        return ""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)


def _gib(value: int) -> str:
    return f"{value / GIB:.3f} GiB"


def plan_note() -> str:
    return (
        "estimates: exact parameter counts; memory = weights + fp32 gradients and AdamW moments of the trainable "
        "parameters + activations (Korthikanti et al. 2022), without framework overhead; nothing was trained"
    )
