"""The classifiers of the protocol, their training with validation-based selection, and prediction.

Two presets, the same network for every method compared:

- ``cnn``: three 3x3 conv blocks (width, 2·width, 4·width channels) with BatchNorm, ReLU and
  pooling, global average pooling and a linear head; small enough to train on a CPU.
- ``resnet18``: ResNet-18 (He et al., 2016) as the paper uses, adapted to small images the usual
  way for 28x28 and 32x32 inputs: a 3x3 stride-1 stem without max-pooling, then four stages of
  two basic blocks (64, 128, 256, 512 channels at width 64; strides 1, 2, 2, 2). Written here:
  torchvision is not a dependency.

Training runs a fixed number of optimizer steps (Adam, cosine-decayed learning rate, batches drawn
from per-epoch permutations), whatever the training set's size, so a method that enlarges the
training set gets no more updates than one that does not. Every ``eval_every`` steps the model is
scored on the validation split, and the weights with the best validation ACSA are kept.

Two classifier-side remedies for imbalance, the baselines an oversampler has to beat:

- **balanced softmax** (Ren et al., NeurIPS 2020; the logit-adjusted loss of Menon et al., ICLR
  2021, at τ = 1): the training loss is the cross-entropy of ``logits + log(prior)``, the prior
  being the training set's class frequencies; prediction uses the plain logits;
- **deferred re-sampling** (Cao et al., NeurIPS 2019, LDAM-DRW's schedule): the natural training
  set until a step, a re-sampled one from then on (:class:`Deferred`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import to_model
from torch import nn
from torch.nn import functional as F

from .metrics import scores

Preset = Literal["cnn", "resnet18"]
PRESETS: tuple[str, ...] = ("cnn", "resnet18")
PREDICT_BATCH = 1000
AUGMENTS: tuple[str, ...] = ("none", "crop")
# The usual pad of random-crop augmentation for 28x28 and 32x32 images.
CROP_PAD = 2


class Classifier(nn.Module):
    """A feature extractor followed by a linear head.

    ``features(x)`` is the penultimate representation, used as the embedding space of the
    sample-quality metrics (:mod:`deepsmote.evaluation.quality`).
    """

    def __init__(self, body: nn.Module, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, n_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape (N, feature_dim)."""
        return self.body(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape (N, n_classes)."""
        return self.head(self.features(x))


def _conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


def small_cnn(in_channels: int, n_classes: int, width: int = 16) -> Classifier:
    """The CPU preset: three conv blocks, global average pooling, a linear head."""
    body = nn.Sequential(
        *_conv_bn(in_channels, width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        *_conv_bn(width, 2 * width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        *_conv_bn(2 * width, 4 * width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
    )
    return Classifier(body, 4 * width, n_classes)


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            *_conv_bn(in_channels, out_channels, stride),
            nn.ReLU(inplace=True),
            *_conv_bn(out_channels, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(residual(x) + shortcut(x))."""
        return F.relu(self.residual(x) + self.shortcut(x))


def resnet18(in_channels: int, n_classes: int, width: int = 64) -> Classifier:
    """ResNet-18 for small images; ``width`` 64 is the standard network (11.2M parameters)."""
    widths = (width, 2 * width, 4 * width, 8 * width)
    layers: list[nn.Module] = [*_conv_bn(in_channels, width), nn.ReLU(inplace=True)]
    previous = width
    for stage, channels in enumerate(widths):
        stride = 1 if stage == 0 else 2
        layers += [BasicBlock(previous, channels, stride), BasicBlock(channels, channels, 1)]
        previous = channels
    layers.append(nn.AdaptiveAvgPool2d(1))
    return Classifier(nn.Sequential(*layers), previous, n_classes)


def build_classifier(preset: str, in_channels: int, n_classes: int, width: int | None = None) -> Classifier:
    """The preset's network; ``width`` None means the preset's default (cnn 16, resnet18 64)."""
    if preset == "cnn":
        return small_cnn(in_channels, n_classes, width or 16)
    if preset == "resnet18":
        return resnet18(in_channels, n_classes, width or 64)
    raise DeepSMOTEError(f"classifier must be one of {', '.join(PRESETS)}, got {preset!r}")


@dataclass(frozen=True)
class ClassifierConfig:
    """How a classifier is built and trained; identical for every method compared.

    Attributes
    ----------
    preset : {'cnn', 'resnet18'}
    width : int or None
        Channels of the first layer; None for the preset's default.
    steps : int
        Optimizer steps in total, whatever the size of the training set.
    batch_size : int
    lr : float
        Adam's initial learning rate, decayed to 0 along a cosine.
    weight_decay : float
        L2 penalty of Adam.
    eval_every : int
        Steps between two validation scorings (and after the last step).
    augment : {'none', 'crop'}
        ``crop``: every training batch padded by :data:`CROP_PAD` pixels of background and cropped
        back to its size at a random offset per image (the standard augmentation of small-image
        classifiers), for every method alike.
    """

    preset: Preset = "cnn"
    width: int | None = None
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 200
    augment: str = "none"

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise DeepSMOTEError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.preset not in PRESETS:
            raise DeepSMOTEError(f"classifier must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        for name in ("steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DeepSMOTEError(f"{name} must be a positive integer, got {value!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            raise DeepSMOTEError(f"width must be a positive integer, got {self.width!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise DeepSMOTEError(f"lr must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise DeepSMOTEError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")


@dataclass(frozen=True)
class Deferred:
    """A training set that replaces the first one from step ``from_step`` on.

    Attributes
    ----------
    images : np.ndarray
        uint8, shape (M, H, W) or (M, H, W, C).
    labels : np.ndarray
        int, shape (M,).
    from_step : int
        The first optimizer step (1-based) that draws its batch from this set.
    """

    images: np.ndarray
    labels: np.ndarray
    from_step: int


def log_prior(labels: np.ndarray, n_classes: int, targets: np.ndarray | None = None) -> np.ndarray:
    """log of each class's share of ``labels`` (or of the summed soft ``targets``, (N, K)); float32, shape (K,).

    A class without samples gets the log of half a sample's share rather than -inf, so its
    logit stays finite.
    """
    if targets is None:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    else:
        counts = np.asarray(targets, dtype=np.float64).sum(axis=0)
    return np.log(np.maximum(counts, 0.5) / counts.sum()).astype(np.float32)


@dataclass(frozen=True)
class TrainingSet:
    """One epoch's training set.

    Attributes
    ----------
    images : np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).
    labels : np.ndarray
        int, shape (N,).
    targets : np.ndarray or None
        float32, shape (N, K), soft targets (rows summing to 1) to train on in place of the labels.
    """

    images: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None = None


def random_crops(x: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """Each image of ``x`` (B, C, H, W) padded by ``pad`` pixels of -1 (background) and cropped back
    to (H, W) at an offset drawn from ``generator``, per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    return padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


@dataclass
class TrainedClassifier:
    """A trained classifier, in eval mode with its selected weights.

    Attributes
    ----------
    model : Classifier
    best_step : int
        The step whose weights were kept.
    best_val_acsa : float
    history : list of dict
        ``{"step", "train_loss", "val_acsa"}`` at each validation scoring.
    """

    model: Classifier
    best_step: int
    best_val_acsa: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    n_classes: int,
    config: ClassifierConfig,
    seed: int,
    device: torch.device,
    progress: Callable[[int, float, float], None] | None = None,
    *,
    deferred: Deferred | None = None,
    balanced_softmax: bool = False,
    targets: np.ndarray | None = None,
    refresh: Callable[[int], TrainingSet] | None = None,
) -> TrainedClassifier:
    """Train ``config``'s network on (images, labels), selecting weights on the validation split.

    Parameters
    ----------
    images : np.ndarray
        uint8, shape (N, H, W) or (N, H, W, C).
    labels : np.ndarray
        int, shape (N,), values in ``range(n_classes)``.
    val_images, val_labels : np.ndarray
        The validation split, in the same forms; never trained on.
    n_classes : int
    config : ClassifierConfig
    seed : int
        Seeds the initial weights and the batch order.
    device : torch.device
    progress : callable, optional
        Called as ``progress(step, train_loss, val_acsa)`` after each validation scoring.
    deferred : Deferred, optional
        A set that replaces (images, labels) from its step on; the batch order restarts on it.
    balanced_softmax : bool
        Train on ``logits + log(prior)`` of the set in use (:func:`log_prior`; of the soft targets'
        sums with ``targets``).
    targets : np.ndarray, optional
        float32, shape (N, K): soft targets; the loss is then the cross-entropy against them.
    refresh : callable, optional
        ``refresh(epoch)`` gives epoch ``epoch``'s set (epochs from 1; epoch 0 is the one given), so
        each pass over the data sees fresh samples; called whenever a pass ends.

    Returns
    -------
    TrainedClassifier
    """
    if len(images) < 2 or (deferred is not None and len(deferred.images) < 2):
        raise DeepSMOTEError(f"a classifier needs at least 2 training images, got {len(images)}")
    if deferred is not None and not 1 <= deferred.from_step <= config.steps:
        raise DeepSMOTEError(f"deferred.from_step must be in 1..{config.steps}, got {deferred.from_step}")

    def tensors(data: TrainingSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prior = torch.from_numpy(log_prior(data.labels, n_classes, data.targets)).to(device)
        if data.targets is None:
            wanted = torch.from_numpy(np.asarray(data.labels, dtype=np.int64)).to(device)
        else:
            wanted = torch.from_numpy(np.asarray(data.targets, dtype=np.float32)).to(device)
        return (
            torch.from_numpy(to_model(data.images)).to(device),
            wanted,
            prior if balanced_softmax else torch.zeros_like(prior),
        )

    x, y, adjustment = tensors(TrainingSet(images, labels, targets))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(config.preset, x.shape[1], n_classes, config.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    order = torch.Generator().manual_seed(seed)
    crops = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    best = TrainedClassifier(model, 0, -1.0)
    best_state = None
    losses: list[float] = []
    epoch = 0
    for step in range(1, config.steps + 1):
        if deferred is not None and step == deferred.from_step:
            x, y, adjustment = tensors(TrainingSet(deferred.images, deferred.labels))
            batches = []
        if not batches:
            if refresh is not None and epoch > 0:
                x, y, adjustment = tensors(refresh(epoch))
            epoch += 1
            # Never more than the set holds, and never a batch of one, which BatchNorm cannot normalise.
            batch_size = max(2, min(config.batch_size, len(x)))
            permutation = torch.randperm(len(x), generator=order)
            # The remainder is dropped: every batch has batch_size images.
            batches = list(permutation[: len(x) // batch_size * batch_size].split(batch_size))[::-1]
        index = batches.pop().to(device)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        batch = random_crops(x[index], crops) if config.augment == "crop" else x[index]
        logits = model(batch) + adjustment
        if y.dtype == torch.int64:
            loss = F.cross_entropy(logits, y[index])
        else:
            loss = -(y[index] * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            train_loss = float(np.mean(losses))
            if not math.isfinite(train_loss):
                raise DeepSMOTEError(f"classifier training diverged at step {step}; lower --lr (now {config.lr:g})")
            val_acsa = scores(val_labels, predict(model, val_images, device), np.arange(n_classes)).acsa
            best.history.append({"step": step, "train_loss": train_loss, "val_acsa": val_acsa})
            if val_acsa > best.best_val_acsa:
                best.best_step, best.best_val_acsa = step, val_acsa
                best_state = copy.deepcopy(model.state_dict())
            losses.clear()
            if progress is not None:
                progress(step, train_loss, val_acsa)
    model.load_state_dict(best_state)
    model.eval()
    return best


@torch.no_grad()
def _batched(fn: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, device: torch.device) -> np.ndarray:
    outputs = []
    for start in range(0, len(images), PREDICT_BATCH):
        chunk = torch.from_numpy(to_model(images[start : start + PREDICT_BATCH])).to(device)
        outputs.append(fn(chunk).float().cpu().numpy())
    return np.concatenate(outputs)


def predict(model: Classifier, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Predicted classes of uint8 ``images`` (N, H, W[, C]), in eval mode; int64, shape (N,)."""
    model.eval()
    return _batched(model, images, device).argmax(axis=1).astype(np.int64)


def embed(model: Classifier, images: np.ndarray, device: torch.device) -> np.ndarray:
    """Penultimate features of uint8 ``images`` (N, H, W[, C]); float64, shape (N, feature_dim)."""
    model.eval()
    return _batched(model.features, images, device).astype(np.float64)
