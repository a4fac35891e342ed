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
from .latent_samplers import base_weights, check_sampler
from .layout import ImageLayout
from .plan import Draws, Shard, ShardPlan, Unit, draw_shard, plan_shards

# Encoding always runs in batches of this size, whatever the caller's batch size, so the
# codes (and everything drawn from them) do not depend on it.
ENCODE_BATCH = 256


@dataclass(frozen=True)
class ClassLatents:
    """A class's codes and each code's nearest neighbours within the class.

    Attributes
    ----------
    codes : np.ndarray
        float32, shape (n, Z).
    neighbors : np.ndarray
        int64, shape (n, k_eff), indices into ``codes``, nearest first, self excluded.
    weights : np.ndarray or None
        float64, shape (n,): each code's weight as a base under a latent sampler
        (`latent_samplers`); None for uniform bases (SMOTE).
    """

    codes: np.ndarray
    neighbors: np.ndarray
    weights: np.ndarray | None = None

    @property
    def n_neighbors(self) -> int:
        """k_eff: neighbours per code."""
        return int(self.neighbors.shape[1])

    @property
    def n_bases(self) -> int:
        """Codes that can be drawn as bases."""
        return len(self.codes) if self.weights is None else int(np.count_nonzero(self.weights))


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
    if len(images) < 2:
        raise InvalidInputError(
            f"class '{class_name}' has {len(images)} sample(s); SMOTE needs at least 2 to interpolate. "
            "Add samples or leave the class out of the sampling strategy"
        )
    codes = encode_class(models, images, class_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neighbors, _ = kneighbors(codes, k_neighbors)
    if caught:
        warnings.warn(
            f"class '{class_name}' has {len(images)} samples: using {neighbors.shape[1]} neighbours instead of "
            f"{k_neighbors}",
            stacklevel=2,
        )
    return ClassLatents(codes, neighbors)


def encode_class(models: Models, images: np.ndarray, class_name: str) -> np.ndarray:
    """The codes of a class's images, float32 (n, Z), encoded in batches of ``ENCODE_BATCH``.

    Raises
    ------
    DeepSMOTEError
        If the encoder yields NaN or inf.
    """
    codes = models.encode(images, batch_size=ENCODE_BATCH)
    if not np.isfinite(codes).all():
        raise DeepSMOTEError(f"the encoder produced NaN or inf codes for class '{class_name}'; the bundle is broken")
    return codes


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
        sampler: str = "smote",
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
        sampler : {'smote', 'borderline', 'adasyn'}
            Which codes serve as bases (`latent_samplers`); the latter two encode every class.
        """
        check_sampler(sampler)
        set_kernel_threads(threads)
        latents = tuple(
            fit_class(models, layout.to_model(images[labels == c]), k_neighbors, class_names[c]) if new > 0 else None
            for c, new in enumerate(int(n) for n in new_counts)
        )
        if sampler != "smote":
            codes = [
                fitted.codes
                if fitted is not None
                else encode_class(models, layout.to_model(images[labels == c]), class_names[c])
                for c, fitted in enumerate(latents)
            ]
            grows = [fitted is not None for fitted in latents]
            weights = base_weights(sampler, codes, labels, grows, k_neighbors, class_names)
            latents = tuple(
                None if fitted is None else replace(fitted, weights=w)
                for fitted, w in zip(latents, weights, strict=True)
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

    def keeping_originals(self, images: np.ndarray) -> Synthesizer:
        """A copy that also holds each class's originals, taken from ``images`` (the fitted X)."""
        return replace(self, originals=tuple(images[m] for m in self.members), _models=self._models)

    def draws(self, shard: Shard) -> Draws:
        """The shard's random choices (``docs/design.md`` §4)."""
        latents = self.latents[shard.class_index]
        if latents is None:
            raise ValueError(f"class {shard.class_index} was not fitted for growth")
        return draw_shard(self.seed, shard, len(latents.codes), latents.n_neighbors, latents.weights)

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
        """The images of one shard in the caller's layout and dtype, shape (shard.count, *layout.shape)."""
        return self.layout.from_model(self.model_images(shard))

    def samples(self, unit: Unit) -> Samples:
        """The images of one output unit, in its written order, with each sample's provenance."""
        classes, synthetic, position = unit.order()
        images = np.empty((unit.count, *self.layout.shape), dtype=self.layout.dtype)
        base = np.empty(unit.count, dtype=np.int64)
        neighbor = np.full(unit.count, -1, dtype=np.int64)
        gap = np.full(unit.count, np.nan, dtype=np.float32)
        for part in unit.real:
            rows = (classes == part.class_index) & ~synthetic
            images[rows] = self.originals[part.class_index][part.start + position[rows]]
            base[rows] = self.members[part.class_index][part.start + position[rows]]
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
