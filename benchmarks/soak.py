"""Soak test: generate a large job twice and check identical bytes, flat memory and no leaked files.

Each run is a `deepsmote generate` child process writing WebDataset shards; while it runs, its
resident memory (VmRSS), open file descriptors (/proc/PID/fd) and progress (shards marked done)
are sampled. The figures printed are the memory at 10 %, 50 % and 100 % of the job, the peak
(VmHWM), descriptors at the first and last sample, the throughput, and whether every shard of the
second run has the sha256 of the first. The checks: identical bytes, memory growth from 10 % to
the end under ``--max-growth`` (so memory does not scale with N), and no more descriptors at the
end than at the start. Not part of `make test`::

    .venv/bin/python benchmarks/soak.py --images 1000000
    .venv/bin/python benchmarks/soak.py --images 100000 --bundle my.bundle --data train-images-idx3-ubyte.gz

Without ``--bundle`` a tiny bundle (width 8, latent 16, 1 epoch) is trained first, which needs the
training extra; the soak itself is torch-free.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepsmote.data import fmnist_mini
from deepsmote.runtime.outdir import done_marks
from deepsmote.runtime.readers import read_dataset

MiB = 1 << 20


@dataclass
class Sample:
    """One look at the running job."""

    seconds: float
    images_done: int
    rss_mib: float
    fds: int


@dataclass
class Run:
    """What one generate run did and used."""

    seconds: float
    samples: list[Sample] = field(default_factory=list)
    peak_mib: float = 0.0

    def rss_at(self, fraction: float, total: int) -> float:
        """Resident memory at the first sample with ``fraction`` of the images done (else the last)."""
        return next((s.rss_mib for s in self.samples if s.images_done >= fraction * total), self.samples[-1].rss_mib)


def _status_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def run_job(args: list[str], out: Path, shard_size: int, interval: float) -> Run:
    """Run `deepsmote generate` with ``args``, sampling its memory, descriptors and progress."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "deepsmote.runtime.cli", *args], stdout=subprocess.DEVNULL)
    run = Run(seconds=0.0)
    while process.poll() is None:
        try:
            shards = len(done_marks(out))
            # Only once shards are being written is the process in its steady state.
            if shards:
                sample = Sample(
                    time.perf_counter() - started,
                    shards * shard_size,
                    _status_mib(process.pid, "VmRSS"),
                    len(os.listdir(f"/proc/{process.pid}/fd")),
                )
                run.samples.append(sample)
                run.peak_mib = _status_mib(process.pid, "VmHWM")
        except (FileNotFoundError, ProcessLookupError, KeyError):
            break  # the process ended between poll() and the read
        time.sleep(interval)
    if process.wait() != 0:
        raise SystemExit(f"generate failed with status {process.returncode}")
    run.seconds = time.perf_counter() - started
    return run


def shard_digests(out: Path) -> dict[str, str]:
    """sha256 of each shard file."""
    digests = {}
    for path in sorted(out.glob("*.tar")):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(MiB), b""):
                digest.update(chunk)
        digests[path.name] = digest.hexdigest()
    return digests


def tiny_bundle(workdir: Path, data: Path) -> Path:
    bundle = workdir / "bundle"
    tiny = ["--epochs", "1", "--width", "8", "--latent-dim", "16", "--device", "cpu"]
    subprocess.run(
        [sys.executable, "-m", "deepsmote.runtime.cli", "train", str(data), "--out", str(bundle), *tiny],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000, help="synthetic images per run")
    parser.add_argument("--bundle", type=Path, help="bundle to use (default: train a tiny one)")
    parser.add_argument("--data", type=Path, default=fmnist_mini(), help="DATA (default: the embedded subset)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, help="--threads for generate (default: all cores)")
    parser.add_argument("--workdir", type=Path, help="where the outputs go (default: a temporary directory)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth from 10%% to the end")
    parser.add_argument("--keep", action="store_true", help="keep the outputs")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="deepsmote-soak-", dir=args.workdir))
    try:
        bundle = args.bundle or tiny_bundle(workdir, args.data)
        data = read_dataset(args.data)
        counts = data.class_counts()
        share, extra = divmod(args.images, len(data.classes))
        # Fill each class by the same number of new images: a target is the count after resampling.
        strategy = {name: int(counts[c]) + share + (1 if c < extra else 0) for c, name in enumerate(data.classes)}
        print(
            f"soak: {args.images} images per run, {len(data.classes)} classes, shard size {args.shard_size}, "
            f"bundle {bundle}, DATA {args.data}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        runs, digests = [], []
        for number in (1, 2):
            out = workdir / f"out{number}"
            job = [
                str(bundle),
                str(args.data),
                "--out",
                str(out),
                "--format",
                "webdataset",
                "--quiet",
                "--synthetic-only",
            ]
            job += ["--strategy", json.dumps(strategy), "--shard-size", str(args.shard_size)]
            job += ["--threads", str(args.threads)] if args.threads else []
            run = run_job(["generate", *job], out, args.shard_size, args.interval)
            runs.append(run)
            digests.append(shard_digests(out))
            fds = (run.samples[0].fds, run.samples[-1].fds) if run.samples else (0, 0)
            rss = [run.rss_at(f, args.images) for f in (0.1, 0.5, 1.0)] if run.samples else [0.0] * 3
            print(
                f"run {number}: {args.images} images in {run.seconds:.1f} s ({args.images / run.seconds:.0f} img/s); "
                f"RSS MiB at 10%/50%/100%: {rss[0]:.1f}/{rss[1]:.1f}/{rss[2]:.1f}, peak {run.peak_mib:.1f}; "
                f"open fds {fds[0]} -> {fds[1]}; {len(run.samples)} samples"
            )
        total_bytes = sum(p.stat().st_size for p in (workdir / "out1").glob("*.tar"))
        identical = digests[0] == digests[1] and len(digests[0]) > 0
        combined = hashlib.sha256("".join(digests[0][k] for k in sorted(digests[0])).encode()).hexdigest()
        print(
            f"bytes: {len(digests[0])} shards, {total_bytes / 1e9:.2f} GB per run, identical: "
            f"{'yes' if identical else 'NO'} (sha256 over shard hashes {combined[:16]})"
        )
        failures = [] if identical else ["the two runs wrote different bytes"]
        for number, run in enumerate(runs, 1):
            if not run.samples:
                failures.append(f"run {number}: too short to sample; use more --images or a shorter --interval")
                continue
            early, end = run.rss_at(0.1, args.images), run.samples[-1].rss_mib
            if end > early * (1 + args.max_growth):
                failures.append(f"run {number}: RSS grew from {early:.1f} to {end:.1f} MiB")
            if run.samples[-1].fds > run.samples[0].fds:
                failures.append(f"run {number}: open fds grew from {run.samples[0].fds} to {run.samples[-1].fds}")
        print("soak: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
        if failures:
            raise SystemExit(1)
    finally:
        if args.keep:
            print(f"outputs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
