"""The training loop, its checkpoints, resumption, loss log and loss curve.

A run directory holds ``last.pt`` (written every epoch, for resuming), ``best.pt`` (the epoch
with the lowest training loss, which the reference code keeps and the bundle is exported from),
``losses.jsonl`` (one line per epoch) and ``losses.png``. A checkpoint is a plain dict of
tensors, numbers and strings, loadable with ``torch.load(weights_only=True)``; it stores
everything needed to rebuild the models, continue training bit for bit, and verify an export
without the data (64 real images).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deepsmote.runtime.atomic import atomic_path
from deepsmote.runtime.bundle import PROVIDERS, Provider
from deepsmote.runtime.console import QUIET, LineProgress, interactive, verbosity
from deepsmote.runtime.errors import DeepSMOTEError, InvalidInputError
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.readers import LabelledImages
from tqdm import tqdm

from .loss import LOSSES, PENALTIES, Loss, Penalty, class_members, deepsmote_loss
from .model import ARCHITECTURES, ModelConfig, build_models
from .precision import PRECISIONS, Precision, check_precision, grad_scaler, in_training_precision
from .winograd import CONV_ALGORITHMS, ConvAlgorithm, check_conv_algorithm, with_conv_algorithm

# Where to train: the same choices as the runtime's --provider.
Device = Provider
DEVICES = PROVIDERS
CHECKPOINT_FORMAT = "deepsmote-checkpoint"
CHECKPOINT_VERSION = 1
VERIFICATION_IMAGES = 64
LOG_FILE, PLOT_FILE = "losses.jsonl", "losses.png"
# Options a resumed run may change: train for longer, or continue on another device.
_RESUMABLE_CHANGES = frozenset({"epochs", "device"})
# What checkpoints written before these options existed were trained with.
_LEGACY_CONFIG = {"arch": "paper", "res_blocks": 0, "loss": "mse", "precision": "fp32", "conv": "direct"}
# Steps between refreshes of the progress bar's loss: reading a loss waits for the device.
_BAR_LOSS_EVERY = 10

log = logging.getLogger(__name__)


# Bounds far above any useful model of the supported 28..64-pixel images.
_MAX_SIZES = {"epochs": 1_000_000, "width": 512, "latent_dim": 4096, "batch_size": 1 << 16}
# Residual blocks per stage: a few help; 64 make a model of hundreds of layers already.
MAX_RES_BLOCKS = 64


def _short(value: int) -> str:
    """``value`` for a message, or its size when too long to print."""
    return str(value) if value.bit_length() <= 100 else f"a {value.bit_length()}-bit number"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    The paper's values but for ``arch``, ``loss`` and ``penalty``, whose defaults were chosen by
    ``benchmarks/generator_quality.py`` (README, "Choosing the default");
    ``arch='paper', loss='mse', penalty='reference'`` is the paper's reproduction.

    Attributes
    ----------
    epochs : int
        Epochs to train in total (a resumed run counts the ones already done).
    width, latent_dim : int
        Model size (:class:`~deepsmote.training.model.ModelConfig`).
    arch : {'resize-conv', 'paper'}
        The architecture (:mod:`deepsmote.training.model`).
    res_blocks : int
        Residual blocks per stage (``resize-conv`` only).
    loss : {'mse', 'l1', 'l1+ssim'}
        The reconstruction distance (:mod:`deepsmote.training.loss`).
    batch_size : int
        Images per step; also the most images the penalty takes from one class.
    lr : float
        Adam's learning rate for the encoder and the decoder.
    penalty : {'reference', 'paper', 'none'}
        The authors' penalty, the paper's, or none (:mod:`deepsmote.training.loss`).
    penalty_weight : float
        λ in ``reconstruction + λ * penalty``.
    seed : int
        Seeds the initial weights, the shuffling and the penalty's draws.
    device : {'auto', 'cpu', 'cuda'}
        ``auto`` is CUDA when torch can use it, else CPU. On the CPU the same seed gives the
        same weights, and a resumed run the weights of an uninterrupted one; on CUDA, cuDNN's
        kernels make runs differ slightly.
    precision : {'fp32', 'bf16', 'fp16'}
        ``fp32``, or mixed precision: bfloat16 on GPUs and on CPUs with bfloat16 instructions,
        float16 on GPUs (:mod:`deepsmote.training.precision`).
    conv : {'direct', 'winograd'}
        How training computes the decoder's stride-1 transposed convolutions: torch's own, or
        Winograd's F(5, 4) in fewer multiply-adds, float32 on the CPU, for the 28x28 ``paper``
        decoder (:mod:`deepsmote.training.winograd`). The model and the bundle are the same either way.
    """

    epochs: int = 50
    width: int = 64
    latent_dim: int = 300
    arch: str = "resize-conv"
    res_blocks: int = 0
    loss: Loss = "l1+ssim"
    batch_size: int = 100
    lr: float = 2e-4
    penalty: Penalty = "reference"
    penalty_weight: float = 1.0
    seed: int = 0
    device: Device = "auto"
    precision: Precision = "fp32"
    conv: ConvAlgorithm = "direct"

    def __post_init__(self) -> None:
        for name in ("epochs", "width", "latent_dim", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
            if value > _MAX_SIZES[name]:
                # Refused before torch allocates: a huge size would exhaust memory, not train.
                raise InvalidInputError(f"`{name}` must be at most {_MAX_SIZES[name]}, got {_short(value)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidInputError(f"lr must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.penalty_weight) and self.penalty_weight >= 0):
            raise InvalidInputError(f"penalty_weight must be a number >= 0, got {self.penalty_weight!r}")
        if self.arch not in ARCHITECTURES:
            raise InvalidInputError(f"`arch` must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"`loss` must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if isinstance(self.res_blocks, bool) or not isinstance(self.res_blocks, int) or self.res_blocks < 0:
            raise InvalidInputError(f"`res_blocks` must be an integer >= 0, got {self.res_blocks!r}")
        if self.res_blocks > MAX_RES_BLOCKS:
            # Refused before torch builds the layers, like a huge `width`.
            raise InvalidInputError(f"`res_blocks` must be at most {MAX_RES_BLOCKS}, got {_short(self.res_blocks)}")
        if self.penalty not in PENALTIES:
            raise InvalidInputError(f"penalty must be one of {', '.join(PENALTIES)}, got {self.penalty!r}")
        if self.device not in DEVICES:
            raise InvalidInputError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.conv not in CONV_ALGORITHMS:
            raise InvalidInputError(f"`conv` must be one of {', '.join(CONV_ALGORITHMS)}, got {self.conv!r}")
        if not 0 <= self.seed < 2**63:
            raise InvalidInputError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")


@dataclass(frozen=True)
class RunFiles:
    """The files of a run directory."""

    run_dir: Path

    @property
    def last(self) -> Path:
        """Checkpoint after the latest epoch."""
        return self.run_dir / "last.pt"

    @property
    def best(self) -> Path:
        """Checkpoint of the epoch with the lowest training loss."""
        return self.run_dir / "best.pt"

    @property
    def log(self) -> Path:
        """One JSON object per epoch: epoch, loss, reconstruction, penalty, seconds."""
        return self.run_dir / LOG_FILE

    @property
    def plot(self) -> Path:
        """The loss curves as a PNG."""
        return self.run_dir / PLOT_FILE


def resolve_device(device: str) -> torch.device:
    """The torch device for ``device`` ('auto', 'cpu' or 'cuda').

    Raises
    ------
    DeepSMOTEError
        If 'cuda' is asked for and torch cannot use it.
    """
    if device not in DEVICES:
        raise InvalidInputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise DeepSMOTEError(
            f"--device cuda: torch {torch.__version__} cannot use a CUDA GPU here; "
            "install a CUDA build of torch or use --device cpu"
        )
    return torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")


def train(
    data: LabelledImages,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    restart: bool = False,
) -> RunFiles:
    """Train an encoder and decoder on ``data``, checkpointing into ``run_dir``.

    Parameters
    ----------
    data : LabelledImages
        uint8 images (N, H, W[, C]) of a supported size, every class with at least 2 images.
    config : TrainConfig
    run_dir : path-like
        Created if missing. If it already holds a run (``last.pt``), pass ``resume`` to
        continue it (same config and data; only ``epochs`` and ``device`` may change) or
        ``restart`` to delete it and start over; otherwise it is refused. ``resume`` wins.

    Returns
    -------
    RunFiles
        Where ``best.pt``, ``last.pt`` and the logs are.

    Raises
    ------
    DeepSMOTEError
        For unsupported images, a missing GPU, a precision the device cannot run, or a run
        directory that does not fit the request. Nothing is written before these checks pass.
    """
    files = RunFiles(Path(run_dir))
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    model_config = model_config_of(data.image_shape, asdict(config))
    check_conv_algorithm(config.conv, model_config, config.precision, device)
    _check_class_sizes(data)
    fingerprint = data.fingerprint()
    previous = _previous_run(files, config, fingerprint, resume=resume, restart=restart)

    # Initial weights come from the seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder, decoder = build_models(model_config)
    shuffle = torch.Generator().manual_seed(config.seed)
    penalty_rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    best_loss, epochs_done = math.inf, 0
    if previous is not None:
        encoder.load_state_dict(previous["encoder"])
        decoder.load_state_dict(previous["decoder"])
        shuffle.set_state(previous["rng"]["shuffle"])
        penalty_rng.bit_generator.state = previous["rng"]["penalty"]
        history, best_loss, epochs_done = previous["history"], previous["best_loss"], previous["epoch"]
    layout = memory_format(device)
    encoder.to(device, memory_format=layout)
    decoder.to(device, memory_format=layout)
    # Two optimizers, as in the reference code; Adam is per-parameter, so this equals one.
    # foreach: one kernel per operation over all the tensors, the same bytes as the default
    # per-tensor loop on the CPU (where the loop is torch's default); fused=True rounds otherwise.
    encoder_optimizer = torch.optim.Adam(encoder.parameters(), lr=config.lr, foreach=True)
    decoder_optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr, foreach=True)
    encode, decode = in_training_precision(encoder, with_conv_algorithm(decoder, config.conv), config.precision, device)
    scaler = grad_scaler(config.precision, device)
    if previous is not None:
        encoder_optimizer.load_state_dict(previous["encoder_optimizer"])
        decoder_optimizer.load_state_dict(previous["decoder_optimizer"])
        if previous.get("grad_scaler"):
            scaler.load_state_dict(previous["grad_scaler"])

    images = torch.from_numpy(to_model(data.images)).to(device)
    members = class_members(data.labels, len(data.classes))
    verification = images[_verification_indices(len(images))].cpu()
    images = images.contiguous(memory_format=layout)
    steps_per_epoch = len(_batches(torch.arange(len(images)), config.batch_size))
    try:
        files.run_dir.mkdir(parents=True, exist_ok=True)
        _write_log(files.log, history)
    except OSError as exc:
        raise DeepSMOTEError(
            f"cannot write to --run-dir {files.run_dir}: {exc.strerror}; choose another --run-dir"
        ) from None

    total_steps = max(config.epochs - epochs_done, 0) * steps_per_epoch
    # A bar on a terminal; elsewhere (CI, a log) one line per epoch, so a long run is never silent.
    bar_wanted = interactive()
    lines = LineProgress(config.epochs, epochs_done, "train", "epochs")
    with (
        _note_on_interrupt(files, lambda: epochs_done),
        tqdm(total=total_steps, unit="step", disable=not bar_wanted) as bar,
    ):
        for epoch in range(epochs_done + 1, config.epochs + 1):
            began = time.perf_counter()
            encoder.train()
            decoder.train()
            # Summed on the device in float64 (the same arithmetic as on the host), read once per epoch.
            sums = torch.zeros(3, dtype=torch.float64, device=device)
            for step, index in enumerate(_batches(torch.randperm(len(images), generator=shuffle), config.batch_size)):
                batch = images[index.to(device)]
                encoder_optimizer.zero_grad()
                decoder_optimizer.zero_grad()
                terms = deepsmote_loss(
                    encode,
                    decode,
                    batch,
                    config.penalty,
                    config.penalty_weight,
                    images,
                    members,
                    config.batch_size,
                    penalty_rng,
                    config.loss,
                )
                scaler.scale(terms.total).backward()
                scaler.step(encoder_optimizer)
                scaler.step(decoder_optimizer)
                scaler.update()
                sums += len(batch) * torch.stack([terms.total.detach(), terms.reconstruction, terms.penalty]).double()
                bar.update()
                if bar_wanted and step % _BAR_LOSS_EVERY == 0:
                    now = [f"{v:.4f}" for v in torch.stack([terms.total, terms.reconstruction, terms.penalty]).tolist()]
                    bar.set_postfix(epoch=epoch, loss=now[0], rec=now[1], pen=now[2])
            loss, reconstruction, penalty = (sums / len(images)).tolist()
            if not math.isfinite(loss):
                raise DeepSMOTEError(
                    f"training diverged: the loss is {loss} in epoch {epoch}; start over with a lower --lr "
                    f"(now {config.lr:g})"
                )
            entry = {
                "epoch": epoch,
                "loss": loss,
                "reconstruction": reconstruction,
                "penalty": penalty,
                "seconds": time.perf_counter() - began,
            }
            history.append(entry)
            improved = loss < best_loss
            best_loss = min(best_loss, loss)
            checkpoint = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "config": asdict(config),
                "image_shape": list(data.image_shape),
                "classes": list(data.classes),
                "data_sha256": fingerprint,
                "epoch": epoch,
                "best_loss": best_loss,
                "history": history,
                "encoder": encoder.state_dict(),
                "decoder": decoder.state_dict(),
                "encoder_optimizer": encoder_optimizer.state_dict(),
                "decoder_optimizer": decoder_optimizer.state_dict(),
                "rng": {"shuffle": shuffle.get_state(), "penalty": penalty_rng.bit_generator.state},
                "grad_scaler": scaler.state_dict(),
                "verification_images": verification,
            }
            # best before last: if we stop in between, resuming redoes this epoch and rewrites both.
            if improved:
                _save(checkpoint, files.best)
            _save(checkpoint, files.last)
            epochs_done = epoch
            with files.log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            log.info("epoch %d: loss %.5f (reconstruction %.5f, penalty %.5f)", epoch, loss, reconstruction, penalty)
            if not bar_wanted and verbosity() > QUIET:
                lines.update(1, f"loss {loss:.5f} (reconstruction {reconstruction:.5f}, penalty {penalty:.5f})")
    plot_losses(history, files.plot)
    return files


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout training keeps the images and the convolutions' weights in on ``device``.

    Channels-last on the CPU, where oneDNN's convolutions run fastest in it and reorder a
    channels-first tensor on every call: at paper size (width 64) a step took 0.90 times the time
    in fp32 and 0.84 times in bf16 on a 2-core AVX-512 EPYC, and the resize-conv model 0.94-1.0
    times (``docs/design.md`` §1). The same function: only the order of the sums moves. GPUs keep
    channels-first, the layout they were measured in.
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train`, without unpickling any code.

    Returns
    -------
    dict
        Tensors on the CPU; see the module docstring for the keys.

    Raises
    ------
    DeepSMOTEError
        If the file is missing or is not a deepsmote checkpoint of a supported version.
    """
    path = Path(path)
    hint = "give the best.pt or last.pt of a `deepsmote train` run directory"
    if not path.is_file():
        raise DeepSMOTEError(f"{path}: checkpoint not found; {hint}")
    try:
        # torch warns about foreign pickle protocols before failing; the error below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for foreign files
        raise DeepSMOTEError(f"{path}: not a deepsmote checkpoint ({type(exc).__name__}); {hint}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise DeepSMOTEError(f"{path}: not a deepsmote checkpoint; {hint}")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise DeepSMOTEError(
            f"{path}: checkpoint version {checkpoint.get('version')} is not supported "
            f"(reads {CHECKPOINT_VERSION}); use the deepsmote that wrote it"
        )
    checkpoint["config"] = {**_LEGACY_CONFIG, **checkpoint["config"]}
    return checkpoint


def model_config_of(image_shape: tuple[int, ...], config: dict[str, Any]) -> ModelConfig:
    """The model a training config (``TrainConfig`` as a dict) builds for ``image_shape``."""
    return ModelConfig(
        tuple(image_shape),  # type: ignore[arg-type]
        config["width"],
        config["latent_dim"],
        config["arch"],
        config["res_blocks"],
    )


def models_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The checkpoint's encoder and decoder on the CPU, in eval mode."""
    encoder, decoder = build_models(model_config_of(checkpoint["image_shape"], checkpoint["config"]))
    encoder.load_state_dict(checkpoint["encoder"])
    decoder.load_state_dict(checkpoint["decoder"])
    return encoder.eval(), decoder.eval()


def plot_losses(history: list[dict[str, float]], path: Path) -> None:
    """Write the loss, reconstruction and penalty per epoch as a PNG."""
    # Imported here, and through the object API with the Agg canvas, so matplotlib is only
    # loaded when needed and the caller's pyplot backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    epochs = [entry["epoch"] for entry in history]
    for key in ("loss", "reconstruction", "penalty"):
        axes.plot(epochs, [entry[key] for entry in history], marker=".", label=key)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (pixels in [-1, 1])")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def _check_class_sizes(data: LabelledImages) -> None:
    counts = data.class_counts()
    # BatchNorm in train mode cannot normalise a 1x1 map of one image, which is what the
    # penalty would encode for a class of one image (and k-NN needs a neighbour anyway).
    for name, count in zip(data.classes, counts, strict=True):
        if count < 2:
            raise DeepSMOTEError(
                f"class '{name}' has {count} image(s); DeepSMOTE needs at least 2 per class, "
                "so add images or remove the class"
            )


def _previous_run(
    files: RunFiles, config: TrainConfig, fingerprint: str, *, resume: bool, restart: bool
) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None to start fresh; refuses what does not fit."""
    if not files.last.exists():
        if resume:
            raise DeepSMOTEError(f"--resume: {files.last} not found; there is no run to resume in {files.run_dir}")
        return None
    if restart and not resume:
        for path in (files.last, files.best, files.log, files.plot):
            path.unlink(missing_ok=True)
        return None
    if not resume:
        raise DeepSMOTEError(
            f"{files.run_dir} already holds a training run; pass --resume to continue it, "
            "--overwrite to start over, or choose another --run-dir"
        )
    previous = load_checkpoint(files.last)
    mine = asdict(config)
    differences = [
        f"{key} {previous['config'].get(key)!r} -> {mine[key]!r}"
        for key in mine
        if key not in _RESUMABLE_CHANGES and previous["config"].get(key) != mine[key]
    ]
    if differences:
        raise DeepSMOTEError(
            f"{files.last}: cannot resume with a different config ({', '.join(differences)}); "
            "use the run's options or choose another --run-dir"
        )
    if previous["data_sha256"] != fingerprint:
        raise DeepSMOTEError(
            f"{files.last}: the run was trained on different data; "
            "resume with the same DATA or choose another --run-dir"
        )
    return previous


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one image joins the one before.

    BatchNorm in train mode fails on a single image at the encoder's 1x1 map.
    """
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _verification_indices(n: int) -> np.ndarray:
    """Evenly spaced images: without randomness, and across classes when DATA is sorted by class."""
    return np.linspace(0, n - 1, num=min(VERIFICATION_IMAGES, n)).round().astype(np.int64)


def _save(checkpoint: dict[str, Any], path: Path) -> None:
    # Written beside and renamed, so an interrupted save never leaves a broken checkpoint,
    # and removed when the save fails or is interrupted.
    try:
        with atomic_path(path) as partial:
            torch.save(checkpoint, partial)
    except BaseException as exc:
        # torch reports a failed write (a full disk) as RuntimeError, the file system as OSError.
        if not isinstance(exc, OSError | RuntimeError):
            raise
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc).strip() or type(exc).__name__
        raise DeepSMOTEError(
            f"cannot write checkpoint {path}: {reason.splitlines()[0]}; free some space or choose another --run-dir"
        ) from None


@contextlib.contextmanager
def _note_on_interrupt(files: RunFiles, saved_epoch: Callable[[], int]) -> Iterator[None]:
    """Tell a Ctrl-C or SIGTERM which checkpoints were kept and how to continue."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        epoch = saved_epoch()
        if epoch:
            interrupt.add_note(
                f"checkpoints up to epoch {epoch} are kept in {files.run_dir} (best.pt, last.pt); "
                "run the same command with --resume to continue"
            )
        else:
            interrupt.add_note("no epoch was finished, no checkpoint is kept")
        raise


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    # Rewritten from the checkpoint's history, so the log matches the run being continued.
    path.write_text("".join(json.dumps(entry) + "\n" for entry in history), encoding="utf-8")
