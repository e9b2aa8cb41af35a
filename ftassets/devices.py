"""Which accelerator to run on, and in which precision.

Training, evaluation and the local backend all ask here, so one preference string ("auto", "cpu",
"cuda", "cuda:1", "mps") means the same device everywhere.
"""

from __future__ import annotations

import resource
import sys

import torch


def resolve_device(preference: str = "auto") -> str:
    """Return a concrete torch device string; "auto" picks cuda, then mps, then cpu."""
    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind, _, index = preference.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} requested but CUDA is not available (torch {torch.__version__})")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(
                f"device {preference!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return preference
    if kind == "mps" and not index:
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {preference!r} requested but MPS is not available on this machine")
        return "mps"
    raise ValueError(f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def mixed_precision(device: str) -> str | None:
    """The autocast precision for training on ``device``: "bf16", "fp16", or None (plain fp32)."""
    if not device.startswith("cuda"):
        return None
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def inference_dtype(device: str) -> torch.dtype:
    """The dtype to hold frozen weights in: 16-bit on CUDA, fp32 elsewhere."""
    precision = mixed_precision(device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: str) -> float:
    """Peak accelerator memory on CUDA; the process's maximum resident set size elsewhere."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max_rss / 2**20 if sys.platform == "darwin" else max_rss / 2**10
