"""A generation job on disk: DATA and a bundle in, synthetic shards and ``summary.json`` out.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from deepsmote.kernels import preload_knn
from tqdm import tqdm

from .atomic import atomic_path
from .bundle import (
    CLASSIFIER_FILE,
    default_decode_batch,
    import_onnxruntime,
    load_bundle,
    open_models,
    resolve_provider,
)
from .codes import LatentCache, codes_of
from .console import LineProgress
from .engines import ENGINES, make_engine
from .errors import DeepSMOTEError, InvalidInputError
from .gate import DEFAULT_MAX_DRAW_RATIO, check_ratio, check_threshold
from .latent_samplers import check_sampler
from .layout import ImageLayout
from .mixing import split
from .outdir import JOB_FILE, MANIFEST_FILE, OutputDir
from .plan import DEFAULT_SHARD_SIZE, Unit, UnitPlan, plan_mixed, plan_per_class
from .readers import LabelledImages
from .remix import RemixSettings, check_remix_gate
from .resize import check_image_shape
from .strategy import new_sample_counts
from .stream import ImageSource
from .synthesis import Synthesizer, check_class_size, draw_counts, encoded_classes
from .writers import MIXED_FORMATS, UnitWriter, check_capacity, make_writer, write_error

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
    include_originals : bool
        Whether OUT holds the originals too (the whole balanced set).
    sampler : str
        The latent sampler (`latent_samplers`): which codes serve as bases.
    filter_threshold : float or None
        The quality gate's threshold (:mod:`.gate`); None without the gate.
    max_draw_ratio : int
        The gate's bound on candidates drawn per sample kept.
    synthetic_share : float
        The share of each class's new samples that is synthetic, the rest real repeats (:mod:`.mixing`).
    remix : dict or None
        Latent Remix's settings (:class:`.remix.RemixSettings` as a dict) with ``sampler='remix'``.
    hard_labels : bool
        A latent-Remix job written without its soft targets.
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
    include_originals: bool
    sampler: str = "smote"
    filter_threshold: float | None = None
    max_draw_ratio: int = DEFAULT_MAX_DRAW_RATIO
    synthetic_share: float = 1.0
    remix: dict[str, Any] | None = None
    hard_labels: bool = False

    def as_json(self) -> dict[str, Any]:
        """The settings as the JSON object recorded in OUT.

        The sampler's, the gate's and the mixing's settings only when not their defaults: a job
        without them records what it recorded before they existed, so its OUT still resumes.
        """
        settings = {**asdict(self), "new_counts": list(self.new_counts)}
        if self.filter_threshold is None:
            del settings["filter_threshold"], settings["max_draw_ratio"]
        if self.synthetic_share == 1.0:
            del settings["synthetic_share"]
        if self.sampler == "smote":
            del settings["sampler"]
        if self.remix is None:
            del settings["remix"]
        if not self.hard_labels:
            del settings["hard_labels"]
        return settings


def check_remix_job(
    sampler: str, remix: RemixSettings | None, hard_labels: bool, fmt: str, threshold: float | None
) -> RemixSettings | None:
    """A job's latent-Remix settings (None for the other samplers), refused where they cannot apply.

    Raises
    ------
    InvalidInputError
        For ``hard_labels`` or settings without ``sampler='remix'``, soft labels to an ImageFolder
        (which holds one class per image), and the quality gate with latent Remix.
    """
    if sampler != "remix":
        if hard_labels or remix is not None:
            what = "`hard_labels`" if hard_labels else "remix settings"
            raise InvalidInputError(f"{what} apply to latent Remix only; pass `sampler` 'remix' or leave them out")
        return None
    if fmt == "imagefolder" and not hard_labels:
        raise InvalidInputError(
            "`sampler` 'remix' makes soft labels, which an ImageFolder cannot hold (one class per folder); "
            "write `fmt` npz, webdataset or parquet, or pass `hard_labels` to keep each sample's base class alone"
        )
    check_remix_gate(sampler, threshold)
    return remix or RemixSettings()


def _byte_libraries(fmt: str) -> dict[str, str]:
    """Versions of the libraries whose arithmetic, random streams or encoders reach the output bytes."""
    # onnxruntime-gpu installs the same module under another distribution name; numba's version
    # is read without importing it (a small job never loads numba).
    libraries = {"numpy": np.__version__, "numba": version("numba"), "onnxruntime": import_onnxruntime().__version__}
    if fmt == "parquet":
        libraries["pyarrow"] = version("pyarrow")
    return libraries


def plan_units(
    fmt: str,
    new: np.ndarray,
    counts: np.ndarray,
    shard_size: int,
    include_originals: bool,
    synthetic: np.ndarray | None = None,
) -> UnitPlan:
    """The job's output units: mixed classes for WebDataset and Parquet, one class per unit otherwise;
    ``synthetic`` of each class's ``new`` samples synthetic, the rest real repeats (all when None).

    Lazy: memory O(classes) whatever the number of units."""
    plan = plan_mixed if fmt in MIXED_FORMATS else plan_per_class
    return plan(new, counts if include_originals else None, shard_size, synthetic)


def plan_table(
    data: LabelledImages | ImageSource | LatentCache,
    sampling_strategy: str | Mapping[str, int],
    fmt: str,
    shard_size: int,
    include_originals: bool,
) -> list[dict[str, Any]]:
    """What a job would write, per class: its count now, its target, how many to generate, in how many
    shards (for WebDataset and Parquet, the shards that hold some of the class). Reads no bundle."""
    counts = data.class_counts()
    new = new_sample_counts(sampling_strategy, counts, data.classes)
    shards = plan_units(fmt, new, counts, shard_size, include_originals).class_units()
    return [
        {
            "class": name,
            "current": int(counts[c]),
            "target": int(counts[c] + new[c]),
            "generate": int(new[c]),
            "shards": int(shards[c]),
        }
        for c, name in enumerate(data.classes)
    ]


def write_manifest(
    out: Path,
    units: Iterable[Unit],
    writer: UnitWriter,
    classes: tuple[str, ...],
    synthesizer: Synthesizer | None = None,
) -> None:
    """Write ``OUT/manifest.csv`` row by row, atomically: one row per written sample (file, key in
    the file, label, class, synthetic). Memory: one unit's rows, whatever the job's size.

    A latent-Remix job (``synthesizer.remix``) adds ``partner_class`` (the partner's class name;
    empty for a real sample) and ``weight`` (the base's weight λ in the mix; 1 for a real sample),
    found from the draws without decoding anything.

    Raises
    ------
    DeepSMOTEError
        If the write fails; no partial manifest is left.
    """
    target = out / MANIFEST_FILE
    remix = synthesizer.remix if synthesizer is not None else None
    try:
        with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            rows = csv.writer(f, lineterminator="\n")
            extra = ["partner_class", "weight"] if remix is not None else []
            rows.writerow(["file", "key", "label", "class", "synthetic", *extra])
            for unit in units:
                labels, synthetic, _, _ = unit.order()
                entries = writer.entries(unit)
                mixes: list[list[str]] = [[]] * unit.count
                if remix is not None:
                    made = synthesizer.samples(unit, with_images=False)
                    weights = np.float32(1) - made.gap
                    mixes = [
                        [classes[remix.labels[p]], str(w)] if mixed else ["", "1.0"]
                        for mixed, p, w in zip(made.synthetic.tolist(), made.neighbor.tolist(), weights, strict=True)
                    ]
                for (file, key), label, made_one, mix in zip(
                    entries, labels.tolist(), synthetic.tolist(), mixes, strict=True
                ):
                    rows.writerow([file, key, label, classes[label], int(made_one), *mix])
    except OSError as exc:
        raise write_error(out, target, exc) from None


def resolve_originals(include_originals: bool | None, data: ImageSource | LatentCache) -> bool:
    """Whether a job writes the originals: as asked, or by default wherever DATA holds the images."""
    if include_originals is not None:
        return bool(include_originals)
    if isinstance(data, LatentCache):
        warnings.warn(
            f"CODES {data.path} holds no images, so `out` gets the new samples only and a class that gets none "
            f"has no files; give DATA ({data.source}) for the whole balanced set",
            stacklevel=3,
        )
        return False
    return True


def _data_path(data: ImageSource | LatentCache) -> str | None:
    """DATA's absolute path (for CODES, the DATA it was encoded from); None for images held in memory."""
    path = data.source if isinstance(data, LatentCache) else None if data.path == "DATA" else data.path
    return None if path is None else os.path.abspath(path)


def _done_units(output: OutputDir, units: UnitPlan) -> tuple[int, int]:
    """How many units of ``units`` OUT marks done, and their samples; read mark by mark from OUT."""
    done = samples = 0
    for t in map(units.locate, output.done_names()):
        if t is not None:
            done, samples = done + 1, samples + units[t].count
    return done, samples


def _acceptance(synthesizer: Synthesizer, classes: tuple[str, ...], engine: str) -> dict[str, Any]:
    """Per class, the candidates the gate kept and drew in this run, and their ratio."""
    if engine != "local":
        # Ray workers keep their own tallies; what they drew is not sent back.
        return {"note": f"not collected by the {engine} engine"}
    return {
        classes[c]: {"accepted": kept, "drawn": drawn, "rate": round(kept / drawn, 4) if drawn else None}
        for c, (kept, drawn) in sorted(synthesizer.acceptance.items())
    }


# The pixels of one output unit, which a job holds (and a writer encodes) at once.
MAX_UNIT_BYTES = 1 << 30


def check_shard_size(shard_size: int, image_shape: tuple[int, int, int]) -> None:
    """Refuse a ``shard_size`` whose units' pixels would exceed :data:`MAX_UNIT_BYTES` of memory.

    Raises
    ------
    InvalidInputError
        For a size that is not a positive integer, or too large for images of ``image_shape``.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise InvalidInputError(f"`shard_size` must be a positive integer, got {shard_size!r}")
    most = max(1, MAX_UNIT_BYTES // math.prod(image_shape))
    if shard_size > most:
        raise InvalidInputError(
            f"`shard_size` {str(shard_size)[:30]} holds more than the {MAX_UNIT_BYTES >> 20} MiB of pixels a unit "
            f"may hold at {'x'.join(map(str, image_shape))}; use at most {most}"
        )


def generate_dataset(
    bundle: str | os.PathLike,
    data: LabelledImages | ImageSource | LatentCache,
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
    include_originals: bool | None = None,
    filter_threshold: float | None = None,
    max_draw_ratio: int = DEFAULT_MAX_DRAW_RATIO,
    synthetic_share: float = 1.0,
    overwrite: bool = False,
    progress: bool = True,
    sampler: str = "smote",
    remix: RemixSettings | None = None,
    hard_labels: bool = False,
) -> dict[str, Any]:
    """Generate the synthetic samples of ``data`` into ``out``, resuming an interrupted job.

    Parameters
    ----------
    bundle : path-like
        The model bundle.
    data : LabelledImages, ImageSource or LatentCache
        The real images, uint8 (N, H, W[, C]): in memory, read in batches from DATA
        (:func:`~deepsmote.runtime.stream.open_dataset`; only codes are kept, N x Z floats), or
        their codes from a latent cache (:func:`~deepsmote.runtime.codes.read_latent_cache`), which
        must come from this bundle. The bytes are the same from each.
    out : path-like
        Output directory; created, resumed, or refused (see :class:`OutputDir`).
    sampling_strategy : str or dict
        A strategy name or ``{class name: count after resampling}``.
    engine : {'local', 'ray'}
        Where shards run; ``engine_options`` go to the engine (Ray: ``address``, ``workers``,
        ``cpus_per_worker``, ``gpus_per_worker``, ``max_retries``).
    fmt : {'imagefolder', 'npz', 'webdataset', 'parquet'}
        The output format (README, "Output formats").
    include_originals : bool or None
        Write the originals too, so that OUT is the whole balanced set, every class present, as
        imbalanced-learn's ``fit_resample`` returns it; False writes the new samples only. None (the
        default) is True, except from CODES, which holds no images: then the new samples only, with a
        warning.
    sampler : {'smote', 'borderline', 'adasyn', 'remix'}
        Which codes serve as SMOTE bases, or latent Remix (README, "Latent samplers").
    remix : RemixSettings, optional
        Latent Remix's settings with ``sampler='remix'`` [default: ``RemixSettings()``].
    hard_labels : bool
        Write a latent-Remix job without its soft targets (each sample labelled with its base's
        class alone), as an ImageFolder needs; refused for the other samplers.
    filter_threshold : float, optional
        The quality gate: keep only candidates to which the bundle's classifier gives probability
        at least this of their class (in (0, 1]); the bundle needs ``classifier.onnx``.
    max_draw_ratio : int
        The gate draws at most this many candidates per sample it keeps, then fails the class.
    synthetic_share : float
        Share of each class's new samples that is synthetic (in [0, 1]); the rest are repeats of
        the class's real images, drawn as random oversampling does.

    Returns
    -------
    dict
        The summary, also written to ``out/summary.json``.
    """
    start = time.perf_counter()
    # A missing extra or a bad option is refused before the bundle is read or the sampler fitted.
    runner = make_engine(engine, engine_options or {})
    check_sampler(sampler)
    threshold, max_draw_ratio = check_threshold(filter_threshold), check_ratio(max_draw_ratio)
    remix = check_remix_job(sampler, remix, hard_labels, fmt, threshold)
    if isinstance(data, LabelledImages):
        data = ImageSource.of(data)
    include_originals = resolve_originals(include_originals, data)
    counts = data.class_counts()
    new = new_sample_counts(sampling_strategy, counts, data.classes)
    synthetic = split(new, synthetic_share)
    for c, n in enumerate(synthetic):
        if n > 0:
            check_class_size(int(counts[c]), data.classes[c])
    # A class that takes the numba k-NN has numba loaded (0.4-1.5 s, mostly Python imports) while
    # the bundle is read and its sessions are built, which release the GIL.
    encoded = encoded_classes(new, synthetic, sampler)
    preload_knn(counts[encoded], draw_counts(synthetic, threshold, max_draw_ratio)[encoded])
    # Each graph is read and checked where its session is built: a job never reads the graphs
    # it does not run (on the CPU, decoder.onnx and decoder_fp16.onnx; from CODES, the encoder).
    loaded = load_bundle(bundle, lazy=True)
    if threshold is not None and not loaded.has_graph(CLASSIFIER_FILE):
        raise DeepSMOTEError(
            f"`filter_threshold` needs a classifier in the bundle and {loaded.path} has none; add one with "
            "'deepsmote add-classifier BUNDLE DATA' (or train with 'deepsmote train --classifier')"
        )
    if isinstance(data, LatentCache):
        data.check_bundle(loaded)
        for needs_images, name in ((include_originals, "include_originals"), (synthetic_share != 1, "synthetic_share")):
            if needs_images:
                raise DeepSMOTEError(
                    f"`{name}` needs the original images, which CODES {data.path} does not hold (codes "
                    f"only); give DATA ({data.source}) instead of CODES"
                )
    check_image_shape(data.image_shape, loaded.image_shape)
    check_shard_size(shard_size, loaded.image_shape)

    def job_settings(fingerprint: str) -> JobSettings:
        return JobSettings(
            deepsmote_version=version("deepsmote"),
            provider=resolve_provider(provider),
            libraries=_byte_libraries(fmt),
            bundle=loaded.fingerprint,
            data=fingerprint,
            new_counts=tuple(int(n) for n in new),
            k_neighbors=k_neighbors,
            seed=seed,
            format=fmt,
            shard_size=shard_size,
            precision=precision,
            include_originals=include_originals,
            sampler=sampler,
            filter_threshold=threshold,
            max_draw_ratio=max_draw_ratio,
            synthetic_share=float(synthetic_share),
            remix=asdict(remix) if remix is not None else None,
            hard_labels=hard_labels,
        )

    # Everything that can be refused is refused before DATA is encoded: an OUT this job may not use,
    # a bad format or class name, and a job larger than OUT's file system could ever hold. DATA's
    # fingerprint is computed as DATA is encoded; only where OUT records a job to compare with is
    # DATA read once more for it first.
    known = data.data if isinstance(data, LatentCache) else None
    if known is None and (Path(out) / JOB_FILE).is_file():
        known = data.fingerprint()
    if known is None:
        OutputDir(Path(out), {}, overwrite).check(settings_known=False)
    else:
        OutputDir(Path(out), job_settings(known).as_json(), overwrite).check()
    writer = make_writer(fmt, Path(out), data.classes)
    if fmt == "imagefolder" and sorted(data.classes) != list(data.classes):
        # torchvision and Hugging Face number an ImageFolder's classes by sorted folder name.
        warnings.warn(
            f"loaders that number ImageFolder classes by sorted folder name (torchvision, Hugging Face) will "
            f"not give these classes the input's labels ({', '.join(data.classes[:4])}...); use the labels in "
            f"{MANIFEST_FILE}, or `fmt` npz, webdataset or parquet",
            stacklevel=2,
        )
    # A resumed job's done units are on disk already: at most a unit's size each.
    done = sum(1 for _ in OutputDir(Path(out), {}).done_names()) * shard_size if (Path(out) / JOB_FILE).is_file() else 0
    check_capacity(Path(out), fmt, loaded.image_shape, sum(int(n) for n in new), done)
    from_cache = isinstance(data, LatentCache)
    models = open_models(loaded, provider, threads, precision, encoder=not from_cache, classifier=threshold is not None)
    codes, members, fingerprint = codes_of(models, data, encoded)
    synthesizer = Synthesizer.from_codes(
        models,
        ImageLayout(data.item_shape, np.dtype(np.uint8), loaded.image_shape),
        codes,
        members,
        list(data.classes),
        new,
        # The originals are read again from DATA, by index, when a unit copies or repeats them.
        source=data if include_originals or synthetic_share != 1 else None,
        k_neighbors=k_neighbors,
        seed=seed,
        shard_size=shard_size,
        threads=threads,
        batch_size=batch_size,
        precision=precision,
        sampler=sampler,
        synthetic_counts=synthetic,
        filter_threshold=threshold,
        max_draw_ratio=max_draw_ratio,
        remix=remix,
    )
    if hard_labels:
        synthesizer = replace(synthesizer, hard_labels=True)
    settings = job_settings(fingerprint)
    output = OutputDir(Path(out), settings.as_json(), overwrite)
    output.check()
    fitted = time.perf_counter()
    shards = plan_units(fmt, new, counts, shard_size, include_originals, synthetic)
    total = shards.total
    with output:
        # What is done is read from the done marks, what is left is taken from the lazy plan on the
        # fly: memory stays O(classes) and a resume does not stat every unit up front.
        done_units, done_before = _done_units(output, shards)

        def todo() -> Iterator[Unit]:
            return (unit for unit in shards if not output.is_done(unit))

        # A bar on a terminal; elsewhere (CI, a log) one line per shard, so a run is never silent.
        lines = LineProgress(len(shards), done_units, "generate", "shards")
        bar_wanted = progress and sys.stderr.isatty()
        with tqdm(total=total, initial=done_before, unit="img", desc="generate", disable=not bar_wanted) as bar:

            def advance(unit: Unit) -> None:
                bar.update(unit.count)
                if progress and not bar_wanted:
                    lines.update(1, f"{unit.count} images in {unit.name}")

            try:
                engine_info = runner.run(synthesizer, todo(), output, fmt, data.classes, advance)
            except KeyboardInterrupt as interrupt:
                # Ctrl-C or SIGTERM: finished shards stay (the writers leave no partial file), and
                # the caller is told how to finish the job.
                finished = _done_units(output, shards)[0]
                interrupt.add_note(
                    f"{finished} of {len(shards)} shards are finished and kept in {out}; "
                    "run the same job again to resume"
                    if finished
                    else "no shard was finished, nothing is kept"
                )
                raise
        generated = time.perf_counter()
        made = total - done_before
        write_manifest(output.path, shards, writer, data.classes, synthesizer)
        writer.finish(shards)
        summary = {
            "deepsmote_version": settings.deepsmote_version,
            "bundle": {"path": str(loaded.path), "fingerprint": loaded.fingerprint},
            # Where `deepsmote report` finds the real images of a job that did not write them.
            "data": {"path": _data_path(data), "fingerprint": fingerprint},
            "classes": list(data.classes),
            "counts": {
                name: {
                    "original": int(counts[c]),
                    "synthetic": int(synthetic[c]),
                    **({"repeated": int(new[c] - synthetic[c])} if synthetic_share != 1.0 else {}),
                    "total": int(counts[c] + new[c]),
                }
                for c, name in enumerate(data.classes)
            },
            "neighbors_used": {
                data.classes[c]: latents.n_neighbors for c, latents in enumerate(synthesizer.latents) if latents
            },
            "seed": seed,
            "k_neighbors": k_neighbors,
            "sampler": sampler,
            **({"remix": asdict(remix), "soft_labels": synthesizer.soft_labels} if remix is not None else {}),
            "base_codes": {data.classes[c]: fitted.n_bases for c, fitted in enumerate(synthesizer.latents) if fitted},
            "format": fmt,
            "shard_size": shard_size,
            "precision": precision,
            "include_originals": include_originals,
            "synthetic_share": float(synthetic_share),
            "filter_threshold": threshold,
            **({"acceptance": _acceptance(synthesizer, data.classes, engine)} if threshold is not None else {}),
            "settings": settings.as_json(),
            "shards": {"total": len(shards), "skipped_as_done": done_units},
            "engine": engine,
            "engine_info": engine_info,
            "provider": synthesizer.provider,
            "threads": threads,
            "batch_size": batch_size or default_decode_batch(synthesizer.provider, loaded.image_shape),
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
