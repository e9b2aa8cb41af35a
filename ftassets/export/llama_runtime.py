"""Loading GGUF files into llama.cpp (llama-cpp-python) without its weight-repacking buffers.

On CPUs with AMX (Sapphire Rapids and later; our CI machines) llama.cpp repacks quantized matrices into
an AMX buffer by default, and the first matrix product on it segfaults (ggml-org/llama.cpp#20824,
reproduced here with llama-cpp-python 0.3.36 on q8_0 and q4_k_m files; f16 is unaffected). Neither
``Llama`` nor ``llama_cpp.server`` exposes llama.cpp's ``use_extra_bufts`` (the ``--no-repack`` flag),
so model parameters are built with it off while a model loads. The plain CPU buffers compute the same
results, a little slower.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

_patch_lock = threading.Lock()


@contextlib.contextmanager
def without_weight_repacking() -> Iterator[None]:
    import llama_cpp.llama as llama_module

    bindings = llama_module.llama_cpp
    with _patch_lock:
        default_params = bindings.llama_model_default_params

        def params_without_repacking():
            params = default_params()
            params.use_extra_bufts = False
            return params

        bindings.llama_model_default_params = params_without_repacking
        try:
            yield
        finally:
            bindings.llama_model_default_params = default_params


def default_threads() -> int:
    """llama.cpp threads: ``OMP_NUM_THREADS`` where the caller pinned it (the test workers do), else up to two cores;
    more threads than free cores make llama.cpp's spinning workers wait for each other."""
    pinned = os.environ.get("OMP_NUM_THREADS", "")
    return int(pinned) if pinned.isdigit() and int(pinned) > 0 else min(2, os.cpu_count() or 1)


def load_llama(path: Path, n_ctx: int, threads: int, logits_all: bool = True):
    """A ``llama_cpp.Llama`` on ``path`` keeping every position's logits (for parity against transformers)."""
    from llama_cpp import Llama

    with without_weight_repacking():
        return Llama(
            model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, logits_all=logits_all, verbose=False
        )
