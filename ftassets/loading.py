"""Every load of a saved model folder (a base in the store, a merged model, a checkpoint) goes through here, so
``trust_remote_code`` reaches each one, not only the first copy of the base.

A base whose architecture ships its own code (``auto_map`` in its ``config.json`` or ``tokenizer_config.json``) is
only copied into the store when its entry sets ``trust_remote_code: true`` (``bases.py``); ``save_pretrained``
keeps its code files and its ``auto_map`` beside the weights. A folder with an ``auto_map`` is therefore loaded
with its code, and any other folder without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def remote_code(directory: Path) -> bool:
    """Whether the saved folder needs its own modeling or tokenizer code (an ``auto_map``)."""
    for name in ("config.json", "tokenizer_config.json"):
        path = Path(directory) / name
        try:
            if "auto_map" in json.loads(path.read_text()):
                return True
        except (OSError, ValueError):
            continue
    return False


def load_config(directory: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(directory, trust_remote_code=remote_code(directory))


def load_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, trust_remote_code=remote_code(directory))


def load_causal_lm(directory: Path, **kwargs: Any):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=remote_code(directory), **kwargs)
