"""Build ``pixels.onnx``, the graph that turns decoded images into uint8 pixels on their device.

The runtime ships the file (``runtime/bundle/pixels.onnx``) and reads it without the ``onnx``
package; this module is how it was made, and a test checks that the shipped file is this graph.
Rebuild it with::

    python -m deepsmote.training.pixel_graph runtime/bundle/pixels.onnx

Input ``image``: float32 (N, C, H, W). Outputs ``pixels``: uint8 (N, H, W, C), the bytes of
``deepsmote.runtime.pixels.from_model`` (clip to [-1, 1], add 1, multiply by 127.5, round half to
even, cast, channels last); ``finite_check``: float32 scalar, the sum of ``image - image``, 0 where
every value is finite and NaN otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
from deepsmote.runtime.bundle.pixel_session import FINITE_CHECK, PIXEL_INPUT, PIXEL_OUTPUT
from onnx import TensorProto, helper

# Fixed rather than the installed onnx package's defaults, so the bytes do not depend on its version.
OPSET = 13
IR_VERSION = 7


def build_pixel_graph() -> onnx.ModelProto:
    """The pixel conversion graph (module docstring), checked by ``onnx.checker``."""
    scalars = {"low": -1.0, "high": 1.0, "one": 1.0, "half_range": 127.5}
    nodes = [
        helper.make_node("Clip", [PIXEL_INPUT, "low", "high"], ["clipped"]),
        helper.make_node("Add", ["clipped", "one"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "half_range"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Cast", ["rounded"], ["levels"], to=TensorProto.UINT8),
        helper.make_node("Transpose", ["levels"], [PIXEL_OUTPUT], perm=[0, 2, 3, 1]),
        helper.make_node("Sub", [PIXEL_INPUT, PIXEL_INPUT], ["zeros"]),
        helper.make_node("ReduceSum", ["zeros"], [FINITE_CHECK], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "deepsmote-pixels",
        [helper.make_tensor_value_info(PIXEL_INPUT, TensorProto.FLOAT, ["N", "C", "H", "W"])],
        [
            helper.make_tensor_value_info(PIXEL_OUTPUT, TensorProto.UINT8, ["N", "H", "W", "C"]),
            helper.make_tensor_value_info(FINITE_CHECK, TensorProto.FLOAT, []),
        ],
        [helper.make_tensor(name, TensorProto.FLOAT, [], [value]) for name, value in scalars.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="deepsmote"
    )
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m deepsmote.training.pixel_graph OUT.onnx")
    Path(sys.argv[1]).write_bytes(build_pixel_graph().SerializeToString())
