"""Prepare a base model directory: build the embedded model, or load and validate a Hugging Face model.

Either way the result is a ``save_pretrained`` directory with weights, tokenizer and chat template,
so every later step runs the same code for the embedded model and for Qwen, Llama, Phi or Mistral.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftassets.config.schemas import BaseConfig, EmbeddedBase, HuggingFaceBase


class BaseModelError(ValueError):
    pass


def prepare_base(name: str, base: BaseConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    if isinstance(base, EmbeddedBase):
        from ftassets.models.embedded import EmbeddedSpec, build_embedded_model

        spec = dataclasses.replace(EmbeddedSpec(), **base.spec_overrides())
        log(f"building the embedded base {name!r}: {spec}")
        build_embedded_model(out_dir, spec, log)
    elif isinstance(base, HuggingFaceBase):
        sources = _copy_pretrained(name, base, out_dir, log)
        return describe_model_dir(out_dir) | sources
    else:
        raise BaseModelError(f"base {name!r}: source {base.source!r} has no local weights to prepare")
    return describe_model_dir(out_dir)


def _copy_pretrained(name: str, base: HuggingFaceBase, out_dir: Path, log: Callable[[str], None]) -> dict[str, str]:
    """Load, validate and save the base into ``out_dir``; returns where its pad token and chat template came from."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log(f"loading base {name!r} from {base.id} (revision {base.revision or 'default'})")
    if Path(base.id).is_dir():
        _check_weight_files(name, Path(base.id))
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            base.id, revision=base.revision, trust_remote_code=base.trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            base.id, revision=base.revision, trust_remote_code=base.trust_remote_code, dtype="auto"
        )
    except OSError as error:
        raise BaseModelError(
            f"base {name!r} (configs/models.yaml bases.{name}.id = {base.id!r}) could not be loaded: {error}. "
            "Use a local directory with save_pretrained files, or a hub id on a machine that reaches the hub."
        ) from None
    except SafetensorError as error:
        raise BaseModelError(
            f"base {name!r} (configs/models.yaml bases.{name}.id = {base.id!r}): a weights file is unreadable "
            f"({error}); download it again (`hf download {base.id} --force-download`) and run again"
        ) from None
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise BaseModelError(
            f"base {name!r} ({base.id}) ships its own model code, which runs only when allowed: read it, then set "
            f"bases.{name}.trust_remote_code: true in configs/models.yaml"
        ) from None
    template = _apply_chat_template(name, base, tokenizer, model, log)
    padding = _ensure_pad_token(name, base, tokenizer, model, log)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"pad_token_source": padding, "chat_template_source": template}


def _apply_chat_template(name: str, base: HuggingFaceBase, tokenizer, model, log: Callable[[str], None]) -> str:
    """``bases.<name>.chat_template`` (a family's name or a Jinja template) over the tokenizer's own; returns where
    the template came from."""
    from ftassets.models.templates import FAMILY_TEMPLATES, apply_family_template, family_template

    family = family_template(base.chat_template)
    if family is not None:
        added = apply_family_template(tokenizer, model, family)
        log(
            f"base {name!r}: the {base.chat_template} chat template"
            + (f", special tokens {', '.join(added)} added and embeddings resized" if added else "")
        )
        return f"family:{base.chat_template}"
    if base.chat_template:
        tokenizer.chat_template = base.chat_template
        return "configs/models.yaml"
    if not tokenizer.chat_template:
        raise BaseModelError(
            f"base {name!r} ({base.id}) has no chat template; set bases.{name}.chat_template in configs/models.yaml "
            f"to a Jinja template or to a family's: {', '.join(FAMILY_TEMPLATES)}"
        )
    return "tokenizer"


PAD_TOKEN = "<|pad|>"


def _ensure_pad_token(name: str, base: HuggingFaceBase, tokenizer, model, log: Callable[[str], None]) -> str:
    """The tokenizer's own pad token, else ``bases.<name>.pad_token``'s choice applied to tokenizer and model: the
    eos token ("eos"), or a new ``<|pad|>`` token with the embeddings resized ("add"). Returns which it was."""
    if tokenizer.pad_token_id is not None:
        return "tokenizer"
    if base.pad_token == "eos":
        if tokenizer.eos_token_id is None:
            raise BaseModelError(
                f"base {name!r} ({base.id}) has neither a pad nor an eos token; set bases.{name}.pad_token: add in "
                "configs/models.yaml to add a dedicated pad token"
            )
        tokenizer.pad_token = tokenizer.eos_token
        log(f"base {name!r} has no pad token: padding with its eos token {tokenizer.eos_token!r} (pad_token: eos)")
    else:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
        log(f"base {name!r} has no pad token: added {PAD_TOKEN} as id {tokenizer.pad_token_id}, embeddings resized")
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return f"{base.pad_token} (bases.{name}.pad_token)"


def _check_weight_files(name: str, folder: Path) -> None:
    """Every ``*.safetensors`` file of a local base folder opens (its header covers the whole file), so a truncated
    or corrupt copy fails here by name instead of deep inside ``from_pretrained``."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except SafetensorError as error:
            raise BaseModelError(
                f"base {name!r} (configs/models.yaml bases.{name}.id): {path.name} in {folder} is truncated or "
                f"corrupt ({error}); download it again (or save_pretrained the model into {folder} again) and run again"
            ) from None


def describe_model_dir(model_dir: Path) -> dict[str, Any]:
    """Architecture, parameter count, special tokens and chat-template hash of a saved model."""
    import torch
    from safetensors import safe_open

    from ftassets.loading import load_config, load_tokenizer

    config = load_config(model_dir)
    tokenizer = load_tokenizer(model_dir)
    parameters = 0
    for shard in sorted(model_dir.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as handle:
            parameters += sum(torch.Size(handle.get_slice(key).get_shape()).numel() for key in handle.keys())
    template = tokenizer.chat_template or ""
    return {
        "architecture": (config.architectures or [config.model_type])[0],
        "model_type": config.model_type,
        "parameters": parameters,
        "hidden_size": getattr(config, "hidden_size", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "vocab_size": len(tokenizer),
        "tokenizer_class": type(tokenizer).__name__,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "chat_template": template,
    }
