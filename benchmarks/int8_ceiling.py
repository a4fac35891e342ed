"""How much an int8 decoder could gain on this CPU: onnxruntime's int8 GEMM vs its float32 GEMM.

    python benchmarks/int8_ceiling.py [--batch 32]

Times single-node graphs on one thread, for each matrix product of the paper-size decoder
(28x28x1, width 64, latent 300), at the shapes the CPU decoder runs them: float32 ``MatMul``
against ``MatMulInteger`` (uint8 activations times int8 weights, what onnxruntime's dynamic
quantization emits). The FLOP-weighted ratio is an upper bound on an int8 decoder's speed-up:
it leaves out quantizing the activations and everything that is not a product. Target (issue
#5): reduced precision >= 2.5x end to end. Without VNNI, x86 multiplies int8 pairs with
``vpmaddubsw`` and widens with ``vpmaddwd``: at most twice the multiply-adds of a float32 FMA.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
from _common import median_time
from onnx import TensorProto, helper, numpy_helper

# (name, M per image, K, N): the decoder's products. The linear layer is one row per image; the
# first transposed convolution is one row per input pixel (7 x 7); the second is written as the
# same form over its 10 x 10 input pixels, which is how an int8 version would have to run it.
PRODUCTS = (
    ("linear 300 -> 25,088", 1, 300, 25088),
    ("deconv 1 (512 -> 256 x 4 x 4)", 49, 512, 4096),
    ("deconv 2 (256 -> 128 x 4 x 4)", 100, 256, 2048),
)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def session(nodes: list, inputs: list, output_type: int, initializers: list) -> ort.InferenceSession:
    output = helper.make_tensor_value_info("y", output_type, None)
    graph = helper.make_graph(nodes, "product", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def product_times(m: int, k: int, n: int, rng: np.random.Generator) -> tuple[float, float]:
    """Median seconds of an (m x k) @ (k x n) product in float32 and in uint8 x int8."""
    weights = rng.standard_normal((k, n), dtype=np.float32)
    fp32 = session(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        TensorProto.FLOAT,
        [numpy_helper.from_array(weights, "w")],
    )
    int8 = session(
        [helper.make_node("MatMulInteger", ["x", "w", "x_zero"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])],
        TensorProto.INT32,
        [
            numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), "x_zero"),
        ],
    )
    x32 = rng.standard_normal((m, k), dtype=np.float32)
    x8 = rng.integers(0, 256, (m, k), dtype=np.uint8)
    return (
        median_time(lambda: fp32.run(None, {"x": x32}), repeats=7),
        median_time(lambda: int8.run(None, {"x": x8}), repeats=7),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32, help="images per call (the CPU decoder's default)")
    args = parser.parse_args()
    flags = cpu_flags()
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}) or ["none"]
    print(f"onnxruntime {ort.__version__}; AVX2: {'avx2' in flags}; VNNI/AMX: {', '.join(vnni)}")
    rng = np.random.default_rng(0)
    total32 = total8 = 0.0
    for name, rows, k, n in PRODUCTS:
        m = rows * args.batch
        t32, t8 = product_times(m, k, n, rng)
        total32, total8 = total32 + t32, total8 + t8
        gflop = 2 * m * k * n / 1e9
        print(
            f"{name}: {m} x {k} x {n}: float32 {gflop / t32:.1f} GFLOP/s, int8 {gflop / t8:.1f} GOP/s, "
            f"int8 {t32 / t8:.2f}x"
        )
    print(f"all products, one thread: int8 {total32 / total8:.2f}x float32 (upper bound; target 2.5x)")


if __name__ == "__main__":
    main()
