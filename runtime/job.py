"""A generation job on disk: DATA and a bundle in, synthetic shards and ``summary.json`` out.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .bundle import default_decode_batch, import_onnxruntime, load_bundle, open_models, resolve_provider
from .engines import ENGINES, make_engine
from .layout import ImageLayout
from .outdir import OutputDir
from .plan import DEFAULT_SHARD_SIZE, Shard
from .readers import LabelledImages
from .resize import check_image_shape
from .strategy import new_sample_counts
from .synthesis import Synthesizer
from .writers import make_writer

__all__ = ["ENGINES", "JobSettings", "generate_dataset"]


@dataclass(frozen=True)
class JobSettings:
    """Everything that fixes a job's output bytes: OUT's fingerprint, and what the summary reports.

    A rerun whose settings equal those recorded in OUT resumes it; any difference is refused
    (unless ``overwrite``), naming the fields that differ.

    Attributes
    ----------
    deepsmote_version : str
        Another version may draw or search differently.
    provider : str
        The onnxruntime provider (CPU and CUDA may round differently).
    libraries : dict
        Versions of numpy, numba and onnxruntime, whose arithmetic and random streams reach the bytes.
    bundle : str
        The bundle's fingerprint.
    data : str
        The data's fingerprint (:meth:`LabelledImages.fingerprint`).
    new_counts : tuple of int
        Synthetic samples per class: the strategy, resolved once.
    k_neighbors, seed, shard_size : int
    format : str
    precision : str
    """

    deepsmote_version: str
    provider: str
    libraries: dict[str, str]
    bundle: str
    data: str
    new_counts: tuple[int, ...]
    k_neighbors: int
    seed: int
    format: str
    shard_size: int
    precision: str

    def as_json(self) -> dict[str, Any]:
        """The settings as the JSON object recorded in OUT."""
        return {**asdict(self), "new_counts": list(self.new_counts)}


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
    # A missing extra or a bad option is refused before the bundle is read or the sampler fitted.
    runner = make_engine(engine, engine_options or {})
    loaded = load_bundle(bundle)
    check_image_shape(data.image_shape, loaded.image_shape)
    counts = data.class_counts()
    new = new_sample_counts(sampling_strategy, counts, data.classes)
    settings = JobSettings(
        deepsmote_version=version("deepsmote"),
        provider=resolve_provider(provider),
        libraries=_byte_libraries(),
        bundle=loaded.fingerprint,
        data=data.fingerprint(),
        new_counts=tuple(int(n) for n in new),
        k_neighbors=k_neighbors,
        seed=seed,
        format=fmt,
        shard_size=shard_size,
        precision=precision,
    )
    output = OutputDir(Path(out), settings.as_json(), overwrite)
    output.check()
    make_writer(fmt, Path(out), data.classes)  # a bad format or class name is refused before any work
    models = open_models(loaded, provider, threads, precision)
    synthesizer = Synthesizer.fit(
        models,
        ImageLayout.of(data.images, loaded.image_shape),
        data.images,
        data.labels,
        list(data.classes),
        new,
        k_neighbors=k_neighbors,
        seed=seed,
        shard_size=shard_size,
        threads=threads,
        batch_size=batch_size,
        precision=precision,
    )
    fitted = time.perf_counter()
    shards = synthesizer.shards
    with output:
        todo = [s for s in shards if not output.is_done(s)]
        done_before = sum(s.count for s in shards) - sum(s.count for s in todo)
        with tqdm(total=int(new.sum()), initial=done_before, unit="img", desc="generate", disable=not progress) as bar:

            def advance(shard: Shard) -> None:
                bar.update(shard.count)

            try:
                engine_info = runner.run(synthesizer, todo, output, fmt, data.classes, advance)
            except KeyboardInterrupt as interrupt:
                # Ctrl-C or SIGTERM: finished shards stay (the writers leave no partial file), and
                # the caller is told how to finish the job.
                finished = sum(output.is_done(s) for s in shards)
                interrupt.add_note(
                    f"{finished} of {len(shards)} shards are finished and kept in {out}; "
                    "run the same job again to resume"
                    if finished
                    else "no shard was finished, nothing is kept"
                )
                raise
        generated = time.perf_counter()
        made = int(new.sum()) - done_before
        summary = {
            "deepsmote_version": settings.deepsmote_version,
            "bundle": {"path": str(loaded.path), "fingerprint": loaded.fingerprint},
            "classes": list(data.classes),
            "counts": {
                name: {"original": int(counts[c]), "synthetic": int(new[c]), "total": int(counts[c] + new[c])}
                for c, name in enumerate(data.classes)
            },
            "neighbors_used": {
                data.classes[c]: latents.n_neighbors for c, latents in enumerate(synthesizer.latents) if latents
            },
            "seed": seed,
            "k_neighbors": k_neighbors,
            "format": fmt,
            "shard_size": shard_size,
            "precision": precision,
            "settings": settings.as_json(),
            "shards": {"total": len(shards), "skipped_as_done": len(shards) - len(todo)},
            "engine": engine,
            "engine_info": engine_info,
            "provider": synthesizer.provider,
            "threads": threads,
            "batch_size": batch_size or default_decode_batch(synthesizer.provider),
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
