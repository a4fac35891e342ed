"""The decoder's images converted to uint8 pixels inside onnxruntime, on the decoder's device.

`Models.decode_pixels` gives the bytes of ``from_model(decode(z))``: rint((clip(x, -1, 1) + 1)
x 127.5) as uint8, channels last. Converted on the host, every image crosses from the GPU as
float32 (4 bytes a pixel) and costs a CPU core its clip, shift, scale, rounding, cast and
transpose, in a loop that waits for the GPU while the host works. Here the decoder's output stays
where the decoder ran (onnxruntime's IO binding) and a second session, of ``pixels.onnx``, does the
same float32 arithmetic there, so only the uint8 pixels come back (a quarter of the bytes) and the
host copies them once. The graph also reduces ``image - image`` over the batch: 0 where every value
is finite, NaN otherwise, so the decoder's output is still checked without bringing it back.

``pixels.onnx`` ships with the package: a graph of eight standard operators (opset 13), built by
``deepsmote.training.pixel_graph`` (the runtime does not import the ``onnx`` package, whose import
alone takes 0.8-2.4 s). Each of its operations is one IEEE float32 operation per value, as numpy's
are, and onnxruntime rounds half to even as ``np.rint`` does, so the bytes are numpy's (tested on
the CPU provider, at every rounding boundary).

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PIXEL_GRAPH_FILE = "pixels.onnx"
PIXEL_INPUT = "image"
PIXEL_OUTPUT = "pixels"
FINITE_CHECK = "finite_check"

# Where a decoder session's output stays for the pixel session, by provider.
DEVICES = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda"}


@cache
def pixel_graph() -> bytes:
    """The bytes of the shipped ``pixels.onnx``."""
    return (Path(__file__).parent / PIXEL_GRAPH_FILE).read_bytes()
