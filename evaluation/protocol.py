"""The paper's evaluation protocol with its missing baselines, and the sample-quality study.

:func:`evaluate` trains one classifier per (method, seed) on the training set as each method
leaves it, and scores it on every test set:

- ``none``: the imbalanced training set as it is;
- ``random``: imbalanced-learn's ``RandomOverSampler`` (copies of minority images);
- ``smote``: imbalanced-learn's ``SMOTE`` on flattened pixels, rounded back to uint8;
- ``deepsmote``: :class:`deepsmote.runtime.DeepSMOTE` with a given bundle;
- ``balanced-softmax``: the imbalanced set, trained with the balanced softmax loss;
- ``deferred``: deferred re-sampling, the imbalanced set until :data:`DEFER_AT` of the steps, then
  random oversampling;
- DeepSMOTE recipes (``deepsmote-filter``, ``deepsmote-mixed``, ``deepsmote-borderline``,
  ``deepsmote-adasyn``, ``deepsmote-deferred``): DeepSMOTE with the gate, mixing, another latent
  sampler, or its samples used in the deferred phase only (:data:`METHODS`).

Every oversampler fills each class up to the majority count (``sampling_strategy='auto'``) from
the same images with the same ``k_neighbors`` and seed. Before anything else a stratified
validation split is carved from the training set (fixed by ``split_seed``, the same for every
method and seed); the oversamplers see only the rest, the *fit* split, and the classifier's
weights are selected on the validation split. Test sets are only ever predicted, never resampled
or used for a choice. The seeds vary the classifier's initial weights and batch order and the
oversampler's draws; a seed gives every method the same initial weights.

:func:`sample_quality` compares, per class and in the feature space of a classifier trained on
real balanced images, real held-out images with DeepSMOTE's samples, pixel SMOTE's, plain
reconstructions through the autoencoder, and (as the floor at the same sample size) real
training images.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deepsmote.runtime.atomic import atomic_path
from deepsmote.runtime.bundle import load_bundle, open_models
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import from_model, to_model
from deepsmote.runtime.readers import LabelledImages
from deepsmote.runtime.remix import RemixSettings
from deepsmote.training.trainer import resolve_device

from .classifiers import ClassifierConfig, Deferred, TrainingSet, embed, predict, train_classifier
from .metrics import scores
from .pixel_remix import pixel_remix
from .quality import DEFAULT_K, compare


@dataclass(frozen=True)
class Method:
    """How a method makes its classifier's training set and loss.

    Attributes
    ----------
    title : str
        Its row in the tables.
    oversampler : {'random', 'smote', 'deepsmote'} or None
        What fills each class up to the majority count; None trains on the set as it is.
    recipe : mapping
        Keyword arguments of :class:`deepsmote.runtime.DeepSMOTE` (``filter_threshold``,
        ``synthetic_share``, ``sampler``) for a ``deepsmote`` oversampler.
    deferred : bool
        Train on the set as it is until :data:`DEFER_AT` of the steps, then on the oversampled set.
    balanced_softmax : bool
        Train with the balanced softmax loss (:mod:`deepsmote.evaluation.classifiers`).
    per_epoch : bool
        The oversampler's fresh draws every pass over the data (``DeepSMOTE.resample(epoch)``,
        the stream's ``set_epoch``) instead of one fixed set.

    An oversampler that makes soft targets (latent and pixel Remix) trains the classifier on them.
    """

    title: str
    oversampler: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    deferred: bool = False
    balanced_softmax: bool = False
    per_epoch: bool = False


# M2m's threshold (Kim et al., CVPR 2020): a candidate is kept when the classifier trained on real
# data gives its class p >= 0.9. Mixing half and half is the midpoint, not a tuned value.
FILTER_THRESHOLD = 0.9
SYNTHETIC_SHARE = 0.5
# LDAM-DRW defers re-sampling to epoch 160 of 200; ntucllab/imbalanced-DL's DeepSMOTE does the same.
DEFER_AT = 0.8
# Latent Remix at Remix's published κ = 3, τ = 0.5 and base weights U[0.5, 1).
REMIX: Mapping[str, Any] = {"sampler": "remix"}
REMIX_NEAREST: Mapping[str, Any] = {"sampler": "remix", "remix_partner": "nearest-other"}

METHODS: dict[str, Method] = {
    "none": Method("(a) no oversampling"),
    "random": Method("(b) random oversampling", "random"),
    "smote": Method("(c) SMOTE (pixels)", "smote"),
    "deepsmote": Method("(d) DeepSMOTE", "deepsmote"),
    "balanced-softmax": Method("(e) balanced softmax", balanced_softmax=True),
    "deferred": Method("(f) deferred re-sampling", "random", deferred=True),
    "deepsmote-filter": Method(
        f"(d) DeepSMOTE, filtered (p ≥ {FILTER_THRESHOLD:g})", "deepsmote", {"filter_threshold": FILTER_THRESHOLD}
    ),
    "deepsmote-mixed": Method(
        f"(d) DeepSMOTE, {SYNTHETIC_SHARE:.0%} synthetic", "deepsmote", {"synthetic_share": SYNTHETIC_SHARE}
    ),
    "deepsmote-borderline": Method("(d) DeepSMOTE, Borderline-SMOTE", "deepsmote", {"sampler": "borderline"}),
    "deepsmote-adasyn": Method("(d) DeepSMOTE, ADASYN", "deepsmote", {"sampler": "adasyn"}),
    "deepsmote-deferred": Method("(d) DeepSMOTE, deferred", "deepsmote", deferred=True),
    "deepsmote-per-epoch": Method("(d) DeepSMOTE, fresh every epoch", "deepsmote", per_epoch=True),
    "remix": Method("(g) latent Remix", "deepsmote", REMIX),
    "remix-per-epoch": Method("(g) latent Remix, fresh every epoch", "deepsmote", REMIX, per_epoch=True),
    "remix-nearest": Method("(g) latent Remix, nearest other-class partner", "deepsmote", REMIX_NEAREST),
    "remix-nearest-per-epoch": Method(
        "(g) latent Remix, nearest other-class partner, fresh every epoch", "deepsmote", REMIX_NEAREST, per_epoch=True
    ),
    "remix-balanced-softmax": Method("(g) latent Remix + balanced softmax", "deepsmote", REMIX, balanced_softmax=True),
    "pixel-remix": Method("(h) pixel Remix", "pixel-remix"),
    "pixel-remix-per-epoch": Method("(h) pixel Remix, fresh every epoch", "pixel-remix", per_epoch=True),
}
# The keys a method name may override after '@' besides its recipe's (see :func:`method_spec`).
FLAGS = ("deferred", "balanced_softmax", "per_epoch")
# What `deepsmote evaluate` runs by default: the paper's four and the classifier-side baselines.
DEFAULT_METHODS: tuple[str, ...] = ("none", "random", "smote", "deepsmote", "balanced-softmax", "deferred")
METRICS: tuple[str, ...] = ("acsa", "gm", "f1")
Log = Callable[[str], None]


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything :func:`evaluate` does, besides the data and the bundle.

    Attributes
    ----------
    methods : tuple of str
        Names of :data:`METHODS`, in report order.
    seeds : tuple of int
        One classifier (and one oversampling draw) per method and seed.
    classifier : ClassifierConfig
    val_fraction : float
        Share of each class carved off the training set for model selection.
    split_seed : int
        Seeds the validation split.
    k_neighbors : int
        k of both SMOTEs; lowered for all methods alike if the smallest class of the fit split
        has too few images.
    device : {'auto', 'cpu', 'cuda'}
        Where the classifiers train.
    threads : int or None
        torch, onnxruntime and numba threads of each process that trains; None leaves the
        libraries' defaults in this process and gives each worker an equal share of the cores.
    workers : int
        Runs trained at once, each in its own process; 1 trains them one after the other in
        this process. The results do not depend on it, only on the threads per process (through
        the floating-point order of multi-threaded sums).
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    val_fraction: float = 0.1
    split_seed: int = 0
    k_neighbors: int = 5
    device: str = "auto"
    threads: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m.partition("@")[0] not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise DeepSMOTEError(
                f"methods must be distinct names among {', '.join(METHODS)}, got {', '.join(self.methods) or 'none'}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise DeepSMOTEError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        if not 0 < self.val_fraction < 1:
            raise DeepSMOTEError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.k_neighbors < 1:
            raise DeepSMOTEError(f"k_neighbors must be a positive integer, got {self.k_neighbors}")
        if self.threads is not None and self.threads < 1:
            raise DeepSMOTEError(f"threads must be a positive integer, got {self.threads}")
        if self.workers < 1:
            raise DeepSMOTEError(f"workers must be a positive integer, got {self.workers}")


# --- data ------------------------------------------------------------------------------------


def validation_split(labels: np.ndarray, n_classes: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, validation) indices.

    Each class gives ``round(fraction * n)`` images to validation, at least 1 and leaving at least
    2 to fit (a class of fewer than 3 images stays whole in the fit split). The choice for a class
    depends only on ``seed``, the class index and its size.

    Returns
    -------
    fit, val : np.ndarray
        int64 indices into ``labels``, ascending.
    """
    fit, val = [], []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        n_val = 0 if len(members) < 3 else int(np.clip(round(fraction * len(members)), 1, len(members) - 2))
        order = np.random.default_rng(np.random.SeedSequence([seed, c])).permutation(members)
        val.append(order[:n_val])
        fit.append(order[n_val:])
    return np.sort(np.concatenate(fit)).astype(np.int64), np.sort(np.concatenate(val)).astype(np.int64)


