"""On-the-fly DeepSMOTE samples for a torch ``DataLoader``: nothing written to disk.

:class:`DeepSMOTEStream` fits the sampler once (in the process that makes it) and streams the
job's output units, the classes mixed in each, and the originals spread among the new samples, as
in WebDataset output (``plan_mixed``). Each
``DataLoader`` worker takes its own units (worker ``i`` of ``W`` takes units ``i, i + W, ...``) and
opens its own onnxruntime sessions, so every sample is made exactly once, with the same bytes, for
any number of workers; with ``num_workers=0`` or 1 the order is the units' order.

As augmentation, a training loop calls :meth:`DeepSMOTEStream.set_epoch` before each epoch (torch's
``DistributedSampler`` convention): epoch e draws its own samples (``Synthesizer.for_epoch``), the
same bytes again for the same epoch and any number of workers, and with ``shuffle`` its own order
of units. Epoch 0 is the fixed set ``deepsmote generate`` writes.

Part of ``deepsmote.training`` (it imports torch); the runtime never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.plan import DEFAULT_SHARD_SIZE, MixedPlan, Unit, plan_mixed
from deepsmote.runtime.synthesis import Synthesizer
from torch.utils.data import IterableDataset, get_worker_info

__all__ = ["DeepSMOTEStream"]

# The first word of a shuffle's seed material, apart from every draw's (``SeedSequence([seed, ...])``).
SHUFFLE_KEY = 0x53485546  # "SHUF"


def to_tensor(image: np.ndarray, channels_first: bool = False) -> torch.Tensor:
    """uint8 (H, W), (H, W, C), or (C, H, W) when ``channels_first`` → float32 (C, H, W) in [0, 1]."""
    chw = image if channels_first else image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32) / 255.0)


class DeepSMOTEStream(IterableDataset):
    """The balanced set, originals and synthetic samples interleaved, as ``(image, label)`` pairs,
    or ``(image, target)`` with ``soft_labels``.

    Parameters
    ----------
    bundle : path-like
        The model bundle.
    images : np.ndarray
        uint8, shape (N, H, W), (N, H, W, C) or torch's (N, C, H, W): the real images.
    labels : np.ndarray
        Shape (N,): their labels; the stream yields these label values.
    sampling_strategy, k_neighbors, seed, shard_size, sampler
        As for :class:`deepsmote.runtime.DeepSMOTE`; ``shard_size`` is the samples per unit.
    remix : mapping, optional
        Latent Remix's parameters with ``sampler='remix'``, as the estimator names them
        (``remix_min_weight``, ``remix_kappa``, ``remix_tau``, ``remix_partner``, ``remix_base``).
    soft_labels : bool, default False
        Yield each sample's target as a float32 tensor of shape (K,) over ``classes`` (latent
        Remix's soft targets; one-hot for real samples and for the other samplers) in place of its
        label value.
    shuffle : bool, default False
        Permute the order of the units every epoch (from ``seed`` and the epoch).
    include_originals : bool, default True
        Stream the originals too, spread evenly over the units: the whole balanced set, as
        ``fit_resample`` returns it; False streams the new samples only.
    transform : callable, optional
        Applied to each uint8 image, in the layout of ``images``; default: float32 (C, H, W) in [0, 1].
    threads_per_worker : int, default 1
        onnxruntime and numba threads in each DataLoader worker.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        sampling_strategy: str | Mapping[Any, int] = "auto",
        k_neighbors: int = 5,
        seed: int = 0,
        shard_size: int = DEFAULT_SHARD_SIZE,
        include_originals: bool = True,
        transform: Callable[[np.ndarray], Any] | None = None,
        threads_per_worker: int = 1,
        sampler: str = "smote",
        remix: Mapping[str, Any] | None = None,
        soft_labels: bool = False,
        shuffle: bool = False,
    ) -> None:
        super().__init__()
        fitted = DeepSMOTE(
            bundle,
            sampling_strategy=sampling_strategy,
            k_neighbors=k_neighbors,
            random_state=seed,
            provider="cpu",
            sampler=sampler,
            **(remix or {}),
        ).fit(images, labels)
        counts = np.bincount(np.unique(labels, return_inverse=True)[1].ravel())
        new = np.zeros_like(counts)
        for c, value in enumerate(fitted.classes_.tolist()):
            new[c] = fitted.sampling_strategy_.get(value, 0)
        synthesizer = fitted.synthesizer_
        self.synthesizer: Synthesizer = synthesizer.keeping_originals(images) if include_originals else synthesizer
        self.units: MixedPlan = plan_mixed(new, counts if include_originals else None, shard_size)
        self.classes = fitted.classes_
        self.transform = transform or partial(to_tensor, channels_first=synthesizer.layout.channels_first)
        self.threads_per_worker = threads_per_worker
        self.soft_labels = soft_labels
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch``'s: its own draws (and order, with ``shuffle``).

        Call it before each epoch, before the ``DataLoader`` starts its workers (they take the
        epoch with the dataset), as with torch's ``DistributedSampler``.
        """
        self.synthesizer.for_epoch(epoch)  # refuses a bad epoch now
        self.epoch = int(epoch)

    def unit_order(self) -> np.ndarray:
        """int64, shape (units,): the order this epoch streams the units in."""
        if not self.shuffle:
            return np.arange(len(self.units))
        rng = np.random.default_rng(np.random.SeedSequence([SHUFFLE_KEY, self.seed, self.epoch]))
        return rng.permutation(len(self.units))

    def __len__(self) -> int:
        return self.units.total

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        worker = get_worker_info()
        order = self.unit_order()
        synthesizer = self.synthesizer.for_epoch(self.epoch)
        if worker is not None:
            # A forked worker must not use the parent's onnxruntime sessions: it opens its own.
            order = order[worker.id :: worker.num_workers]
            synthesizer = synthesizer.with_threads(self.threads_per_worker)
        units: Iterable[Unit] = (self.units[int(t)] for t in order)
        for unit in units:
            samples = synthesizer.samples(unit)
            if self.soft_labels:
                targets = samples.targets
                if targets is None:
                    targets = np.eye(len(self.classes), dtype=np.float32)[samples.class_index]
                for image, target in zip(samples.images, targets, strict=True):
                    yield self.transform(image), torch.from_numpy(target.copy())
            else:
                for image, c in zip(samples.images, samples.class_index.tolist(), strict=True):
                    yield self.transform(image), self.classes[c].item()
