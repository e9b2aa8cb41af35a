"""Known-harmless library warnings, silenced where they are raised and nowhere else.

Each filter names the exact message and says why it is noise for us; any other warning still shows.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class _DropMessages(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


# bitsandbytes logs this when it imports (through peft) on a CPU with AVX512-BF16: the optional hub kernel
# is absent, so 4-bit matmuls use its built-in CPU path, which gives the same results; installing
# `kernels` would download code from a hub at run time, which we do not want.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    _DropMessages("Failed to load CPU gemm_4bit_forward from kernels-community")
)

# Checkpoints are named checkpoint-<step>, so numerical ordering is the order we want anyway.
_CHECKPOINT_ORDER = _DropMessages("mtime may not be reliable on this filesystem")


@contextmanager
def known_harmless_warnings() -> Iterator[None]:
    """Silence, inside the block, the warnings a default training or evaluation raises that need no action."""
    trainer_utils = logging.getLogger("transformers.trainer_utils")
    trainer_utils.addFilter(_CHECKPOINT_ORDER)
    try:
        with warnings.catch_warnings():
            # peft 0.21 calls transformers 5's old gradient-checkpointing names, kept as aliases until
            # transformers 6; the aliases do exactly what the new names do.
            for old_name in ("is_gradient_checkpointing", "gradient_checkpointing_enable"):
                warnings.filterwarnings(
                    "ignore", message=f"`{old_name}` is deprecated", category=FutureWarning, module="transformers"
                )
            # QLoRA on CPU: torch warns when backward passes through a bitsandbytes 4-bit op without its own
            # autograd kernel. The gradients are right: LoRA gradients through the 4-bit layers match those
            # of an fp32 model holding the dequantized weights (exactly with fp32 compute).
            warnings.filterwarnings(
                "ignore",
                message=r"bitsandbytes::ge[mv]{2}_4bit: an autograd kernel was not registered",
                category=UserWarning,
            )
            yield
    finally:
        trainer_utils.removeFilter(_CHECKPOINT_ORDER)