def split_fit(train: LabelledImages, config: ProtocolConfig) -> tuple[LabelledImages, LabelledImages]:
    """The (fit, validation) parts of ``train`` that :func:`evaluate` uses.

    Train a DeepSMOTE bundle on the fit part to keep the validation images out of the oversampler.
    """
    fit, val = validation_split(train.labels, len(train.classes), config.val_fraction, config.split_seed)
    return (
        LabelledImages(train.images[fit], train.labels[fit], train.classes),
        LabelledImages(train.images[val], train.labels[val], train.classes),
    )


def _aligned(test: LabelledImages, classes: tuple[str, ...], name: str) -> np.ndarray:
    """``test``'s labels as indices into the training classes (matched by name)."""
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in test.classes if c not in index]
    if missing:
        raise DeepSMOTEError(f"test set '{name}' has classes {missing} that the training set lacks")
    return np.asarray([index[c] for c in test.classes], dtype=np.int64)[test.labels]


def effective_k(counts: np.ndarray, k_neighbors: int) -> int:
    """k for both SMOTEs: ``k_neighbors``, or less if the smallest class has ``<= k`` images."""
    smallest = int(counts.min())
    if smallest < 2:
        raise DeepSMOTEError(f"SMOTE needs at least 2 images in every class of the fit split; one has {smallest}")
    return min(k_neighbors, smallest - 1)


