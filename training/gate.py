"""The quality gate's classifier: trained on real images, exported into a bundle as ``classifier.onnx``.

A small CNN (three 3x3 conv blocks with BatchNorm and ReLU, max-pooling after the first two, global
average pooling, a linear head) whose graph ends in a softmax: input ``image`` float32 (N, C, H, W)
in [-1, 1], output ``probabilities`` float32 (N, K). Trained with Adam for a fixed number of steps
on batches drawn class-balanced (a class uniformly, then one of its images), so a minority class's
candidates are not judged by a classifier that rarely saw it; seeded, and on the CPU the same seed
gives the same weights. Exported and checked against torch as the autoencoder is
(:mod:`.export`), and added to a bundle by writing a complete new bundle beside it and renaming it
into place: a failure leaves the old bundle as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from deepsmote.runtime.atomic import recover_dir
from deepsmote.runtime.bundle import (
    CLASSIFIER_FILE,
    CLASSIFIER_INPUT,
    CLASSIFIER_OUTPUT,
    MANIFEST_NAME,
    ClassifierRecord,
    Manifest,
    create_session,
    load_bundle,
    open_models,
    sha256_file,
)
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.readers import LabelledImages
from torch import nn
from torch.nn import functional as F

from .export import TOLERANCE, Check, _beside, _export_graph, _move_into_place
from .trainer import memory_format

# Images per forward pass when scoring the training data.
_SCORE_BATCH = 1000
VERIFY_BATCH = 64


@dataclass(frozen=True)
class GateConfig:
    """How the gate's classifier is built and trained.

    Attributes
    ----------
    width : int
        Channels of the first conv block (then 2·width, 4·width).
    steps : int
        Adam steps in total.
    batch_size : int
    lr : float
        Adam's initial learning rate, decayed to 0 along a cosine.
    seed : int
        Seeds the initial weights and the batches.
    """

    width: int = 16
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
                raise DeepSMOTEError(f"`{name}` must be a positive integer (at most 1000000), got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise DeepSMOTEError(f"`lr` must be a positive number, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise DeepSMOTEError(f"`seed` must be an integer in [0, 2**63), got {self.seed!r}")


class GateNet(nn.Module):
    """Conv blocks + BN + global average pooling + linear; ``forward`` returns probabilities."""

    def __init__(self, in_channels: int, n_classes: int, width: int) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, n_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, K), of images (N, C, H, W) in [-1, 1]."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities, shape (N, K)."""
        return F.softmax(self.logits(x), dim=1)


def train_gate(data: LabelledImages, config: GateConfig = GateConfig()) -> tuple[GateNet, dict[str, float]]:
    """Train the gate's classifier on ``data``.

    Parameters
    ----------
    data : LabelledImages
        Real images, uint8 (N, H, W[, C]), with every class present.
    config : GateConfig

    Returns
    -------
    model : GateNet
        In eval mode, on the CPU.
    accuracy : dict
        ``train_accuracy`` (over the images) and ``train_balanced_accuracy`` (mean over classes),
        scored on ``data`` in eval mode.

    Raises
    ------
    DeepSMOTEError
        If a class has no image.
    """
    counts = data.class_counts()
    if (counts == 0).any():
        empty = [data.classes[c] for c in np.flatnonzero(counts == 0)]
        raise DeepSMOTEError(f"the classifier needs images of every class; none of: {', '.join(empty[:5])}")
    # Channels-last on the CPU, as the autoencoder trains (`memory_format`): a step of the default
    # classifier (width 16, batch 64, 28x28x1) took 14.3 ms against channels-first's 21.8 on a
    # 2-core EPYC (medians of 5 interleaved rounds of 60 steps). A batch indexed from x keeps it.
    layout = memory_format(torch.device("cpu"))
    x = torch.from_numpy(to_model(data.images)).contiguous(memory_format=layout)
    y = torch.from_numpy(data.labels.astype(np.int64))
    members = [np.flatnonzero(data.labels == c) for c in range(len(data.classes))]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x6A7E]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = GateNet(x.shape[1], len(data.classes), config.width).to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / config.steps))
    )
    model.train()
    for _ in range(config.steps):
        classes = rng.integers(0, len(members), size=config.batch_size)
        index = np.asarray([members[c][rng.integers(0, len(members[c]))] for c in classes])
        loss = F.cross_entropy(model.logits(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model.logits(x[i : i + _SCORE_BATCH]).argmax(1) for i in range(0, len(x), _SCORE_BATCH)])
    right = (predicted == y).numpy()
    per_class = [float(right[m].mean()) for m in members]
    return model, {"train_accuracy": float(right.mean()), "train_balanced_accuracy": float(np.mean(per_class))}


