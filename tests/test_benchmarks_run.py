"""The performance benchmarks of issue #16 run to their summary against today's API.

Nothing else imports the scripts in ``benchmarks/``, so a change of the package's API breaks them
silently (0.9.1's lazy bundle did, for `model_flops.py`, until a run on a new machine). Tiny models
and a small GEMM ceiling here; the figures themselves come from the full runs the README quotes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark(script: str, args: list[str], cache: Path) -> str:
    """stdout of ``benchmarks/script`` run with ``args`` and its bundles cached under ``cache``; it must exit 0."""
    env = {**os.environ, "DEEPSMOTE_BENCHMARK_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, script, *args], cwd=BENCHMARKS, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_model_flops_times_both_cpu_decoders(tmp_path):
    out = run_benchmark(
        "model_flops.py",
        ["--width", "4", "--latent-dim", "8", "--images", "64", "--runs", "2", "--ceiling-size", "512"],
        tmp_path,
    )
    assert "float32 GEMM ceiling 512^3 on 2 threads" in out
    cases = ("encoder, batches of", "decoder_cpu.onnx on CPUExecutionProvider, batches of 16")
    for case in (*cases, "decoder.onnx on CPUExecutionProvider, batches of 256"):
        assert out.count(case) == 3, out  # each run's line and the medians' line
    assert "the runtime's decoder / decoder.onnx on the CPU: median of per-run ratios" in out
    # The 28x28 paper model's decoder_cpu.onnx is Winograd's: its executed FLOPs are printed beside the useful ones.
    assert "useful GFLOP/image (the direct form's) by Winograd products: it executes" in out
    assert out.count("    executed: ") == 2, out
    assert (tmp_path / "bundle-w4-z8-export6" / "decoder_cpu.onnx").is_file()


@pytest.mark.parametrize("arch", ["paper", "resize-conv"])
def test_train_throughput_compares_with_the_authors_loop(tmp_path, arch):
    args = ["--arch", arch, "--width", "4", "--latent-dim", "8", "--images", "60", "--rounds", "1"]
    out = run_benchmark("train_throughput.py", [*args, "--precisions", "fp32", "--ceiling-size", "512"], tmp_path)
    assert "useful FLOPs per epoch" in out
    assert "round 1: authors' loop, fp32" in out
    summary = out[out.index("medians of 1 epochs:") :]
    cases = ["authors' loop, fp32:", "deepsmote train, fp32:"]
    # The paper's model on the CPU is also trained with `--conv winograd` by default.
    cases += ["deepsmote train, fp32, winograd:"] if arch == "paper" else []
    assert ("winograd" in out) == (arch == "paper"), out
    for case in cases:
        assert case in summary and "x the authors' loop in useful FLOP/s" in summary, out
