"""The performance benchmarks of issue #16 run to their summary against today's API.

Nothing else imports the scripts in ``benchmarks/``, so a change of the package's API breaks them
silently (0.9.1's lazy bundle did, for `model_flops.py`, until a run on a new machine). Tiny models
and a small GEMM ceiling here; the figures themselves come from the full runs the README quotes.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NUMBER = r"(\d+(?:\.\d+)?)"


def bounds(printed: str) -> tuple[float, float]:
    """The interval a non-negative figure printed as ``printed`` was rounded from (half a unit of its
    last digit, none below 0)."""
    half = 0.5 * 10.0 ** -len(printed.partition(".")[2])
    return max(float(printed) - half, 0.0), float(printed) + half


def ratio_bounds(numerator: str, denominator: str, scale: float = 1.0) -> tuple[float, float]:
    """The interval of ``scale * numerator / denominator`` for figures printed rounded (unbounded
    above where the denominator may be 0: a rate printed as 0.0 on a loaded machine)."""
    (a, b), (c, d) = bounds(numerator), bounds(denominator)
    return scale * a / d, scale * b / c if c > 0 else math.inf


def agrees(printed: str, interval: tuple[float, float]) -> bool:
    """Whether a printed figure could be the rounding of a value in ``interval``."""
    low, high = bounds(printed)
    return low <= interval[1] + 1e-12 and interval[0] - 1e-12 <= high


def check_figures(out: str) -> None:
    """Every figure printed is finite, every duration and images/s positive, every GFLOP/s at least 0
    (a tiny model's rate may print as 0.0 on a loaded machine; the ratios below bound it)."""
    assert not re.search(r"\b(nan|inf)\b", out, re.IGNORECASE), out
    durations = re.findall(NUMBER + r" (?:images/s|s/epoch)", out)
    assert durations and all(math.isfinite(float(r)) and float(r) > 0 for r in durations), out
    rates = re.findall(NUMBER + r" (?:useful )?GFLOP/s", out)
    assert rates and all(math.isfinite(float(r)) and float(r) >= 0 for r in rates), out


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
    check_figures(out)
    check_model_flops_arithmetic(out)


def check_model_flops_arithmetic(out: str) -> None:
    """Each share is its GFLOP/s over its run's ceilings, each median and range those of the runs' figures,
    and the decoders' ratio the median of the runs' images/s ratios: within the printed figures' rounding."""
    runs: list[dict[str, tuple[str, ...]]] = []
    for line in out.splitlines():
        run = re.match(rf"run \d+: float32 GEMM ceiling .*?: {NUMBER} GFLOP/s \(.*onnxruntime MatMul {NUMBER},", line)
        case = re.match(
            rf"  (.+?): {NUMBER} GFLOP/image, (\d+) images/s, {NUMBER} GFLOP/s = (\d+)% of the GEMM ceiling "
            rf"\((\d+)% of onnxruntime's own MatMul\)",
            line,
        )
        executed = re.match(rf"    executed: {NUMBER} GFLOP/s = (\d+)% of the GEMM ceiling", line)
        if run:
            runs.append({"ceiling": run.groups()})
        elif case:
            name, _, images, rate, share, own = case.groups()
            ceiling, matmul = runs[-1]["ceiling"]
            assert agrees(share, ratio_bounds(rate, ceiling, 100)), line
            assert agrees(own, ratio_bounds(rate, matmul, 100)), line
            runs[-1][name] = (images, share)
        elif executed:
            assert agrees(executed.group(2), ratio_bounds(executed.group(1), runs[-1]["ceiling"][0], 100)), line
    assert len(runs) == 2
    medians = out[out.index("medians of 2 runs") :]
    ceiling = re.search(rf"ceiling {NUMBER} GFLOP/s \({NUMBER}-{NUMBER}\)", medians).groups()
    values = sorted(float(r["ceiling"][0]) for r in runs)
    assert agrees(ceiling[0], (statistics.median(values) - 0.05, statistics.median(values) + 0.05))
    assert (float(ceiling[1]), float(ceiling[2])) == (values[0], values[-1])
    cases = re.findall(r"  (.+?): (\d+) images/s \((\d+)-(\d+)\), (\d+)% of the ceiling \((\d+)%-(\d+)%\)", medians)
    assert len(cases) == 3
    for name, images, low, high, share, share_low, share_high in cases:
        per_run = sorted(int(r[name][0]) for r in runs)
        assert abs(float(images) - statistics.median(per_run)) <= 1 and (int(low), int(high)) == tuple(per_run)
        shares = sorted(int(r[name][1]) for r in runs)
        assert abs(float(share) - statistics.median(shares)) <= 1 and (int(share_low), int(share_high)) == tuple(shares)
    cpu, plain = (
        "decoder_cpu.onnx on CPUExecutionProvider, batches of 16",
        "decoder.onnx on CPUExecutionProvider, batches of 256",
    )
    per_run = [ratio_bounds(r[cpu][0], r[plain][0]) for r in runs]
    median_bounds = statistics.median(lo for lo, _ in per_run), statistics.median(hi for _, hi in per_run)
    assert agrees(re.search(rf"median of per-run ratios {NUMBER}x", out).group(1), median_bounds), out


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
    check_figures(out)
    check_train_arithmetic(out, [case.rstrip(":") for case in cases])


def check_train_arithmetic(out: str, names: list[str]) -> None:
    """One round: each ratio is the ratio of the printed figures, each share its rate over the ceiling,
    each images/s the images over the seconds, within the printed figures' rounding."""
    summary = out[out.index("medians of 1 epochs:") :]
    ceiling = re.search(rf"float32 GEMM ceiling .*?: {NUMBER} GFLOP/s", out).group(1)
    images = re.search(r"^(\d+) images \(", out, re.MULTILINE).group(1)
    lines = re.findall(
        rf"  (.+?): {NUMBER} s/epoch \({NUMBER}-{NUMBER}\), (\d+) images/s, {NUMBER} useful GFLOP/s = (\d+)% of the "
        rf"float32 GEMM ceiling; {NUMBER}x the authors' loop in useful FLOP/s \({NUMBER}x in seconds per epoch\)",
        summary,
    )
    assert [name for name, *_ in lines] == names, summary
    authors = lines[0]
    for name, seconds, low, high, per_s, rate, share, flops_ratio, time_ratio in lines:
        assert low == seconds == high, name  # one epoch: its median and range are that epoch
        assert agrees(per_s, ratio_bounds(images, seconds)), name
        assert agrees(share, ratio_bounds(rate, ceiling, 100)), name
        assert agrees(flops_ratio, ratio_bounds(rate, authors[5])), name
        assert agrees(time_ratio, ratio_bounds(authors[1], seconds)), name