def export_gate(model: GateNet, images: torch.Tensor, path: Path) -> list[Check]:
    """Write ``model`` as ``classifier.onnx`` at ``path`` and compare onnxruntime with torch.

    Parameters
    ----------
    model : GateNet
        In eval mode.
    images : torch.Tensor
        float32, shape (n, C, H, W), real images in [-1, 1] (batches of n and 1 are compared).

    Returns
    -------
    list of Check
        All within :data:`~.export.TOLERANCE`.

    Raises
    ------
    DeepSMOTEError
        Naming every comparison over the tolerance.
    """
    _export_graph(model, images[:2], CLASSIFIER_INPUT, CLASSIFIER_OUTPUT, path)
    session = create_session(path.read_bytes(), "cpu")[0]
    checks = []
    for batch in (images, images[:1]):
        with torch.no_grad():
            expected = model(batch).numpy()
        got = session.run(None, {CLASSIFIER_INPUT: batch.numpy()})[0]
        diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
        checks.append(Check(CLASSIFIER_FILE, "real images", len(batch), diff))
    failed = [c for c in checks if not c.passed]
    if failed:
        listed = "; ".join(f"batch {c.batch}: {c.max_abs_diff:.3g}" for c in failed)
        raise DeepSMOTEError(
            f"{CLASSIFIER_FILE} differs from torch by more than {TOLERANCE:g} ({listed}); "
            "no classifier was added, report this with the torch and onnxruntime versions"
        )
    return checks


def add_classifier(
    bundle: str | os.PathLike,
    data: LabelledImages,
    config: GateConfig = GateConfig(),
    *,
    overwrite: bool = False,
) -> Manifest:
    """Train the gate's classifier on ``data`` and add it to ``bundle`` (in place, atomically).

    Parameters
    ----------
    bundle : path-like
        A bundle directory; it keeps every file it had, gains ``classifier.onnx`` and a new
        fingerprint.
    data : LabelledImages
        Real training images with the bundle's classes (same names, same order) and image size.
    config : GateConfig
    overwrite : bool
        Replace a classifier the bundle already has.

    Returns
    -------
    Manifest
        The bundle's new manifest.

    Raises
    ------
    DeepSMOTEError
        For data of other classes or size, a bundle that has a classifier (without ``overwrite``),
        or a failed export; the bundle is then as it was.
    """
    path = Path(os.path.abspath(bundle))
    # A copy or an old bundle that a killed add-classifier left beside it: cleaned or put back.
    recover_dir(path)
    loaded = load_bundle(path)
    if tuple(data.classes) != loaded.classes:
        raise DeepSMOTEError(
            f"DATA has classes {list(data.classes)[:6]}, the bundle {list(loaded.classes)[:6]}; "
            "train the classifier on the data the bundle was trained on"
        )
    if data.image_shape != loaded.image_shape:
        raise DeepSMOTEError(
            f"DATA has images of shape {list(data.image_shape)} (C, H, W), the bundle {list(loaded.image_shape)}; "
            "use `resize` or the data the bundle was trained on"
        )
    if loaded.has_graph(CLASSIFIER_FILE) and not overwrite:
        raise DeepSMOTEError(f"{path} already has a {CLASSIFIER_FILE}; pass `overwrite` to replace it")
    model, accuracy = train_gate(data, config)
    staging = _beside(path, "tmp")
    try:
        shutil.copytree(path, staging, symlinks=True)
        (staging / CLASSIFIER_FILE).unlink(missing_ok=True)
        order = np.random.default_rng(config.seed).permutation(len(data.labels))[:VERIFY_BATCH]
        checks = export_gate(model, torch.from_numpy(to_model(data.images[np.sort(order)])), staging / CLASSIFIER_FILE)
        record = ClassifierRecord(
            config={"arch": "gate-cnn", **asdict(config)},
            train_accuracy=round(accuracy["train_accuracy"], 6),
            train_balanced_accuracy=round(accuracy["train_balanced_accuracy"], 6),
            data_sha256=data.fingerprint(),
            max_abs_diff=max(c.max_abs_diff for c in checks),
            checks=tuple(asdict(c) for c in checks),
        )
        files = {**loaded.manifest.files, CLASSIFIER_FILE: sha256_file(staging / CLASSIFIER_FILE)}
        manifest = dataclasses.replace(loaded.manifest, files=files, classifier=record)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
        # The runtime's own checks, and that onnxruntime loads every graph, before the swap.
        open_models(load_bundle(staging), provider="cpu", classifier=True)
        _move_into_place(staging, path, overwrite=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
