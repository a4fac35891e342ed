"""Training precision (`--precision`): float32, or mixed precision with bfloat16 or float16.

``fp32`` runs every operation in float32; it is the default, and the one whose runs are the same
bytes for the same seed and resume bit for bit on the CPU. ``bf16`` and ``fp16`` run the encoder
and the decoder under ``torch.autocast``: their convolutions and matrix products take 16-bit inputs
and accumulate in float32; the weights, the optimizer's state, BatchNorm and the loss stay float32
(:func:`deepsmote.training.loss.distance` computes in float32 whatever its inputs). One exception:
on a CPU with AMX the encoder stays float32. On the Xeon of the README (AMX) oneDNN's bfloat16
weight gradients of the encoder's small strided maps (7x7 → 3x3 → 1x1) took 20-30 times as long
as float32's (AMX ``brgconv_bwd_w``), so that autocasting both models made a step slower than fp32
(0.77x CPU time) where the decoder alone made it faster (1.26x). Without AMX there is no such
kernel: on a 2-core AVX-512 EPYC Zen 5 (``avx512_bf16``, no AMX), channels-last, the encoder's
forward and backward at batch 100 took 35 ms in bfloat16 against 54 ms in float32, and a
paper-size step with both models in bfloat16 ran 1.11x as fast as with the decoder alone.
On a later AMX Xeon (480 MiB L3) the same AMX kernel took 1.5x float32's time (17.4 against 11.2 ms
for the encoder's last layer at batch 100) and both models in bfloat16 ran 1.05x as fast as the
decoder alone; the rule stays, as it costs 5% there and saved 1.6x on the first.
``fp16``'s narrow exponent needs the loss scaled (``torch.amp.GradScaler``); bfloat16 has
float32's exponent and needs no scaling.

Where each runs: ``bf16`` on CUDA GPUs that support it and on CPUs with bfloat16 instructions
(AVX512_BF16 or AMX_BF16; torch's oneDNN answers whether it has them), ``fp16`` on CUDA only
(a CPU's float16 products are no faster than its bfloat16 ones where they exist at all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from deepsmote.runtime.errors import DeepSMOTEError, InvalidInputError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions that torch's oneDNN kernels use (AVX512_BF16, AMX)."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and supported is not None and supported())


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles, where oneDNN's bfloat16 encoder gradients are slow (module docstring)."""
    supported = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(supported is not None and supported())


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision that ``device`` cannot run fast.

    Raises
    ------
    DeepSMOTEError
        For an unknown precision, ``fp16`` on the CPU, ``bf16`` on a CPU without bfloat16
        instructions or on a GPU without bfloat16 support.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise DeepSMOTEError(
            "`precision` fp16 runs on CUDA GPUs only; use `precision` bf16 on a CPU with bfloat16 instructions, or fp32"
        )
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise DeepSMOTEError(
            "`precision` bf16: this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo), "
            "where bfloat16 would only be slower; use `precision` fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeepSMOTEError("`precision` bf16: this GPU does not support bfloat16; use `precision` fp16 or fp32")


def in_precision(module: Callable[[torch.Tensor], torch.Tensor], precision: str, device: torch.device) -> Callable:
    """``module`` itself for fp32; for bf16 and fp16, a function calling it under ``torch.autocast``."""
    if precision == "fp32":
        return module
    dtype = _DTYPES[precision]

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return module(x)

    return run


def in_training_precision(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    decoder: Callable[[torch.Tensor], torch.Tensor],
    precision: str,
    device: torch.device,
) -> tuple[Callable, Callable]:
    """The encoder and the decoder as training runs them in ``precision``.

    Both under autocast for bf16 and fp16, except the encoder on a CPU with AMX, which stays
    float32 (module docstring); both themselves for fp32.
    """
    keep_encoder = device.type == "cpu" and cpu_has_amx()
    encode = encoder if keep_encoder else in_precision(encoder, precision, device)
    return encode, in_precision(decoder, precision, device)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler: active for fp16 only; a disabled scaler passes the loss and the steps through."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