# --- oversampling ----------------------------------------------------------------------------


def _value(text: str) -> Any:
    """A method override's value: an int, a float, or the string itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def method_spec(name: str) -> Method:
    """The :class:`Method` a name stands for: a name of :data:`METHODS`, optionally followed by
    ``@key=value+key=value`` overriding its recipe's keyword arguments (``remix_kappa=2``,
    ``synthetic_share=0.5``) or its flags (:data:`FLAGS`, 0 or 1), for searches on validation.

    Raises
    ------
    DeepSMOTEError
        For an unknown method or a malformed override.
    """
    base, _, overrides = name.partition("@")
    if base not in METHODS:
        raise DeepSMOTEError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    spec = METHODS[base]
    if not overrides:
        return spec
    recipe, flags = dict(spec.recipe), {}
    for item in overrides.split("+"):
        key, equals, text = item.partition("=")
        if not equals or not key:
            raise DeepSMOTEError(f"method {name!r}: each override is key=value, got {item!r}")
        if key in FLAGS:
            flags[key] = bool(_value(text))
        else:
            recipe[key] = _value(text)
    return replace(spec, title=f"{spec.title} [{overrides}]", recipe=recipe, **flags)


def training_sets(
    method: str,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    k_neighbors: int,
    bundle: str | os.PathLike | None = None,
    threads: int | None = None,
    sampling_strategy: str | dict[int, int] = "auto",
) -> Callable[[int], TrainingSet]:
    """``method``'s oversampler, fitted once: epoch -> that epoch's training set.

    Epoch 0 is :func:`resample`'s set; a method with ``per_epoch`` asks for epochs 1, 2, ... as
    its classifier trains (the other methods keep epoch 0). The parameters are :func:`resample`'s.
    """
    spec = method_spec(method)
    if spec.oversampler is None:
        return lambda epoch: TrainingSet(images, labels)
    if spec.oversampler == "deepsmote":
        from deepsmote.runtime import DeepSMOTE

        if bundle is None:
            raise DeepSMOTEError(f"the {method} method needs a bundle (--bundle)")
        sampler = DeepSMOTE(
            bundle,
            sampling_strategy=sampling_strategy,
            k_neighbors=k_neighbors,
            random_state=seed,
            n_threads=threads,
            **spec.recipe,
        ).fit(images, labels)
        soft = spec.recipe.get("sampler") == "remix"

        def deepsmote(epoch: int) -> TrainingSet:
            X, y, targets = sampler.resample(epoch, return_targets=True)
            return TrainingSet(X, y, targets if soft else None)

        return deepsmote
    if spec.oversampler == "pixel-remix":
        settings = RemixSettings(**{k.removeprefix("remix_"): v for k, v in spec.recipe.items()})
        if settings.base != "smote":
            raise DeepSMOTEError("pixel-space Remix draws its bases uniformly (remix_base 'smote')")
        return lambda epoch: TrainingSet(*pixel_remix(images, labels, seed, settings, epoch))
    X, y = _imblearn_resample(spec.oversampler, images, labels, seed, k_neighbors, sampling_strategy)
    return lambda epoch: TrainingSet(X, y)


def resample(
    method: str,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    k_neighbors: int,
    bundle: str | os.PathLike | None = None,
    threads: int | None = None,
    sampling_strategy: str | dict[int, int] = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The training set as ``method``'s oversampler leaves it: originals first, uint8 images in their layout.

    A method without an oversampler returns the set as it is; a deferred method returns the set
    of its second phase.

    Parameters
    ----------
    method : str
        A name of :data:`METHODS` (with overrides, :func:`method_spec`).
    images : np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).
    labels : np.ndarray
        int, shape (N,).
    seed : int
        The oversampler's ``random_state``.
    k_neighbors : int
    bundle : path-like, optional
        Needed for the DeepSMOTE methods.
    threads : int, optional
        onnxruntime and numba threads for DeepSMOTE.
    sampling_strategy : str or dict
        imbalanced-learn's meaning; the protocol uses ``'auto'``.
    """
    data = training_sets(method, images, labels, seed, k_neighbors, bundle, threads, sampling_strategy)(0)
    return data.images, data.labels


