"""LoRA layers computed with one fused multiply-accumulate instead of peft's three passes.

peft computes an adapted linear layer as ``base(x) + lora_B(lora_A(dropout(x))) * scaling``. Besides
the two rank-r matmuls, that makes one full pass over the layer's output for the scaling and another
for the sum, and the backward makes a third for the scaling. ``result.addmm_(h, B.T, alpha=s)`` adds
the same term in place, inside the GEMM (C += s * h @ B.T), and autograd applies ``s`` to the rank-r
side of the backward, so the function, the parameters and the saved adapter are exactly peft's.
Unsloth's ``matmul_lora`` fuses LoRA layers the same way.

Only the plain case is fused: one active vanilla LoRA adapter, not merged, on an ``nn.Linear``, with no
per-row ``adapter_names``. Anything else (DoRA and the other variants, a quantized base, adapters
disabled or merged, several adapters at once) runs peft's own forward, decided at every call.
"""

from __future__ import annotations

import types

import torch
from peft.tuners.lora.layer import Linear as LoraLinear


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Give every plain peft LoRA ``Linear`` of ``model`` the fused forward; returns how many it changed."""
    fused = 0
    for module in model.modules():
        if type(module) is LoraLinear and type(module.base_layer) is torch.nn.Linear and not module.lora_variant:
            module.forward = types.MethodType(_fused_forward, module)
            fused += 1
    return fused


def _single_plain_adapter(layer: LoraLinear) -> str | None:
    """The one active vanilla LoRA adapter that the fused path can compute, or None."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1 or active[0] in layer.lora_variant or layer.lora_B[active[0]].bias is not None:
        return None
    return active[0]


def _fused_forward(self: LoraLinear, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapter = None if args or kwargs else _single_plain_adapter(self)
    if adapter is None:
        return LoraLinear.forward(self, x, *args, **kwargs)
    lora_A, lora_B = self.lora_A[adapter], self.lora_B[adapter]
    rows = x.reshape(-1, x.shape[-1])  # 2-D throughout, so the in-place sum below is not on a view
    result = self.base_layer(rows)
    hidden = lora_A(self.lora_dropout[adapter](self._cast_input_dtype(rows, lora_A.weight.dtype)))
    if hidden.dtype != result.dtype and not torch.is_autocast_enabled(result.device.type):
        result = (result + lora_B(hidden) * self.scaling[adapter]).to(result.dtype)  # peft's arithmetic
    else:
        # In place: the base layer's backward needs its inputs, not its output, so the sum can overwrite it.
        result.addmm_(hidden.to(result.dtype), lora_B.weight.t().to(result.dtype), alpha=self.scaling[adapter])
    return result.view(*x.shape[:-1], result.shape[-1])
