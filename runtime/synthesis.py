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
from deepsmote.kernels import NeighborRows, interpolate, kneighbors, row_kernel
from deepsmote.kernels import set_num_threads as set_kernel_threads
from deepsmote.kernels.knn import check_codes

from .bundle import Bundle, Models, open_models, provider_option
from .errors import DeepSMOTEError, InvalidInputError
from .gate import DEFAULT_MAX_DRAW_RATIO, gate_shard
from .latent_samplers import base_weights, check_sampler, codes_in_data_order
from .layout import ImageLayout
from .mixing import draw_repeats
from .plan import Draws, Shard, ShardPlan, Unit, draw_shard, plan_shards
from .remix import RemixPool, RemixSettings, check_remix_gate, mix_codes, one_hot, remix_pool, remix_targets

# Float32 decoded pixels held at once while a shard is converted to the caller's dtype: 21 images
# at 128x128x3, eleven calls of the decoder's 2 codes.
DECODE_SLICE_BYTES = 4 << 20


@dataclass(frozen=True)
class ClassLatents:
    """A class's codes and each code's nearest neighbours within the class.

    Attributes
    ----------
    codes : np.ndarray
        float32, shape (n, Z).
    neighbors : np.ndarray or NeighborRows
        int64, shape (n, k_eff), indices into ``codes``, nearest first, self excluded; or, for a
        class above `kernels.knn.SMALL_N` codes whose job draws few bases, and for every class
        above `kernels.knn.MEDIUM_N` (`kernels.row_kernel`), the search that finds the rows a
        shard draws when it draws them. Read it through `neighbors_of`.
    weights : np.ndarray or None
        float64, shape (n,): each code's weight as a base under a latent sampler
        (`latent_samplers`); None for uniform bases (SMOTE).
    """

    codes: np.ndarray
    neighbors: np.ndarray | NeighborRows
    weights: np.ndarray | None = None

    @property
    def n_neighbors(self) -> int:
        """k_eff: neighbours per code."""
        if isinstance(self.neighbors, NeighborRows):
            return self.neighbors.n_neighbors
        return int(self.neighbors.shape[1])

    def neighbors_of(self, bases: np.ndarray) -> np.ndarray:
        """int64, shape (n, k_eff): each code's neighbours, found at least for the codes ``bases`` (shape (m,)).

        The other rows hold -1 where the neighbours are found on demand and not asked for yet.
        """
        if isinstance(self.neighbors, NeighborRows):
            return self.neighbors(bases)
        return self.neighbors

    def with_whole_search(self) -> ClassLatents:
        """This class with every code's neighbours found now where numba would find them row by
        row (the same bytes), for copies that would each search their own rows: Ray's actors."""
        if isinstance(self.neighbors, NeighborRows) and self.neighbors.kernel == "numba":
            return replace(self, neighbors=self.neighbors.whole().copy())
        return self

    @property
    def n_bases(self) -> int:
        """Codes that can be drawn as bases."""
        return len(self.codes) if self.weights is None else int(np.count_nonzero(self.weights))


