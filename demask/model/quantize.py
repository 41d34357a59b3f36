"""int8 CPU inference: dynamic int8 for the Linear layers of the Transformer's blocks.

``load_pretrained(path, dtype="int8")`` (``--dtype int8`` on the command line) loads the
weights in fp32, then replaces every ``nn.Linear`` inside the blocks by torch's dynamically
quantized one (int8 weights, per output channel; activations quantized per call; int8
matrix products through fbgemm). The embeddings, norms and the output head stay fp32 (the
head's logits decide the confidences every unmasking policy reads). CPU only.

Measured (docs/performance.md, benchmarks/quantization.py): on this project's 2-core Xeon the
int8 matrix products are hardly faster than fp32 ones, so int8 mostly saves memory here.
torch marks its eager quantization API as deprecated in favour of torchao; torchao's
``Int8DynamicActivationInt8WeightConfig`` measured slower on this CPU (1.4x the fp32 time at
64 rows), so demask keeps torch's own API while it exists.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

INT8_NAMES = ("int8", "qint8")


def is_int8(dtype: object) -> bool:
    return isinstance(dtype, str) and dtype.lower() in INT8_NAMES


def quantize_int8(model: nn.Module) -> nn.Module:
    """Quantize the Linear layers of ``model.model`` (the blocks) to dynamic int8, in place."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"dtype int8 runs on the CPU (its kernels are fbgemm's); the model is on {device}")
    model.float()
    with warnings.catch_warnings():  # torch's deprecation notices for its eager quantization API
        warnings.simplefilter("ignore")
        quantize_dynamic(model.model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    model.quantized = "int8"  # type: ignore[assignment]
    return model


def weights_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as held in memory (packed int8 weights included; tied
    tensors once)."""
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen[id(t)] = t.numel() * t.element_size()
    total = sum(seen.values())
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(module, "weight") and callable(module.weight):
            w = module.weight()
            total += w.numel() * w.element_size()
            bias = module.bias()
            total += 0 if bias is None else bias.numel() * bias.element_size()
    return total