def _imblearn_resample(
    oversampler: str, images: np.ndarray, labels: np.ndarray, seed: int, k_neighbors: int, sampling_strategy: Any
) -> tuple[np.ndarray, np.ndarray]:
    """imbalanced-learn's ``RandomOverSampler`` or pixel ``SMOTE`` on flattened images."""
    from imblearn.over_sampling import SMOTE, RandomOverSampler

    flat = images.reshape(len(images), -1)
    if oversampler == "random":
        X, y = RandomOverSampler(sampling_strategy=sampling_strategy, random_state=seed).fit_resample(flat, labels)
        return X.reshape(-1, *images.shape[1:]), y
    # Interpolating uint8 would wrap around; SMOTE runs on floats and the result is rounded.
    smote = SMOTE(sampling_strategy=sampling_strategy, k_neighbors=k_neighbors, random_state=seed)
    X, y = smote.fit_resample(flat.astype(np.float32), labels)
    return np.rint(np.clip(X, 0, 255)).astype(np.uint8).reshape(-1, *images.shape[1:]), y


def _uses(methods: Sequence[str], oversamplers: set[str]) -> bool:
    return any(method_spec(m).oversampler in oversamplers for m in methods)


# --- the protocol ----------------------------------------------------------------------------


def _bundle_provenance(bundle: str | os.PathLike, fit: LabelledImages, train: LabelledImages) -> dict[str, Any]:
    manifest = load_bundle(bundle).manifest
    trained_on = manifest.training.data_sha256
    if trained_on == fit.fingerprint():
        where = "fit split"
    elif trained_on == train.fingerprint():
        where = "whole training set (includes the validation split)"
        warnings.warn(
            f"{bundle} was trained on the whole training set, validation split included: DeepSMOTE's "
            "validation scores are optimistic; train the bundle on the fit split (protocol.split_fit)",
            stacklevel=3,
        )
    else:
        where = "other data"
    return {
        "path": str(bundle),
        "trained_on": where,
        "latent_dim": manifest.latent_dim,
        "training": manifest.training.config,
        "epochs_run": manifest.training.epochs_run,
    }