# The first word of an epoch's seed material: no job seed is a list, so no epoch's draws can
# repeat another job's.
EPOCH_KEY = 0x45504F43  # "EPOC"


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` > 0 of a job seeded ``seed``: 128 bits of
    ``SeedSequence([EPOCH_KEY, seed, epoch])``, a function of the two and nothing else."""
    words = np.random.SeedSequence([EPOCH_KEY, seed, epoch]).generate_state(4, np.uint32)
    return int.from_bytes(words.astype("<u4").tobytes(), "little")


def check_class_size(count: int, class_name: str) -> None:
    """Refuse to grow a class of fewer than two samples (before anything is encoded)."""
    if count < 2:
        raise InvalidInputError(
            f"class '{class_name}' has {count} sample(s); SMOTE needs at least 2 to interpolate. "
            "Add samples or leave the class out of the sampling strategy"
        )


def draw_counts(synthetic: np.ndarray, filter_threshold: float | None, max_draw_ratio: int) -> np.ndarray:
    """int64, shape (K,): the most bases a job draws from each class, from its synthetic counts (K,).

    One per synthetic sample, or, with the quality gate, one per candidate of its rounds.
    """
    rounds = 1 if filter_threshold is None else max_draw_ratio
    return np.asarray(synthetic, dtype=np.int64) * rounds


def class_latents(codes: np.ndarray, k_neighbors: int, class_name: str, draws: int) -> ClassLatents:
    """A class's codes (float32 (n, Z)) with each code's k nearest neighbours within the class.

    A class whose job draws at most ``draws`` bases from it, few against its n codes, and any class
    above `kernels.knn.MEDIUM_N` codes find the neighbours of the bases its shards draw as they
    draw them (`kernels.NeighborRows`, in the kernel `kernels.row_kernel` names), so the first
    shard waits for its own rows only; any other finds every code's now (`kernels.kneighbors`).

    Raises
    ------
    DeepSMOTEError
        If the class has fewer than two codes, or a code is NaN or inf.
    """
    check_class_size(len(codes), class_name)
    if not np.isfinite(codes).all():
        raise DeepSMOTEError(f"the encoder produced NaN or inf codes for class '{class_name}'; the bundle is broken")
    try:
        check_codes(codes)
    except ValueError as exc:
        raise DeepSMOTEError(
            f"the codes of class '{class_name}' cannot be searched ({exc}); the bundle's encoder or CODES is broken"
        ) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernel = row_kernel(len(codes), draws)
        if kernel is None:
            latents = ClassLatents(codes, kneighbors(codes, k_neighbors)[0])
        else:
            latents = ClassLatents(codes, NeighborRows(codes, k_neighbors, kernel))
    if caught:
        warnings.warn(
            f"class '{class_name}' has {len(codes)} samples: using {latents.n_neighbors} neighbours instead of "
            f"{k_neighbors}",
            stacklevel=3,
        )
    return latents


def encoded_classes(new_counts: np.ndarray, synthetic_counts: np.ndarray | None, sampler: str) -> np.ndarray:
    """bool, shape (K,): the classes a job encodes: those with synthetic samples, or all under a
    latent sampler other than SMOTE (its k-NN runs across classes)."""
    synthetic = np.asarray(new_counts if synthetic_counts is None else synthetic_counts)
    return np.ones(len(synthetic), dtype=bool) if sampler != "smote" else synthetic > 0


def encode_class(models: Models, images: np.ndarray, class_name: str) -> np.ndarray:
    """The codes of a class's images, float32 (n, Z), encoded in calls of ``models.encode_batch``.

    Raises
    ------
    DeepSMOTEError
        If the encoder yields NaN or inf.
    """
    codes = models.encode(images)
    if not np.isfinite(codes).all():
        raise DeepSMOTEError(f"the encoder produced NaN or inf codes for class '{class_name}'; the bundle is broken")
    return codes


def new_codes(latents: ClassLatents, draws: Draws, remix: RemixPool | None = None) -> np.ndarray:
    """The codes of one shard's draws, float32 (m, Z): SMOTE's interpolation within the class, or
    under latent Remix the mix of each base with its partner (:func:`.remix.mix_codes`)."""
    if draws.partner is not None:
        return mix_codes(latents.codes[draws.base], remix.codes[draws.partner], draws.gap)
    return interpolate(latents.codes, latents.neighbors_of(draws.base), draws.base, draws.slot, draws.gap)


def synthesize(
    models: Models, latents: ClassLatents, draws: Draws, batch_size: int, remix: RemixPool | None = None
) -> np.ndarray:
    """Decode the new codes of one shard (:func:`new_codes`).

    Returns
    -------
    np.ndarray
        float32, shape (m, C, H, W), values in [-1, 1].
    """
    return models.decode(new_codes(latents, draws, remix), batch_size=batch_size)


def gate_columns(bundle: Bundle, class_names: list[str], synthetic: np.ndarray) -> tuple[int, ...]:
    """Per class, the column of the bundle's classifier that scores it: the bundle class of its name.

    Raises
    ------
    InvalidInputError
        For a class that gets synthetic samples and is not one of the bundle's classes.
    """
    columns = {name: i for i, name in enumerate(bundle.classes)}
    for name, made in zip(class_names, synthetic, strict=True):
        if made and name not in columns:
            raise InvalidInputError(
                f"`filter_threshold`: class '{name}' is not one of the classes the bundle's classifier knows "
                f"({', '.join(bundle.classes[:6])}...); filter only data with the bundle's classes"
            )
    return tuple(columns.get(name, -1) for name in class_names)


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
        float32, shape (m,), the interpolation factor (under latent Remix the partner's weight);
        NaN for an original.
    targets : np.ndarray or None
        float32, shape (m, K): each sample's soft target over the job's classes, rows summing to 1,
        for a job that makes soft labels (latent Remix; one-hot for real samples); None otherwise.
    """

    images: np.ndarray
    class_index: np.ndarray
    synthetic: np.ndarray
    base: np.ndarray
    neighbor: np.ndarray
    gap: np.ndarray
    targets: np.ndarray | None = None


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
        CPU threads for onnxruntime, the numba kernels and the writers' PNG encoding.
    batch_size : int or None
        Codes per decoder call; the provider's default when None.
    precision : {'fp32', 'fp16'}
    members : tuple of np.ndarray
        Per class, int64 (n_c,), the DATA index of each of its samples (provenance).
    originals : tuple of np.ndarray
        Per class, its original images in the caller's layout, when the job copies or repeats
        them (:meth:`keeping_originals`, ``synthetic_counts``); empty otherwise.
    filter_threshold : float or None
        The quality gate (:mod:`.gate`): candidates need this probability of their class; None
        keeps every candidate.
    max_draw_ratio : int
        The gate's rounds of candidates per shard at most.
    gate_columns : tuple of int
        Per class, the classifier's output for it (the bundle class of the same name); empty
        without the gate.
    acceptance : dict
        Per class index, [accepted, drawn] candidates of the shards this object made (the gate's
        record for the summary; not shipped to other processes).
    source : ImageSource or None
        Where a job that copies or repeats the originals reads them by DATA index when it writes
        them, instead of holding them (:meth:`from_codes`); None otherwise.
    remix : RemixPool or None
        Latent Remix's partners and label rule (``sampler='remix'``); None for the other samplers.
    hard_labels : bool
        Under latent Remix, leave the soft targets out (each sample keeps its base's class).
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
    filter_threshold: float | None = None
    max_draw_ratio: int = DEFAULT_MAX_DRAW_RATIO
    gate_columns: tuple[int, ...] = ()
    acceptance: dict[int, list[int]] = field(default_factory=dict, repr=False, compare=False)
    source: Any = None
    remix: RemixPool | None = None
    hard_labels: bool = False
    _models: list[Models] = field(default_factory=list, repr=False, compare=False)
    # The last shard made, so that samples() and images() of one shard run the gate once.
    _last: list[tuple[Shard, Draws, np.ndarray]] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def fit(
        cls,
        models: Models,
        layout: ImageLayout,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        new_counts: np.ndarray,
        **options: Any,
    ) -> Synthesizer:
        """:meth:`from_codes` for images held in memory: encode the classes it needs first.

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
            int, shape (K,), new samples per class (the strategy, resolved once).
        **options
            :meth:`from_codes`'s keyword arguments, but ``source``.
        """
        members = tuple(np.flatnonzero(labels == c) for c in range(len(new_counts)))
        synthetic = options.get("synthetic_counts")
        encoded = encoded_classes(new_counts, synthetic, options.get("sampler", "smote"))
        for c in np.flatnonzero(np.asarray(new_counts if synthetic is None else synthetic) > 0):
            check_class_size(len(members[c]), class_names[c])  # before anything is encoded
        codes = tuple(
            encode_class(models, layout.to_model(images[m]), class_names[c]) if encoded[c] else None
            for c, m in enumerate(members)
        )
        repeats = synthetic is not None and not np.array_equal(synthetic, new_counts)
        fitted = cls.from_codes(models, layout, codes, members, class_names, new_counts, **options)
        return (
            replace(fitted, originals=tuple(images[m] for m in members), _models=fitted._models) if repeats else fitted
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
        sampler: str = "smote",
        synthetic_counts: np.ndarray | None = None,
        filter_threshold: float | None = None,
        max_draw_ratio: int = DEFAULT_MAX_DRAW_RATIO,
        remix: RemixSettings | None = None,
    ) -> Synthesizer:
        """Find the neighbours of the classes that grow and plan their shards, from their codes.

        Parameters
        ----------
        codes : tuple of np.ndarray or None
            Per class, float32 (n_c, Z) in DATA order; None for a class :func:`encoded_classes` leaves out.
        members : tuple of np.ndarray
            Per class, int64 (n_c,), the DATA index of each code.
        class_names : list of str
            For messages.
        new_counts : np.ndarray
            int, shape (K,), new samples per class (the strategy, resolved once).
        source : ImageSource, optional
            Where the originals are read by index when a unit copies or repeats them.
        sampler : {'smote', 'borderline', 'adasyn', 'remix'}
            Which codes serve as bases (`latent_samplers`); all but SMOTE need every class's codes.
        synthetic_counts : np.ndarray, optional
            int, shape (K,), how many of the new samples are synthetic, the rest repeats of real
            images (:mod:`.mixing`); all when None.
        filter_threshold : float, optional
            The quality gate's threshold (:mod:`.gate`); ``models`` must have the classifier open.
        max_draw_ratio : int
            The gate's rounds of candidates per shard at most.
        remix : RemixSettings, optional
            Latent Remix's settings with ``sampler='remix'`` [default: ``RemixSettings()``].

        Raises
        ------
        InvalidInputError
            For the gate with latent Remix (:func:`.remix.check_remix_gate`).
        """
        check_sampler(sampler)
        check_remix_gate(sampler, filter_threshold)
        set_kernel_threads(threads)
        synthetic = new_counts if synthetic_counts is None else synthetic_counts
        drawn = draw_counts(synthetic, filter_threshold, max_draw_ratio)
        if sampler == "remix":
            # A mix's partner comes from the pool, not from the class: no k-NN within the class.
            latents = tuple(
                ClassLatents(codes[c], np.zeros((len(codes[c]), 0), dtype=np.int64)) if made > 0 else None
                for c, made in enumerate(int(n) for n in synthetic)
            )
        else:
            latents = tuple(
                class_latents(codes[c], k_neighbors, class_names[c], int(drawn[c])) if made > 0 else None
                for c, made in enumerate(int(n) for n in synthetic)
            )
        pool = None
        if sampler != "smote":
            labels = np.empty(sum(len(m) for m in members), dtype=np.int64)
            for c, m in enumerate(members):
                labels[m] = c
            grows = [fitted is not None for fitted in latents]
            if sampler == "remix":
                settings = remix or RemixSettings()
                reference = codes_in_data_order(codes, labels)
                pool = remix_pool(reference, labels, len(members), np.asarray(grows), k_neighbors, settings)
            weighing = settings.base if sampler == "remix" else sampler
            weights = base_weights(weighing, list(codes), labels, grows, k_neighbors, class_names)
            latents = tuple(
                None if fitted is None else replace(fitted, weights=w)
                for fitted, w in zip(latents, weights, strict=True)
            )
        return cls(
            models.bundle,
            layout,
            seed,
            plan_shards(new_counts, shard_size, synthetic_counts),
            latents,
            models.provider,
            threads,
            batch_size,
            precision,
            members=members,
            filter_threshold=filter_threshold,
            max_draw_ratio=max_draw_ratio,
            gate_columns=() if filter_threshold is None else gate_columns(models.bundle, class_names, synthetic),
            source=source,
            remix=pool,
            _models=[models],
        )

    def keeping_originals(self, images: np.ndarray) -> Synthesizer:
        """A copy that also holds each class's originals, taken from ``images`` (the fitted X)."""
        return replace(
            self,
            originals=tuple(images[m] for m in self.members),
            acceptance=self.acceptance,
            _models=self._models,
            _last=self._last,
        )

    def draws(self, shard: Shard) -> Draws:
        """The draws of the shard's synthetic samples (``docs/design.md`` §4): with the gate, of those it kept."""
        if self.filter_threshold is not None:
            return self.made(shard)[0]
        latents = self.latents[shard.class_index]
        if latents is None:
            raise ValueError(f"class {shard.class_index} was not fitted for growth")
        return draw_shard(self.seed, shard, len(latents.codes), latents.n_neighbors, latents.weights, remix=self.remix)

    def made(self, shard: Shard) -> tuple[Draws, np.ndarray]:
        """The draws of the shard's synthetic samples (``docs/design.md`` §4) and their images.

        Without the gate, the shard's draws; with it, the candidates it kept (:func:`.gate.gate_shard`).

        Returns
        -------
        draws : Draws
            Shape (shard.synthetic_count,) each.
        images : np.ndarray
            float32, shape (shard.synthetic_count, C, H, W), values in [-1, 1].
        """
        if self._last and self._last[0][0] == shard:
            return self._last[0][1], self._last[0][2]
        latents = self.latents[shard.class_index]
        if latents is None:
            raise ValueError(f"class {shard.class_index} was not fitted for growth")
        if self.filter_threshold is None:
            draws = self.draws(shard)
            images = synthesize(self.models(), latents, draws, self.batch_size, self.remix)
        else:
            gated = gate_shard(
                self.models(),
                latents,
                self.seed,
                shard,
                threshold=self.filter_threshold,
                max_draw_ratio=self.max_draw_ratio,
                batch_size=self.batch_size,
                column=self.gate_columns[shard.class_index],
                class_name=self.bundle.classes[self.gate_columns[shard.class_index]],
            )
            draws, images = gated.draws, gated.images
            tally = self.acceptance.setdefault(shard.class_index, [0, 0])
            tally[0] += shard.synthetic_count
            tally[1] += gated.drawn
        self._last[:] = [(shard, draws, images)]
        return draws, images

    def images(self, shard: Shard, out: np.ndarray | None = None) -> np.ndarray:
        """The images of one shard in the caller's layout and dtype, shape (shard.count, *layout.shape):
        its synthetic samples, then its repeats of real images.

        Without the gate, the synthetic ones are decoded and converted a slice of codes at a time, so
        the float32 images of a whole shard (1,000 x 196 KB at 128x128x3) are never held at once; the
        bytes do not depend on the slices. ``out``, when given, is filled and returned: an array of
        that shape and dtype (a unit's rows), so that the shard's images are not held twice.
        """
        if out is None:
            out = np.empty((shard.count, *self.layout.shape), dtype=self.layout.dtype)
        made = shard.synthetic_count
        if made and self.filter_threshold is not None:
            out[:made] = self.layout.from_model(self.made(shard)[1])
        elif made:
            latents = self.latents[shard.class_index]
            draws = self.draws(shard)
            codes = new_codes(latents, draws, self.remix)
            step = max(self.batch_size or 1, DECODE_SLICE_BYTES // (4 * int(np.prod(self.layout.image_shape))))
            for start in range(0, made, step):
                end = min(start + step, made)
                if self.layout.takes_pixels:
                    # uint8 from the decoder's device where a pixel session is open (a GPU).
                    pixels = self.models().decode_pixels(codes[start:end], batch_size=self.batch_size)
                    out[start:end] = self.layout.from_pixels(pixels)
                else:
                    decoded = self.models().decode(codes[start:end], batch_size=self.batch_size)
                    out[start:end] = self.layout.from_model(decoded)
        if shard.repeats:
            out[made:] = self.originals_of(shard.class_index, self.repeats(shard))
        return out

    def originals_of(self, class_index: int, positions: np.ndarray) -> np.ndarray:
        """The class's real images at ``positions`` (within the class), held or read again from DATA."""
        if self.originals:
            return self.originals[class_index][positions]
        return self.source.take(self.members[class_index][positions])

    def repeats(self, shard: Shard) -> np.ndarray:
        """int64, shape (shard.repeats,): the positions within its class of the real samples it repeats."""
        return draw_repeats(self.seed, shard, len(self.members[shard.class_index]))

    def samples(self, unit: Unit, with_images: bool = True) -> Samples:
        """The images of one output unit, in its written order, with each sample's provenance.

        With ``with_images`` False only the provenance is found (no decoding, no reading: what the
        manifest records), and ``images`` is an empty array of shape (m, 0).
        """
        classes, synthetic, position, original = unit.order()
        shape = self.layout.shape if with_images else (0,)
        images = np.empty((unit.count, *shape), dtype=self.layout.dtype)
        base = np.empty(unit.count, dtype=np.int64)
        neighbor = np.full(unit.count, -1, dtype=np.int64)
        gap = np.full(unit.count, np.nan, dtype=np.float32)
        for part in unit.real:
            rows = np.flatnonzero((classes == part.class_index) & original)
            base[rows] = self.members[part.class_index][part.start + position[rows]]
            if with_images:
                images[rows] = self.originals_of(part.class_index, part.start + position[rows])
        for shard in unit.synthetic:
            rows = np.flatnonzero((classes == shard.class_index) & ~original)
            members = self.members[shard.class_index]
            if with_images:
                span = np.arange(shard.count)
                if len(rows) and np.array_equal(rows, rows[0] + span) and np.array_equal(position[rows], span):
                    # A unit without originals: the shard's samples in order in one stretch, decoded in place.
                    self.images(shard, out=images[rows[0] : rows[0] + shard.count])
                else:
                    images[rows] = self.images(shard)[position[rows]]
            made = rows[position[rows] < shard.synthetic_count]
            if len(made):
                draws = self.draws(shard)
                base[made] = members[draws.base[position[made]]]
                if draws.partner is None:
                    neighbors = self.latents[shard.class_index].neighbors_of(draws.base)
                    neighbor[made] = members[neighbors[draws.base, draws.slot][position[made]]]
                else:
                    neighbor[made] = draws.partner[position[made]]
                gap[made] = draws.gap[position[made]]
            repeated = rows[position[rows] >= shard.synthetic_count]
            if len(repeated):
                base[repeated] = members[self.repeats(shard)[position[repeated] - shard.synthetic_count]]
        return Samples(images, classes, synthetic, base, neighbor, gap, self.targets(classes, synthetic, neighbor, gap))

    @property
    def soft_labels(self) -> bool:
        """Whether the job's samples carry soft targets (latent Remix, unless ``hard_labels``)."""
        return self.remix is not None and not self.hard_labels

    def targets(
        self, classes: np.ndarray, synthetic: np.ndarray, partner: np.ndarray, weight: np.ndarray
    ) -> np.ndarray | None:
        """Soft targets of a unit's samples under latent Remix, float32 (m, K); None for other samplers.

        Parameters
        ----------
        classes, synthetic, partner, weight : np.ndarray
            Shape (m,) each: the samples' classes, whether each is synthetic, each synthetic one's
            partner (DATA index) and the partner's weight.
        """
        if not self.soft_labels:
            return None
        targets = one_hot(classes, self.remix.n_classes)
        if synthetic.any():
            settings = self.remix.settings
            targets[synthetic] = remix_targets(
                classes[synthetic],
                self.remix.labels[partner[synthetic]],
                weight[synthetic],
                self.remix.counts,
                settings.kappa,
                settings.tau,
            )
        return targets

    def shard_targets(self, shard: Shard) -> np.ndarray | None:
        """Soft targets of one shard's samples in :meth:`images`' order, float32 (shard.count, K);
        None for a job without soft labels."""
        if not self.soft_labels:
            return None
        classes = np.full(shard.count, shard.class_index, dtype=np.int64)
        synthetic = np.arange(shard.count) < shard.synthetic_count
        partner = np.full(shard.count, -1, dtype=np.int64)
        weight = np.full(shard.count, np.nan, dtype=np.float32)
        if shard.synthetic_count:
            draws = self.draws(shard)
            partner[synthetic], weight[synthetic] = draws.partner, draws.gap
        return self.targets(classes, synthetic, partner, weight)

    def for_epoch(self, epoch: int) -> Synthesizer:
        """This job with epoch ``epoch``'s draws: the same codes and plan, new bases, partners,
        gaps and repeats, so that a training loop sees fresh samples every epoch.

        Epoch 0 is the job itself (the bytes ``generate`` writes); epoch e > 0 seeds every draw of
        the job with :func:`epoch_seed` in place of the job's seed.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise InvalidInputError(f"`epoch` must be an integer >= 0, got {epoch!r}")
        if epoch == 0:
            return self
        return replace(self, seed=epoch_seed(self.seed, int(epoch)), acceptance={}, _models=self._models, _last=[])

    def models(self) -> Models:
        """The sessions, opened on this synthesizer's provider on first use in a process."""
        if not self._models:
            # A copy in another process runs on the provider the job was fitted on, never a
            # silent fallback that could change the bytes.
            provider = provider_option(self.provider)
            gate = self.filter_threshold is not None
            models = open_models(self.bundle, provider, self.threads, self.precision, encoder=False, classifier=gate)
            self._models.append(models)
            set_kernel_threads(self.threads)
        return self._models[0]

    def with_threads(self, threads: int) -> Synthesizer:
        """A copy whose sessions and kernels use ``threads`` (for a worker with its own CPUs)."""
        return replace(self, threads=threads, _models=[], _last=[])

    def with_whole_search(self) -> Synthesizer:
        """A copy whose classes have every neighbour found where numba would find them row by row
        (`ClassLatents.with_whole_search`): one search here rather than one per worker."""
        latents = tuple(latent if latent is None else latent.with_whole_search() for latent in self.latents)
        return replace(self, latents=latents, _models=[], _last=[])

    def __getstate__(self) -> dict[str, Any]:
        # onnxruntime sessions do not pickle: a copy opens its own.
        return {**self.__dict__, "_models": [], "_last": [], "acceptance": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
