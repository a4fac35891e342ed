"""The DeepSMOTE over-sampler, with imbalanced-learn's conventions (``docs/design.md`` §7).

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .bundle import Bundle, load_bundle, open_models
from .errors import DeepSMOTEError
from .layout import ImageLayout
from .plan import DEFAULT_SHARD_SIZE
from .strategy import new_sample_counts
from .synthesis import Synthesizer

SamplingStrategy = str | float | Mapping[Any, int] | Callable[[np.ndarray], Mapping[Any, int]]


class DeepSMOTE:
    """Over-sample minority classes by SMOTE in a trained autoencoder's latent space.

    Parameters
    ----------
    bundle : str or path-like
        A model bundle directory (``deepsmote train`` makes one).
    sampling_strategy : str, float, dict or callable, default 'auto'
        imbalanced-learn's meaning: ``'auto'`` (= ``'not majority'``), ``'minority'``,
        ``'not minority'``, ``'all'``, a float (two classes), ``{class: count after}``, or a
        callable ``y -> dict``.
    k_neighbors : int, default 5
        Neighbours within a class to interpolate towards.
    random_state : int or None, default None
        Seed; the same seed gives the same bytes whatever ``batch_size`` or thread count.
    provider : {'auto', 'cpu', 'cuda'}, default 'auto'
        onnxruntime execution provider.
    batch_size : int or None, default None
        Codes decoded per onnxruntime call; None takes the provider's default (32 on the CPU,
        256 on a GPU).
    n_threads : int or None, default None
        Threads for onnxruntime and the numba kernels; all cores when None.
    shard_size : int, default 1000
        Samples drawn from one seed; part of what fixes the output bytes.
    precision : {'fp32', 'fp16'}, default 'fp32'
        Decoder arithmetic; fp16 is for GPUs and needs the ``onnx`` package.

    Attributes
    ----------
    sampling_strategy_ : dict
        Class → number of synthetic samples, for the classes that get any.
    classes_ : np.ndarray
        The distinct labels, in the order used for seeding.
    provider_ : str
        The onnxruntime provider the sessions run on.
    seed_ : int
        The seed used (drawn once when ``random_state`` is None).
    synthesizer_ : Synthesizer
        The fitted codes, neighbours and shard plan; turns a shard into images.
    """

    def __init__(
        self,
        bundle: str | os.PathLike | Bundle,
        sampling_strategy: SamplingStrategy = "auto",
        k_neighbors: int = 5,
        random_state: int | None = None,
        provider: str = "auto",
        batch_size: int | None = None,
        n_threads: int | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        precision: str = "fp32",
    ) -> None:
        self.bundle = bundle
        self.sampling_strategy = sampling_strategy
        self.k_neighbors = k_neighbors
        self.random_state = random_state
        self.provider = provider
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.shard_size = shard_size
        self.precision = precision

    # --- fitting -----------------------------------------------------------------------------

    def _check_params(self) -> None:
        for name in ("k_neighbors", "batch_size", "shard_size"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise DeepSMOTEError(f"{name} must be a positive integer, got {value!r}")
        if self.n_threads is not None and (not isinstance(self.n_threads, int) or self.n_threads < 1):
            raise DeepSMOTEError(f"n_threads must be a positive integer or None, got {self.n_threads!r}")
        if self.random_state is not None and (
            isinstance(self.random_state, bool)
            or not isinstance(self.random_state, int | np.integer)
            or self.random_state < 0
        ):
            raise DeepSMOTEError(f"random_state must be a non-negative integer or None, got {self.random_state!r}")

    def fit(self, X: np.ndarray, y: np.ndarray) -> DeepSMOTE:
        """Encode the classes that will grow and find their neighbours.

        Parameters
        ----------
        X : np.ndarray
            Images, shape (N, H, W), (N, H, W, C) or (N, H*W*C); integer 0..255 or float 0..1.
        y : np.ndarray
            Labels, shape (N,).

        Returns
        -------
        self
        """
        self._check_params()
        X, y = np.asarray(X), np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise DeepSMOTEError(f"y must have shape ({len(X)},) to match X, got {y.shape}")
        if len(X) == 0:
            raise DeepSMOTEError("X is empty")
        self.bundle_: Bundle = self.bundle if isinstance(self.bundle, Bundle) else load_bundle(self.bundle)
        self.layout_ = ImageLayout.of(X, self.bundle_.image_shape)
        self.classes_, labels = np.unique(y, return_inverse=True)
        labels = labels.ravel()
        counts = np.bincount(labels, minlength=len(self.classes_))
        new = new_sample_counts(self.sampling_strategy, counts, list(self.classes_), y)
        self.sampling_strategy_ = {self.classes_[c].item(): int(n) for c, n in enumerate(new) if n > 0}
        self.seed_ = (
            int(self.random_state) if self.random_state is not None else int(np.random.SeedSequence().entropy % 2**63)
        )
        models = open_models(self.bundle_, self.provider, self.n_threads, self.precision)
        self.provider_ = models.provider
        self.synthesizer_ = Synthesizer.fit(
            models,
            self.layout_,
            X,
            labels,
            [str(c) for c in self.classes_],
            new,
            k_neighbors=self.k_neighbors,
            seed=self.seed_,
            shard_size=self.shard_size,
            threads=self.n_threads,
            batch_size=self.batch_size,
            precision=self.precision,
        )
        self._X, self._y = X, y
        return self

    # --- sampling ----------------------------------------------------------------------------

    def iter_synthetic(
        self, X: np.ndarray | None = None, y: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the synthetic samples one shard at a time, for jobs larger than memory.

        Parameters
        ----------
        X, y : np.ndarray, optional
            Fit on these first; omit them after :meth:`fit`.

        Yields
        ------
        X_new : np.ndarray
            Shape (m, *X.shape[1:]), X's dtype.
        y_new : np.ndarray
            Shape (m,), y's dtype.
        """
        if X is not None or y is not None:
            self.fit(X, y)
        elif not hasattr(self, "synthesizer_"):
            raise DeepSMOTEError("call fit(X, y) first, or pass X and y")
        for shard in self.synthesizer_.shards:
            yield (
                self.synthesizer_.images(shard),
                np.full(shard.count, self.classes_[shard.class_index], dtype=self.classes_.dtype),
            )

    def fit_resample(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the originals followed by the synthetic samples.

        Parameters
        ----------
        X : np.ndarray
            Shape (N, H, W), (N, H, W, C) or (N, H*W*C); integer 0..255 or float 0..1.
        y : np.ndarray
            Shape (N,).

        Returns
        -------
        X_resampled : np.ndarray
            Shape (N + M, *X.shape[1:]), X's dtype.
        y_resampled : np.ndarray
            Shape (N + M,), y's dtype.
        """
        self.fit(X, y)
        _check_fits_in_memory(self._X, self.synthesizer_.shards.total)
        parts = list(self.iter_synthetic())
        X_new = [p[0] for p in parts]
        y_new = [p[1] for p in parts]
        return np.concatenate([self._X, *X_new]), np.concatenate([self._y, *y_new])


def _check_fits_in_memory(X: np.ndarray, new: int) -> None:
    """Refuse, before any sample is made, a result larger than this machine's memory."""
    need = (len(X) + new) * X[0].nbytes if len(X) else 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    if need > memory:
        raise DeepSMOTEError(
            f"fit_resample would return {len(X) + new} samples, {need / 1e9:.3g} GB, more than this machine's "
            f"{memory / 1e9:.3g} GB of memory; ask for fewer with `sampling_strategy`, or use iter_synthetic"
        )
