"""The DeepSMOTE steps between a class's images and its synthetic images, and the fitted state
that turns a shard into images.

encode (onnxruntime) → exact k-NN within the class → SMOTE interpolation of drawn pairs →
decode (onnxruntime); the two middle steps run in numpy for small work and in numba for large.
Each step takes and returns plain numpy arrays. :class:`Synthesizer` holds what fitting found
(codes, neighbours, the shard plan) and is the one place where a shard becomes images: the
sampler, the local engine and the Ray workers all call :meth:`Synthesizer.images`.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from deepsmote.kernels import interpolate, kneighbors
from deepsmote.kernels import set_num_threads as set_kernel_threads

from .bundle import Bundle, Models, open_models
from .errors import DeepSMOTEError, InvalidInputError
from .layout import ImageLayout
from .plan import Draws, Shard, ShardPlan, Unit, draw_shard, plan_shards

# Encoding always runs in batches of this size, whatever the caller's batch size, so the
# codes (and everything drawn from them) do not depend on it.
ENCODE_BATCH = 256
# Float32 decoded pixels held at once while a shard is converted to the caller's dtype.
DECODE_SLICE_BYTES = 16 << 20


@dataclass(frozen=True)
class ClassLatents:
    """A class's codes and each code's nearest neighbours within the class.

    Attributes
    ----------
    codes : np.ndarray
        float32, shape (n, Z).
    neighbors : np.ndarray
        int64, shape (n, k_eff), indices into ``codes``, nearest first, self excluded.
    """

    codes: np.ndarray
    neighbors: np.ndarray

    @property
    def n_neighbors(self) -> int:
        """k_eff: neighbours per code."""
        return int(self.neighbors.shape[1])


def fit_class(models: Models, images: np.ndarray, k_neighbors: int, class_name: str) -> ClassLatents:
    """Encode a class and find each code's k nearest neighbours.

    Parameters
    ----------
    models : Models
    images : np.ndarray
        float32, shape (n, C, H, W), the class's real images in [-1, 1].
    k_neighbors : int
        Neighbours to keep; a class with ``n <= k`` keeps ``n - 1`` and warns.
    class_name : str
        For messages.

    Raises
    ------
    DeepSMOTEError
        If the class has fewer than two samples, or the encoder yields NaN or inf.
    """
    check_class_size(len(images), class_name)
    return class_latents(models.encode(images, batch_size=ENCODE_BATCH), k_neighbors, class_name)


def check_class_size(count: int, class_name: str) -> None:
    """Refuse to grow a class of fewer than two samples (before anything is encoded)."""
    if count < 2:
        raise InvalidInputError(
            f"class '{class_name}' has {count} sample(s); SMOTE needs at least 2 to interpolate. "
            "Add samples or leave the class out of the sampling strategy"
        )


def class_latents(codes: np.ndarray, k_neighbors: int, class_name: str) -> ClassLatents:
    """A class's codes (float32 (n, Z)) with each code's k nearest neighbours within the class.

    Raises
    ------
    DeepSMOTEError
        If the class has fewer than two codes, or a code is NaN or inf.
    """
    check_class_size(len(codes), class_name)
    if not np.isfinite(codes).all():
        raise DeepSMOTEError(f"the encoder produced NaN or inf codes for class '{class_name}'; the bundle is broken")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neighbors, _ = kneighbors(codes, k_neighbors)
    if caught:
        warnings.warn(
            f"class '{class_name}' has {len(codes)} samples: using {neighbors.shape[1]} neighbours instead of "
            f"{k_neighbors}",
            stacklevel=3,
        )
    return ClassLatents(codes, neighbors)


def synthesize(models: Models, latents: ClassLatents, draws: Draws, batch_size: int) -> np.ndarray:
    """Decode the interpolated codes of one shard.

    Returns
    -------
    np.ndarray
        float32, shape (m, C, H, W), values in [-1, 1].
    """
    z = interpolate(latents.codes, latents.neighbors, draws.base, draws.slot, draws.gap)
    return models.decode(z, batch_size=batch_size)


@dataclass(frozen=True)
class Samples:
    """One output unit's samples in written order, with where each came from.

    Attributes
    ----------
    images : np.ndarray
        Shape (m, *layout.shape), the caller's dtype.
    class_index : np.ndarray
        int64, shape (m,).
    synthetic : np.ndarray
        bool, shape (m,).
    base : np.ndarray
        int64, shape (m,), the DATA index of the base sample (of the sample itself for an original).
    neighbor : np.ndarray
        int64, shape (m,), the DATA index of the neighbour interpolated towards; -1 for an original.
    gap : np.ndarray
        float32, shape (m,), the interpolation factor; NaN for an original.
    """

    images: np.ndarray
    class_index: np.ndarray
    synthetic: np.ndarray
    base: np.ndarray
    neighbor: np.ndarray
    gap: np.ndarray


@dataclass(frozen=True)
class Synthesizer:
    """A fitted job: everything needed to turn any of its shards into images.

    Made by :meth:`fit`; picklable (the onnxruntime sessions are not shipped, a copy opens its own
    on first use), so an engine can send it to other processes or machines.

    Attributes
    ----------
    bundle : Bundle
    layout : ImageLayout
        The caller's image shape and dtype, which :meth:`images` returns.
    seed : int
    shards : ShardPlan
        The job's shards, in class order then shard order (made lazily: memory in the classes).
    latents : tuple of ClassLatents or None
        Per class, its codes and neighbours; None for a class that does not grow.
    provider : str
        The onnxruntime provider the sessions run on (an onnxruntime provider name).
    threads : int or None
        CPU threads for onnxruntime and the numba kernels.
    batch_size : int or None
        Codes per decoder call; the provider's default when None.
    precision : {'fp32', 'fp16'}
    members : tuple of np.ndarray
        Per class, int64 (n_c,), the DATA index of each of its samples (provenance).
    originals : tuple of np.ndarray
        Per class, its original images in the caller's layout, when the job copies them
        (:meth:`keeping_originals`); empty otherwise.
    source : ImageSource or None
        Where a job that copies the originals reads them by DATA index when it writes them, instead
        of holding them (:meth:`from_codes`); None otherwise.
    """

    bundle: Bundle
    layout: ImageLayout
    seed: int
    shards: ShardPlan
    latents: tuple[ClassLatents | None, ...]
    provider: str
    threads: int | None
    batch_size: int | None
    precision: str
    members: tuple[np.ndarray, ...] = ()
    originals: tuple[np.ndarray, ...] = ()
    source: Any = None
    _models: list[Models] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def fit(
        cls,
        models: Models,
        layout: ImageLayout,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        new_counts: np.ndarray,
        *,
        k_neighbors: int,
        seed: int,
        shard_size: int,
        threads: int | None,
        batch_size: int | None,
        precision: str,
    ) -> Synthesizer:
        """Encode the classes that grow, find their neighbours and plan their shards.

        Parameters
        ----------
        models : Models
            The bundle's open sessions; kept for :meth:`images`.
        layout : ImageLayout
            The layout of ``images``.
        images : np.ndarray
            The caller's images, shape (N, *layout.shape).
        labels : np.ndarray
            int, shape (N,), class indices in ``range(len(class_names))``.
        class_names : list of str
            For messages.
        new_counts : np.ndarray
            int, shape (K,), synthetic samples per class (the strategy, resolved once).
        """
        set_kernel_threads(threads)
        latents = tuple(
            fit_class(models, layout.to_model(images[labels == c]), k_neighbors, class_names[c]) if new > 0 else None
            for c, new in enumerate(int(n) for n in new_counts)
        )
        shards = plan_shards(new_counts, shard_size)
        members = tuple(np.flatnonzero(labels == c) for c in range(len(new_counts)))
        return cls(
            models.bundle,
            layout,
            seed,
            shards,
            latents,
            models.provider,
            threads,
            batch_size,
            precision,
            members=members,
            _models=[models],
        )

    @classmethod
    def from_codes(
        cls,
        models: Models,
        layout: ImageLayout,
        codes: tuple[np.ndarray | None, ...],
        members: tuple[np.ndarray, ...],
        class_names: list[str],
        new_counts: np.ndarray,
        *,
        k_neighbors: int,
        seed: int,
        shard_size: int,
        threads: int | None,
        batch_size: int | None,
        precision: str,
        source: Any = None,
    ) -> Synthesizer:
        """:meth:`fit` from codes already made (streamed from DATA or read from a latent cache).

        Parameters
        ----------
        codes : tuple of np.ndarray or None
            Per class, float32 (n_c, Z) in DATA order; may be None for a class that does not grow.
        members : tuple of np.ndarray
            Per class, int64 (n_c,), the DATA index of each code.
        source : ImageSource, optional
            Where the originals are read by index when a unit copies them.
        """
        set_kernel_threads(threads)
        latents = tuple(
            class_latents(codes[c], k_neighbors, class_names[c]) if new > 0 else None
            for c, new in enumerate(int(n) for n in new_counts)
        )
        shards = plan_shards(new_counts, shard_size)
        return cls(
            models.bundle,
            layout,
            seed,
            shards,
            latents,
            models.provider,
            threads,
            batch_size,
            precision,
            members=members,
            source=source,
            _models=[models],
        )

    def keeping_originals(self, images: np.ndarray) -> Synthesizer:
        """A copy that also holds each class's originals, taken from ``images`` (the fitted X)."""
        return replace(self, originals=tuple(images[m] for m in self.members), _models=self._models)

    def draws(self, shard: Shard) -> Draws:
        """The shard's random choices (``docs/design.md`` §4)."""
        latents = self.latents[shard.class_index]
        if latents is None:
            raise ValueError(f"class {shard.class_index} was not fitted for growth")
        return draw_shard(self.seed, shard, len(latents.codes), latents.n_neighbors)

    def model_images(self, shard: Shard) -> np.ndarray:
        """The model-space images of one shard.

        Returns
        -------
        np.ndarray
            float32, shape (shard.count, C, H, W), values in [-1, 1].
        """
        latents = self.latents[shard.class_index]
        return synthesize(self.models(), latents, self.draws(shard), self.batch_size)

    def images(self, shard: Shard) -> np.ndarray:
        """The images of one shard in the caller's layout and dtype, shape (shard.count, *layout.shape).

        Decoded and converted a slice of codes at a time, so the float32 images of a whole shard
        (1,000 x 196 KB at 128x128x3) are never held at once; the bytes do not depend on the slices.
        """
        latents = self.latents[shard.class_index]
        draws = self.draws(shard)
        codes = interpolate(latents.codes, latents.neighbors, draws.base, draws.slot, draws.gap)
        out = np.empty((shard.count, *self.layout.shape), dtype=self.layout.dtype)
        step = max(self.batch_size or 1, DECODE_SLICE_BYTES // (4 * int(np.prod(self.layout.image_shape))))
        for start in range(0, shard.count, step):
            decoded = self.models().decode(codes[start : start + step], batch_size=self.batch_size)
            out[start : start + step] = self.layout.from_model(decoded)
        return out

    def samples(self, unit: Unit) -> Samples:
        """The images of one output unit, in its written order, with each sample's provenance."""
        classes, synthetic, position = unit.order()
        images = np.empty((unit.count, *self.layout.shape), dtype=self.layout.dtype)
        base = np.empty(unit.count, dtype=np.int64)
        neighbor = np.full(unit.count, -1, dtype=np.int64)
        gap = np.full(unit.count, np.nan, dtype=np.float32)
        for part in unit.real:
            rows = (classes == part.class_index) & ~synthetic
            base[rows] = self.members[part.class_index][part.start + position[rows]]
            if self.originals:
                images[rows] = self.originals[part.class_index][part.start + position[rows]]
            else:  # read again from DATA, a unit at a time
                images[rows] = self.source.take(base[rows])
        for shard in unit.synthetic:
            rows = (classes == shard.class_index) & synthetic
            draws = self.draws(shard)
            neighbors = self.latents[shard.class_index].neighbors
            members = self.members[shard.class_index]
            images[rows] = self.images(shard)[position[rows]]
            base[rows] = members[draws.base[position[rows]]]
            neighbor[rows] = members[neighbors[draws.base, draws.slot][position[rows]]]
            gap[rows] = draws.gap[position[rows]]
        return Samples(images, classes, synthetic, base, neighbor, gap)

    def models(self) -> Models:
        """The sessions, opened on this synthesizer's provider on first use in a process."""
        if not self._models:
            # A copy in another process runs on the provider the job was fitted on, never a
            # silent fallback that could change the bytes.
            provider = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
            self._models.append(open_models(self.bundle, provider, self.threads, self.precision))
            set_kernel_threads(self.threads)
        return self._models[0]

    def with_threads(self, threads: int) -> Synthesizer:
        """A copy whose sessions and kernels use ``threads`` (for a worker with its own CPUs)."""
        return replace(self, threads=threads, _models=[])

    def __getstate__(self) -> dict[str, Any]:
        # onnxruntime sessions do not pickle: a copy opens its own.
        return {**self.__dict__, "_models": []}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
