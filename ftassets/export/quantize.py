"""Quantize an f16 GGUF with llama.cpp's own quantizer (through llama-cpp-python), in a child process.

The child keeps llama.cpp's log (which names every tensor it could not K-quantize and the type it fell
back to) and keeps an abort inside llama.cpp from taking the caller's process down. What each tensor
ended up as is then read back from the written file, which is the authority on fallbacks.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gguf

FTYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
INTENDED_TYPES = {
    "f16": {"F16"},
    "q8_0": {"Q8_0"},
    "q4_0": {"Q4_0"},
    "q4_k_m": {"Q4_K", "Q5_K", "Q6_K"},
    "q5_k_m": {"Q5_K", "Q6_K"},
    "q6_k": {"Q6_K"},
}


class QuantizationError(RuntimeError):
    pass


@dataclass(frozen=True)
class TensorTypes:
    counts: dict[str, int]
    fallbacks: dict[str, str]
    """Matrices (2-D tensors) stored in a type outside the quantization's own family, by name."""


def quantize(source: Path, target: Path, quant_type: str, threads: int = 2) -> str:
    """Write ``target`` as ``quant_type`` from the f16/f32 GGUF ``source``; return llama.cpp's log."""
    if quant_type not in FTYPES:
        raise ValueError(f"quant type {quant_type!r} is not one of {', '.join(FTYPES)}")
    command = [sys.executable, "-m", "ftassets.export.quantize", str(source), str(target), quant_type, str(threads)]
    result = subprocess.run(command, capture_output=True, text=True)
    log = result.stdout + result.stderr
    if result.returncode != 0 or not Path(target).exists():
        raise QuantizationError(
            f"llama.cpp could not quantize {source} to {quant_type} (exit {result.returncode}): {log[-2000:]}"
        )
    return log


def tensor_types(path: Path, quant_type: str) -> TensorTypes:
    reader = gguf.GGUFReader(path)
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    intended = INTENDED_TYPES[quant_type]
    fallbacks = {
        t.name: t.tensor_type.name for t in reader.tensors if len(t.shape) > 1 and t.tensor_type.name not in intended
    }
    return TensorTypes(dict(sorted(counts.items())), fallbacks)


def fallback_log_lines(log: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if "fallback" in line.lower()]


def _main(source: str, target: str, quant_type: str, threads: str) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant_type])
    params.nthread = int(threads)
    return int(llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)))


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:]))
