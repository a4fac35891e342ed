"""A generation job on disk: DATA and a bundle in, synthetic shards and ``summary.json`` out."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .bundle import load_bundle
from .errors import DeepSMOTEError
from .models import default_decode_batch
from .outdir import OutputDir
from .plan import DEFAULT_SHARD_SIZE, Shard
from .readers import LabelledImages
from .sampler import DeepSMOTE
from .session import import_onnxruntime, resolve_provider
from .strategy import new_sample_counts
from .writers import make_writer

ENGINES = ("local", "ray")


def _byte_libraries() -> dict[str, str]:
    """Versions of the libraries whose arithmetic or random streams reach the output bytes."""
    # onnxruntime-gpu installs the same module under another distribution name; numba's version
    # is read without importing it (a small job never loads numba).
    return {"numpy": np.__version__, "numba": version("numba"), "onnxruntime": import_onnxruntime().__version__}


def generate_dataset(
    bundle: str | os.PathLike,
    data: LabelledImages,
    out: str | os.PathLike,
    *,
    sampling_strategy: str | Mapping[str, int] = "auto",
    k_neighbors: int = 5,
    seed: int = 0,
    fmt: str = "imagefolder",
    provider: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    precision: str = "fp32",
    engine: str = "local",
    engine_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the synthetic samples of ``data`` into ``out``, resuming an interrupted job.

    Parameters
    ----------
    bundle : path-like
        The model bundle.
    data : LabelledImages
        The real images, uint8 (N, H, W[, C]).
    out : path-like
        Output directory; created, resumed, or refused (see :class:`OutputDir`).
    sampling_strategy : str or dict
        A strategy name or ``{class name: count after resampling}``.
    engine : {'local', 'ray'}
        Where shards run; ``engine_options`` go to the engine (Ray: ``address``, ``workers``,
        ``cpus_per_worker``, ``gpus_per_worker``, ``max_retries``).

    Returns
    -------
    dict
        The summary, also written to ``out/summary.json``.
    """
    start = time.perf_counter()
    if engine not in ENGINES:
        raise DeepSMOTEError(f"--engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    if engine == "ray":
        # A missing extra is refused before the bundle is read or the sampler fitted.
        from .engines.ray import import_ray

        import_ray()
    loaded = load_bundle(bundle)
    if data.image_shape != loaded.image_shape:
        raise DeepSMOTEError(
            f"DATA images are {'x'.join(map(str, data.image_shape))} (CxHxW) but the bundle was trained on "
            f"{'x'.join(map(str, loaded.image_shape))}; use a bundle trained on this kind of image"
        )
    counts = data.class_counts()
    new = new_sample_counts(sampling_strategy, counts, data.classes)
    settings = {
        # Another version may draw or search differently, another provider or onnxruntime may
        # round differently: resuming such a job would mix outputs.
        "deepsmote_version": version("deepsmote"),
        "provider": resolve_provider(provider),
        "libraries": _byte_libraries(),
        "bundle": loaded.fingerprint,
        "data": data.fingerprint(),
        "new_counts": new.tolist(),
        "k_neighbors": k_neighbors,
        "seed": seed,
        "format": fmt,
        "shard_size": shard_size,
        "precision": precision,
    }
    output = OutputDir(Path(out), settings, overwrite)
    output.check()
    writer = make_writer(fmt, Path(out), data.classes)
    targets = {c: int(counts[c] + new[c]) for c in range(len(counts))}
    sampler = DeepSMOTE(loaded, targets, k_neighbors, seed, provider, batch_size, threads, shard_size, precision).fit(
        data.images, data.labels
    )
    fitted = time.perf_counter()
    with output:
        todo = [s for s in sampler.shards_ if not output.is_done(s)]
        done_before = sum(s.count for s in sampler.shards_) - sum(s.count for s in todo)
        with tqdm(total=int(new.sum()), initial=done_before, unit="img", desc="generate", disable=not progress) as bar:

            def advance(shard: Shard) -> None:
                bar.update(shard.count)

            engine_info: dict[str, Any] = {}
            try:
                if engine == "local":
                    from .engines.local import run_local

                    run_local(sampler, todo, writer, output, advance)
                else:
                    from .engines.ray import run_ray

                    options = dict(engine_options or {})
                    engine_info = run_ray(sampler, todo, fmt, data.classes, output, advance, **options)
            except KeyboardInterrupt as interrupt:
                # Ctrl-C or SIGTERM: finished shards stay (the writers leave no partial file), and
                # the caller is told how to finish the job.
                finished = sum(output.is_done(s) for s in sampler.shards_)
                interrupt.add_note(
                    f"{finished} of {len(sampler.shards_)} shards are finished and kept in {out}; "
                    "run the same job again to resume"
                    if finished
                    else "no shard was finished, nothing is kept"
                )
                raise
        generated = time.perf_counter()
        made = int(new.sum()) - done_before
        summary = {
            "deepsmote_version": version("deepsmote"),
            "bundle": {"path": str(loaded.path), "fingerprint": loaded.fingerprint},
            "classes": list(data.classes),
            "counts": {
                name: {"original": int(counts[c]), "synthetic": int(new[c]), "total": int(counts[c] + new[c])}
                for c, name in enumerate(data.classes)
            },
            "neighbors_used": {
                data.classes[c]: latents.n_neighbors for c, latents in enumerate(sampler.latents_) if latents
            },
            "seed": seed,
            "k_neighbors": k_neighbors,
            "format": fmt,
            "shard_size": shard_size,
            "precision": precision,
            "shards": {"total": len(sampler.shards_), "skipped_as_done": len(sampler.shards_) - len(todo)},
            "engine": engine,
            "engine_info": engine_info,
            "provider": sampler.provider_,
            "threads": threads,
            "batch_size": batch_size or default_decode_batch(sampler.provider_),
            "timings_s": {
                "load_and_fit": round(fitted - start, 3),
                "generate": round(generated - fitted, 3),
                "total": round(generated - start, 3),
            },
            "images_generated_this_run": made,
            "images_per_s": round(made / max(generated - fitted, 1e-9), 1),
        }
        output.write_json("summary.json", summary)
    return summary