def evaluate(
    train: LabelledImages,
    tests: Mapping[str, LabelledImages],
    config: ProtocolConfig,
    *,
    bundle: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    stem: str = "results",
    log: Log = print,
) -> dict[str, Any]:
    """Run the protocol; see the module docstring.

    Parameters
    ----------
    train : LabelledImages
        The imbalanced training set.
    tests : mapping of str to LabelledImages
        Test sets by name, e.g. ``imbalanced`` and ``balanced``; their classes are matched to the
        training classes by name.
    config : ProtocolConfig
    bundle : path-like, optional
        DeepSMOTE's bundle; required when ``deepsmote`` is among the methods.
    out_dir : path-like, optional
        Where ``<stem>.json`` and ``<stem>.md`` are rewritten after every run, so a stopped
        protocol leaves the runs done so far.
    stem : str
        The name of those files.
    log : callable
        Receives progress lines.

    Returns
    -------
    dict
        ``protocol`` (settings, class counts, bundle), ``runs`` (one per method and seed: scores
        per test set, validation score, selected step, timings) and ``summary``: under ``tests``,
        per test set and method, the mean and standard deviation over seeds; under ``selection``,
        per method, the validation ACSA of the selected weights, the selected steps and the
        training time.
    """
    if _uses(config.methods, {"deepsmote"}) and bundle is None:
        raise DeepSMOTEError("the DeepSMOTE methods need a bundle (--bundle)")
    if not tests:
        raise DeepSMOTEError("give at least one test set")
    test_labels = {name: _aligned(test, train.classes, name) for name, test in tests.items()}
    for name, test in tests.items():
        if test.images.shape[1:] != train.images.shape[1:]:
            raise DeepSMOTEError(
                f"test set '{name}' has images of shape {test.images.shape[1:]}, "
                f"the training set {train.images.shape[1:]}"
            )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    n_classes = len(train.classes)
    fit, val = split_fit(train, config)
    fit_counts = fit.class_counts()
    k = effective_k(fit_counts, config.k_neighbors) if _uses(config.methods, {"smote", "deepsmote"}) else None
    results: dict[str, Any] = {
        "protocol": {
            **{key: value for key, value in asdict(config).items() if key != "classifier"},
            "classifier": asdict(config.classifier),
            "k_neighbors_used": k,
            "device_used": str(device),
            "torch_version": torch.__version__,
            "classes": list(train.classes),
            "counts": {
                "train": train.class_counts().tolist(),
                "fit": fit_counts.tolist(),
                "validation": val.class_counts().tolist(),
                **{name: np.bincount(test_labels[name], minlength=n_classes).tolist() for name in tests},
            },
            "bundle": _bundle_provenance(bundle, fit, train) if _uses(config.methods, {"deepsmote"}) else None,
        },
        "runs": [],
        "summary": {},
    }
    task = _Task(fit, val, {name: (tests[name].images, test_labels[name]) for name in tests}, config, k, bundle)
    jobs = [(method, seed) for seed in config.seeds for method in config.methods]
    order = {job: i for i, job in enumerate(jobs)}

    def record(run: dict[str, Any]) -> None:
        results["runs"].append(run)
        results["runs"].sort(key=lambda r: order[(r["method"], r["seed"])])
        results["summary"] = summarize(results["runs"], list(tests), config.methods)
        line = ", ".join(f"{name} ACSA {r['acsa']:.4f} GM {r['gm']:.4f}" for name, r in run["tests"].items())
        where = f"[{run['method']} seed {run['seed']}]"
        log(f"{where} selected step {run['best_step']}, val ACSA {run['val_acsa']:.4f}; {line}")
        if out_dir is not None:
            write_tables(out_dir, stem, results, results_markdown(results))

    if config.workers == 1:
        for method, seed in jobs:
            record(_one_run(task, method, seed, device, log))
        return results
    # Small networks use a core better as one process with one thread than as one thread of a
    # multi-threaded process, so the runs are spread over processes (spawned: CUDA-safe).
    threads = config.threads or max(1, (os.cpu_count() or 1) // config.workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(config.workers, context, initializer=_init_worker, initargs=(task, threads)) as pool:
        futures = [pool.submit(_worker_run, method, seed) for method, seed in jobs]
        for future in as_completed(futures):
            record(future.result())
    return results


@dataclass(frozen=True)
class _Task:
    """What every (method, seed) run of :func:`evaluate` needs."""

    fit: LabelledImages
    val: LabelledImages
    tests: dict[str, tuple[np.ndarray, np.ndarray]]
    config: ProtocolConfig
    k: int | None
    bundle: str | os.PathLike | None


def _one_run(task: _Task, method: str, seed: int, device: torch.device, log: Log) -> dict[str, Any]:
    """Resample the fit split with ``method``, train a classifier, score it on every test set."""
    config, fit, val = task.config, task.fit, task.val
    n_classes = len(fit.classes)
    began = time.perf_counter()
    spec = method_spec(method)
    k = task.k or config.k_neighbors
    sets = training_sets(method, fit.images, fit.labels, seed, k, task.bundle, config.threads)
    first = sets(0)
    images, y = first.images, first.labels
    resampled = time.perf_counter()
    log(f"[{method} seed {seed}] {len(images)} training images ({resampled - began:.1f} s to resample)")

    def progress(step: int, loss: float, val_acsa: float) -> None:
        log(f"[{method} seed {seed}] step {step}: train loss {loss:.4f}, validation ACSA {val_acsa:.4f}")

    deferred = None
    if spec.deferred:
        steps = config.classifier.steps
        deferred = Deferred(images, y, from_step=min(steps, round(DEFER_AT * steps) + 1))
        images, y = fit.images, fit.labels
    trained = train_classifier(
        images,
        y,
        val.images,
        val.labels,
        n_classes,
        config.classifier,
        seed,
        device,
        progress,
        deferred=deferred,
        balanced_softmax=spec.balanced_softmax,
        targets=None if spec.deferred else first.targets,
        refresh=sets if spec.per_epoch else None,
    )
    trained_at = time.perf_counter()
    run: dict[str, Any] = {
        "method": method,
        "seed": seed,
        "resampled_counts": np.bincount(deferred.labels if deferred else y, minlength=n_classes).tolist(),
        "best_step": trained.best_step,
        "val_acsa": trained.best_val_acsa,
        "history": trained.history,
        "tests": {},
    }
    for name, (test_images, test_labels) in task.tests.items():
        s = scores(test_labels, predict(trained.model, test_images, device), np.arange(n_classes))
        run["tests"][name] = {"acsa": s.acsa, "gm": s.gm, "f1": s.f1, "recall": list(s.recall)}
    run["seconds"] = {
        "resample": resampled - began,
        "train": trained_at - resampled,
        "test": time.perf_counter() - trained_at,
    }
    return run


_WORKER: dict[str, Any] = {}


def _init_worker(task: _Task, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(task=replace(task, config=replace(task.config, threads=threads)))
    _WORKER["device"] = resolve_device(task.config.device)


def _worker_run(method: str, seed: int) -> dict[str, Any]:
    return _one_run(
        _WORKER["task"], method, seed, _WORKER["device"], functools.partial(print, file=sys.stderr, flush=True)
    )


def _mean_std(values: Sequence[float]) -> list[float]:
    # Sample standard deviation over seeds; 0 for a single seed.
    array = np.asarray(values, dtype=np.float64)
    return [float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0]


def summarize(runs: list[dict[str, Any]], tests: list[str], methods: Sequence[str]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per test set and method, of the runs done so far."""
    summary: dict[str, Any] = {"tests": {}}
    for name in tests:
        summary["tests"][name] = {}
        for method in methods:
            done = [run for run in runs if run["method"] == method]
            if not done:
                continue
            entry: dict[str, Any] = {m: _mean_std([run["tests"][name][m] for run in done]) for m in METRICS}
            recalls = np.asarray([run["tests"][name]["recall"] for run in done])
            entry["recall"] = [_mean_std(recalls[:, c]) for c in range(recalls.shape[1])]
            entry["seeds"] = [run["seed"] for run in done]
            summary["tests"][name][method] = entry
    summary["selection"] = {
        method: {
            "acsa": _mean_std([run["val_acsa"] for run in runs if run["method"] == method]),
            "best_step": [run["best_step"] for run in runs if run["method"] == method],
            "train_seconds": _mean_std([run["seconds"]["train"] for run in runs if run["method"] == method]),
        }
        for method in methods
        if any(run["method"] == method for run in runs)
    }
    return summary


def _pct(pair: Sequence[float]) -> str:
    return f"{100 * pair[0]:.2f} ± {100 * pair[1]:.2f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The summary as markdown tables: one per test set, per-class recall, and validation."""
    protocol, summary = results["protocol"], results["summary"]
    classes = protocol["classes"]
    lines: list[str] = []
    for name, methods in summary["tests"].items():
        if not methods:
            continue
        n_seeds = max(len(entry["seeds"]) for entry in methods.values())
        lines += [
            f"**{name} test set** ({sum(protocol['counts'][name])} images), mean ± std over {n_seeds} seed(s), %",
            "",
            "| method | ACSA | GM | F1 |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {method_spec(m).title} | {_pct(e['acsa'])} | {_pct(e['gm'])} | {_pct(e['f1'])} |"
            for m, e in methods.items()
        ]
        lines += ["", f"Per-class recall on the {name} test set (mean over seeds, %)", ""]
        lines += ["| method | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
        lines += [
            f"| {method_spec(m).title} | " + " | ".join(f"{100 * r[0]:.1f}" for r in e["recall"]) + " |"
            for m, e in methods.items()
        ]
        lines.append("")
    lines += [
        "Validation split (model selection), mean ± std over seeds",
        "",
        "| method | validation ACSA, % | selected step | training time, s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {method_spec(m).title} | {_pct(e['acsa'])} | {', '.join(map(str, e['best_step']))} | "
        f"{e['train_seconds'][0]:.0f} |"
        for m, e in summary["selection"].items()
    ]
    return "\n".join(lines) + "\n"


def write_tables(out_dir: str | os.PathLike, stem: str, results: dict[str, Any], markdown: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``, each replaced atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=1) + "\n"), (".md", markdown)):
        with atomic_path(out / f"{stem}{suffix}") as tmp:
            tmp.write_text(text, encoding="utf-8")


# --- sample quality --------------------------------------------------------------------------

QUALITY_SETS: tuple[str, ...] = ("real", "reconstruction", "smote", "deepsmote")
QUALITY_TITLES = {
    "real": "real training images (floor)",
    "reconstruction": "autoencoder reconstructions",
    "smote": "SMOTE (pixels)",
    "deepsmote": "DeepSMOTE",
}


def reconstruct(bundle: str | os.PathLike, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """decode(encode(images)) through the bundle, uint8 in the input's layout (N, H, W[, C])."""
    models = open_models(load_bundle(bundle), "auto", threads)
    decoded = models.decode(models.encode(to_model(images)))
    return from_model(decoded, grayscale_2d=images.ndim == 3)


def sample_quality(
    fit: LabelledImages,
    reference: LabelledImages,
    feature_train: LabelledImages,
    bundle: str | os.PathLike,
    classifier: ClassifierConfig,
    *,
    seed: int = 0,
    max_per_class: int = 1000,
    k: int = DEFAULT_K,
    k_neighbors: int = 5,
    device: str = "auto",
    threads: int | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Per-class Fréchet distance, precision and recall of each set against real held-out images.

    Parameters
    ----------
    fit : LabelledImages
        The images the oversamplers and the autoencoder learn from (the protocol's fit split).
    reference : LabelledImages
        Real images of every class, disjoint from ``fit`` and ``feature_train``: the target.
    feature_train : LabelledImages
        Real, balanced images, disjoint from ``reference``: the feature classifier's training set
        (a tenth of each class is held out to select its weights).
    bundle : path-like
    classifier : ClassifierConfig
        The feature classifier; its penultimate layer is the feature space.
    seed : int
        Seeds the classifier, the oversamplers and the choice of real training images.
    max_per_class : int
        Per class ``m = min(fit images of the class, max_per_class)``: every set has m images, so
        the sets' scores are comparable (the Fréchet distance is biased upwards at small m).
    k : int
        The precision/recall neighbourhood size.
    k_neighbors : int
        k of both SMOTEs.
    device, threads, log
        As for :func:`evaluate`.

    Returns
    -------
    dict
        ``settings``, ``classes``, ``feature_classifier`` (its validation ACSA) and ``sets``:
        per set, per class ``{frechet, precision, recall, n_real, n_fake}`` and their means.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    n_classes = len(fit.classes)
    began = time.perf_counter()
    feature_fit_idx, feature_val_idx = validation_split(feature_train.labels, n_classes, 0.1, seed)
    trained = train_classifier(
        feature_train.images[feature_fit_idx],
        feature_train.labels[feature_fit_idx],
        feature_train.images[feature_val_idx],
        feature_train.labels[feature_val_idx],
        n_classes,
        classifier,
        seed,
        torch_device,
    )
    seconds = time.perf_counter() - began
    log(f"[quality] feature classifier: validation ACSA {trained.best_val_acsa:.4f} ({seconds:.0f} s)")
    counts = fit.class_counts()
    sizes = np.minimum(counts, max_per_class)
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.permutation(np.flatnonzero(fit.labels == c))[: sizes[c]]) for c in range(n_classes)]
    real = {c: fit.images[chosen[c]] for c in range(n_classes)}
    recon = reconstruct(bundle, np.concatenate([real[c] for c in range(n_classes)]), threads)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    sets: dict[str, dict[int, np.ndarray]] = {
        "real": real,
        "reconstruction": {c: recon[starts[c] : starts[c + 1]] for c in range(n_classes)},
    }
    # Each class grows by m images, so every class, the majority included, gets m synthetic ones.
    strategy = {c: int(counts[c] + sizes[c]) for c in range(n_classes)}
    k_used = effective_k(counts, k_neighbors)
    for method in ("smote", "deepsmote"):
        images, labels = resample(method, fit.images, fit.labels, seed, k_used, bundle, threads, strategy)
        new_images, new_labels = images[len(fit.images) :], labels[len(fit.images) :]
        sets[method] = {c: new_images[new_labels == c] for c in range(n_classes)}
    ref_labels = _aligned(reference, fit.classes, "reference")
    reference_features = {
        c: embed(trained.model, reference.images[ref_labels == c][:max_per_class], torch_device)
        for c in range(n_classes)
    }
    results: dict[str, Any] = {
        "settings": {
            "seed": seed,
            "max_per_class": max_per_class,
            "k": k,
            "k_neighbors_used": k_used,
            "classifier": asdict(classifier),
            "feature_dim": trained.model.feature_dim,
        },
        "classes": list(fit.classes),
        "images_per_class": sizes.tolist(),
        "feature_classifier": {"val_acsa": trained.best_val_acsa, "best_step": trained.best_step},
        "sets": {},
    }
    for name in QUALITY_SETS:
        per_class: list[dict[str, Any] | None] = []
        for c in range(n_classes):
            fake_features = embed(trained.model, sets[name][c], torch_device)
            # k-NN radii need more than k points; such a class is left out of the means.
            if min(len(fake_features), len(reference_features[c])) <= k:
                per_class.append(None)
                continue
            per_class.append(asdict(compare(reference_features[c], fake_features, k)))
        scored = [q for q in per_class if q is not None]
        results["sets"][name] = {
            "per_class": per_class,
            **{key: float(np.mean([q[key] for q in scored])) for key in ("frechet", "precision", "recall")},
        }
        entry = results["sets"][name]
        log(
            f"[quality] {name}: mean Fréchet {entry['frechet']:.3f}, precision {entry['precision']:.3f}, "
            f"recall {entry['recall']:.3f} over {len(scored)} classes"
        )
    return results


def quality_markdown(results: dict[str, Any]) -> str:
    """The sample-quality results as markdown: means, then the Fréchet distance per class."""
    classes, sets = results["classes"], results["sets"]
    lines = [
        "| images vs real held-out images | Fréchet distance ↓ | precision ↑ | recall ↑ |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {QUALITY_TITLES[n]} | {e['frechet']:.3f} | {e['precision']:.3f} | {e['recall']:.3f} |"
        for n, e in sets.items()
    ]
    sizes = ", ".join(map(str, results["images_per_class"]))
    lines += ["", f"Fréchet distance per class (images per set: {sizes}; -: too few to score)", ""]
    lines += ["| images | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [
        f"| {QUALITY_TITLES[n]} | "
        + " | ".join("-" if q is None else f"{q['frechet']:.2f}" for q in e["per_class"])
        + " |"
        for n, e in sets.items()
    ]
    return "\n".join(lines) + "\n"
