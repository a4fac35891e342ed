"""Reduced-precision variants of a bundle's decoder.

``fp16`` converts the decoder's weights and arithmetic to float16 while its input and output
stay float32 (onnxruntime's own converter, which needs the ``onnx`` package). It is meant for
GPUs. Export runs it once and ships the result as ``decoder_fp16.onnx``, checked there against
torch; `open_models` runs it only for a bundle exported before 0.9.0, which has none.

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

from ..errors import DeepSMOTEError, InvalidInputError

PRECISIONS = ("fp32", "fp16")


def decoder_graph(graph: bytes, precision: str) -> bytes:
    """The decoder graph to run at ``precision``.

    Parameters
    ----------
    graph : bytes
        The bundle's float32 decoder.
    precision : {'fp32', 'fp16'}

    Raises
    ------
    DeepSMOTEError
        For an unknown precision, or fp16 without the ``onnx`` package.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"`precision` must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp32":
        return graph
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise DeepSMOTEError(
            "`precision` fp16 with a bundle exported before 0.9.0 (no decoder_fp16.onnx) needs the onnx package: "
            "pip install 'deepsmote[gpu]' or onnx, or export the bundle again"
        ) from None
    model = convert_float_to_float16(onnx.load_model_from_string(graph), keep_io_types=True)
    return model.SerializeToString()
