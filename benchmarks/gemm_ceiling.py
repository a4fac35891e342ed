"""The float32 GEMM ceiling: numpy's BLAS, onnxruntime's and torch's own MatMul, on the same threads.

    python benchmarks/gemm_ceiling.py [--threads 2] [--size 4096]

Machines may set ``OPENBLAS_CORETYPE`` (e.g. ``Haswell``) and ``OPENBLAS_L2_SIZE``, which pin
numpy's OpenBLAS to kernels older than the CPU's (AVX2 ones on an AVX-512 CPU) and so understate
the rate that throughput is divided by. `gemm_ceiling`, which the benchmarks call, therefore
measures in a subprocess (this script with ``--worker``) started without those two variables,
where OpenBLAS picks the kernels of the CPU it runs on; they are left as they are in the calling
process, the tests and CI. In that subprocess numpy's BLAS is limited to the threads asked for
with threadpoolctl, onnxruntime by its intra-op threads and torch by ``torch.set_num_threads``;
each product is (size x size) @ (size x size) into a preallocated output, the three timed in
turn, the median of the repeats kept. The subprocess imports no part of deepsmote, so the
ceiling does not depend on the package's state. Run as a script, this prints the ceiling beside
numpy's GEMM in the environment the script was started in, with the BLAS kernels that
threadpoolctl names for each.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Environment variables that pin OpenBLAS to a CPU type and a cache size other than the ones it
# runs on; the ceiling is measured without them.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class GemmCeiling:
    """float32 GEMM rates on one thread count, measured by `gemm_ceiling`.

    Attributes
    ----------
    threads : int
    size : int
        The products are size x size x size.
    numpy, onnxruntime, torch : float
        GFLOP/s of numpy's BLAS, onnxruntime's CPU ``MatMul`` and torch's ``mm`` (medians).
    blas : str
        The BLAS kernels numpy ran, as threadpoolctl names them ("openblas SkylakeX (2 threads)").
    """

    threads: int
    size: int
    numpy: float
    onnxruntime: float
    torch: float
    blas: str

    @property
    def rate(self) -> float:
        """The ceiling, GFLOP/s: the fastest of the three, so that none of them exceeds it."""
        return max(self.numpy, self.onnxruntime, self.torch)

    def describe(self) -> str:
        """One line naming the ceiling and its cross-checks."""
        return (
            f"float32 GEMM ceiling {self.size}^3 on {self.threads} threads: {self.rate:.1f} GFLOP/s "
            f"(numpy {self.numpy:.1f} with {self.blas}, onnxruntime MatMul {self.onnxruntime:.1f}, "
            f"torch mm {self.torch:.1f}; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)"
        )


def require_threadpoolctl() -> None:
    """Exit with an install hint where threadpoolctl, which the ceiling needs, is missing."""
    if importlib.util.find_spec("threadpoolctl") is None:
        raise SystemExit(
            "threadpoolctl is not installed: the GEMM ceiling needs it to limit numpy's BLAS to the "
            "benchmark's threads and to name the BLAS kernels. Install it with: pip install threadpoolctl"
        )


def gemm_ceiling(threads: int, size: int = 4096, repeats: int = 5, python: str = sys.executable) -> GemmCeiling:
    """The float32 GEMM ceiling on ``threads`` threads, measured in a subprocess.

    The subprocess runs this script with the calling process's environment less `OPENBLAS_PINS`,
    so that numpy's OpenBLAS runs the kernels of the CPU rather than those a variable pins it to.
    The calling process's environment is not changed.

    Parameters
    ----------
    threads : int
        Threads of each library: threadpoolctl's BLAS limit, onnxruntime's intra-op threads and
        ``torch.set_num_threads``.
    size : int
        Square products of this size.
    repeats : int
        Timed products per library, in turn with the others; the median is kept.
    python : str
        The interpreter of the subprocess: another environment's, where this one's libraries
        cannot measure it (onnxruntime-openvino 1.24.1's CPU provider crashed on a 4096^3 MatMul).

    Returns
    -------
    GemmCeiling
    """
    require_threadpoolctl()
    env = {name: value for name, value in os.environ.items() if name not in OPENBLAS_PINS}
    command = [python, __file__, "--worker", f"--threads={threads}", f"--size={size}", f"--repeats={repeats}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the GEMM ceiling subprocess failed:\n{done.stderr}")
    result = json.loads(done.stdout.splitlines()[-1])
    return GemmCeiling(
        threads, size, result["numpy"], result["onnxruntime"], result["torch"], kernel_names(result["blas"])
    )


def kernel_names(kernels: list[dict]) -> str:
    """threadpoolctl's BLAS entries as "openblas SkylakeX (2 threads)", comma-separated."""
    names = [f"{k['internal_api']} {k['architecture']} ({k['num_threads']} threads)" for k in kernels]
    return ", ".join(names) or "no BLAS found by threadpoolctl"


def blas_kernels() -> list[dict]:
    """threadpoolctl's description of the BLAS libraries loaded in this process."""
    from threadpoolctl import threadpool_info

    return [
        {key: info.get(key) for key in ("internal_api", "architecture", "num_threads")}
        for info in threadpool_info()
        if info["user_api"] == "blas"
    ]


def numpy_product(a: np.ndarray, b: np.ndarray) -> Callable[[], object]:
    """numpy's ``a @ b`` into a preallocated output (its BLAS threads are set by the caller)."""
    c = np.empty_like(a)
    return lambda: np.matmul(a, b, out=c)


def onnxruntime_product(a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    """onnxruntime's CPU ``MatMul`` of ``a`` by the initializer ``b`` on ``threads`` intra-op threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    size = a.shape[0]
    # The weights are an initializer, as in the decoder's MatMuls (onnxruntime prepacks them).
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(b, "w")],
    )
    # IR version 9 (opset 18's): a newer onnx package writes one that an older onnxruntime refuses.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    # A bound output, as numpy's and torch's, so that no call allocates and first-touches 64 MB.
    binding = session.io_binding()
    binding.bind_cpu_input("x", a)
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(np.empty_like(a)))
    return lambda: session.run_with_iobinding(binding)


def torch_product(a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    """torch's CPU ``mm`` into a preallocated output on ``threads`` intra-op threads."""
    import torch

    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty_like(ta)
    return lambda: torch.mm(ta, tb, out=tc)


def rates(products: dict[str, Callable[[], object]], size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of each size^3 product, the median of ``repeats`` after one warm-up call each."""
    for product in products.values():  # warm-up: thread pools, onnxruntime's prepacking
        product()
    times: dict[str, list[float]] = {name: [] for name in products}
    # In turn, so that a slow spell of this machine slows them all alike.
    for _ in range(repeats):
        for name, product in products.items():
            began = time.perf_counter()
            product()
            times[name].append(time.perf_counter() - began)
    return {name: 2 * size**3 / statistics.median(values) / 1e9 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help="internal: measure here, print JSON")
    args = parser.parse_args()
    require_threadpoolctl()
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.random((args.size, args.size), dtype=np.float32) for _ in range(2))
    if args.worker:
        products = {
            "numpy": numpy_product(a, b),
            "onnxruntime": onnxruntime_product(a, b, args.threads),
            "torch": torch_product(a, b, args.threads),
        }
        with threadpool_limits(limits=args.threads, user_api="blas"):
            result: dict[str, object] = {**rates(products, args.size, args.repeats), "blas": blas_kernels()}
        print(json.dumps(result), flush=True)
        # Out without the interpreter's teardown: torch beside onnxruntime-openvino's libraries
        # crashed there (exit 139) after the figures were printed.
        os._exit(0)
    ceiling = gemm_ceiling(args.threads, args.size, args.repeats)
    print(ceiling.describe())
    pins = ", ".join(f"{name}={os.environ[name]}" for name in OPENBLAS_PINS if name in os.environ) or "neither set"
    with threadpool_limits(limits=args.threads, user_api="blas"):
        rate = rates({"numpy": numpy_product(a, b)}, args.size, args.repeats)["numpy"]
        names = kernel_names(blas_kernels())
    print(
        f"numpy in this process's environment ({pins}): {rate:.1f} GFLOP/s with {names}, "
        f"{rate / ceiling.numpy:.0%} of the ceiling's numpy"
    )


if __name__ == "__main__":
    main()
