"""Export a training checkpoint as a model bundle (``docs/design.md`` §2), verified against torch.

The graphs are exported in eval mode (BatchNorm with its running statistics) by
``torch.onnx.export(dynamo=True)``, the torch.export-based exporter that is torch's default and
whose ``dynamic_shapes`` give a symbolic batch axis; the TorchScript exporter is deprecated. The
decoder is exported as itself (``decoder.onnx``, for every provider) and in the arrangement of
:mod:`.decoder_graph` (``decoder_cpu.onnx``), the same function run faster by onnxruntime's CPU
provider: the 28x28 ``paper`` decoder's first two transposed convolutions as Winograd products
(since 0.12.0), the 32x32 one's first as a MatMul and ``Col2Im``, the ``resize-conv`` decoder's
upsampling convolutions as phase convolutions; and converted to float16 by the runtime's own
converter (``decoder_fp16.onnx``, which ``--precision fp16`` runs on a GPU), so that a job needs
neither the onnx package nor the conversion's time. Then onnxruntime runs them on the checkpoint's
real images and on random codes, at the verification batch and at batch 1, and every output is
compared with that of the torch modules as trained. The bundle is assembled in a temporary
directory beside the target, checked with the runtime's own loader, and renamed into place, so a
failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deepsmote.runtime.atomic import beside, recover_dir, replace_dir
from deepsmote.runtime.bundle import (
    CPU_DECODER_FILE,
    DECODER_FILE,
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_FILE,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    FP16_DECODER_FILE,
    MANIFEST_NAME,
    ExportRecord,
    Manifest,
    TrainingRecord,
    create_session,
    decoder_graph,
    import_onnxruntime,
    load_bundle,
    open_models,
    sha256_file,
)
from deepsmote.runtime.errors import DeepSMOTEError
from torch import nn

from .decoder_graph import cpu_decoder
from .trainer import LOG_FILE, PLOT_FILE, load_checkpoint, models_from_checkpoint
from .winograd_graph import WinogradDecoder

OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
TOLERANCE = 1e-4
# float16 keeps 11 significant bits: two levels of the 255 the [-1, 1] outputs become as uint8.
# Measured: the paper-size decoders differed from fp32 by at most 3.0e-3 (paper architecture)
# and 4.3e-4 (resize-conv) on 64 random codes, 1.5% and 0.9% of their pixels one level apart;
# the paper decoder after 20 epochs by 1.01e-2 on the 64 codes of real images (1e-2 was the
# bound until then and refused it), by 8.6e-3 on 900 real images' codes, where 1.3% of the
# pixels were one level apart and none two. A broken conversion is off by far more.
FP16_TOLERANCE = 4 / 255
# Winograd's F(5, 4) (the 28x28 paper model's decoder_cpu.onnx since 0.12.0) rounds its tile
# transforms in float32, an error that grows with the layers' activations: measured 2.2e-5 after
# 8 epochs and 4.0e-5 after 30 (width 64 on the embedded subset; decoder.onnx 1.5e-5 and 1.9e-5).
# Half a uint8 level, so that no pixel lies more than one level from torch's; a misplaced tile or
# kernel is off by far more.
WINOGRAD_TOLERANCE = 1 / 255
DECODER_GRAPHS = (DECODER_FILE, CPU_DECODER_FILE, FP16_DECODER_FILE)
# Run logs copied from the checkpoint's run directory into the bundle when present.
_LOG_FILES = (LOG_FILE, PLOT_FILE)


@dataclass(frozen=True)
class Check:
    """One ONNX-vs-torch comparison.

    Attributes
    ----------
    graph : str
        ``encoder.onnx``, ``decoder.onnx``, ``decoder_cpu.onnx`` or ``decoder_fp16.onnx``.
    inputs : str
        What was fed in, e.g. ``real images``.
    batch : int
        Batch size N.
    max_abs_diff : float
        Largest absolute difference over the output (inf if the shapes differ).
    tolerance : float
        The largest accepted: :data:`TOLERANCE`, :data:`FP16_TOLERANCE` for ``decoder_fp16.onnx``,
        or :data:`WINOGRAD_TOLERANCE` for a Winograd ``decoder_cpu.onnx``.
    """

    graph: str
    inputs: str
    batch: int
    max_abs_diff: float
    tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        """Whether the difference is within :attr:`tolerance`."""
        return self.max_abs_diff <= self.tolerance


def export_bundle(checkpoint: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Manifest:
    """Export ``checkpoint`` as the bundle directory ``out``.

    Parameters
    ----------
    checkpoint : path-like
        A ``best.pt`` or ``last.pt`` written by :func:`deepsmote.training.trainer.train`.
    out : path-like
        The bundle directory to create.
    overwrite : bool
        Replace an existing bundle ``out``, only once the new bundle is complete and verified.

    Returns
    -------
    Manifest
        The manifest written to ``out/deepsmote.json``.

    Raises
    ------
    DeepSMOTEError
        If ``out`` exists without ``overwrite``, the checkpoint is not ours, or an output differs
        from torch by more than its :attr:`Check.tolerance`. Nothing is left at or beside ``out`` then.
    """
    out = Path(os.path.abspath(out))  # a name to put the temporary directory beside, also for "."
    refuse_existing(out, overwrite)
    state = load_checkpoint(checkpoint)
    encoder, decoder = models_from_checkpoint(state)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _beside(out, "tmp")
    staging.mkdir()
    try:
        images = state["verification_images"].float()
        _export_graph(encoder, images[:2], ENCODER_INPUT, ENCODER_OUTPUT, staging / ENCODER_FILE)
        with torch.no_grad():
            codes = encoder(images)
        _export_graph(decoder, codes[:2], DECODER_INPUT, DECODER_OUTPUT, staging / DECODER_FILE)
        # The same function in the arrangement that runs faster on the CPU; verified against
        # the decoder itself.
        _export_graph(cpu_decoder(decoder), codes[:2], DECODER_INPUT, DECODER_OUTPUT, staging / CPU_DECODER_FILE)
        (staging / FP16_DECODER_FILE).write_bytes(decoder_graph((staging / DECODER_FILE).read_bytes(), "fp16"))
        checks = verify(encoder, decoder, staging, images)
        logs = [name for name in _LOG_FILES if (Path(checkpoint).parent / name).is_file()]
        for name in logs:
            shutil.copyfile(Path(checkpoint).parent / name, staging / name)
        manifest = _manifest(state, checks, logs, staging)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
        # The runtime's own checks: hashes, names, shapes, dynamic batch axis; and that
        # onnxruntime loads every graph.
        open_models(load_bundle(staging), provider="cpu")
        _move_into_place(staging, out, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def refuse_existing(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out`` unless ``overwrite``; the CLI calls this before training.

    Even with ``overwrite`` only a bundle (or an empty directory) is replaced, so a mistyped
    ``--out`` never deletes someone's files.
    """
    # What a killed export or add-classifier left beside ``out``: the old bundle put back where
    # the kill fell between two renames, temporary copies removed.
    recover_dir(out)
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise DeepSMOTEError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if out.is_symlink() or not out.is_dir() or not ((out / MANIFEST_NAME).is_file() or not any(out.iterdir())):
        raise DeepSMOTEError(
            f"{out} exists and is not a deepsmote bundle; --overwrite replaces only bundles, so choose another --out"
        )


def verify(encoder: nn.Module, decoder: nn.Module, bundle_dir: Path, images: torch.Tensor) -> list[Check]:
    """Compare onnxruntime with torch on real images and random codes.

    Parameters
    ----------
    encoder, decoder : nn.Module
        The exported modules, in eval mode.
    bundle_dir : Path
        Holds ``encoder.onnx``, ``decoder.onnx`` and optionally ``decoder_cpu.onnx`` and
        ``decoder_fp16.onnx``.
    images : torch.Tensor
        float32, shape (N, C, H, W), values in [-1, 1]: real training images.

    Returns
    -------
    list of Check
        Every comparison, all passed.

    Raises
    ------
    DeepSMOTEError
        Naming every comparison over its tolerance, not just the first.
    """
    with torch.no_grad():
        codes = encoder(images)
    random_codes = torch.from_numpy(
        np.random.default_rng(0).standard_normal((len(images), codes.shape[1]), dtype=np.float32)
    )
    cases = [
        (encoder, ENCODER_FILE, ENCODER_INPUT, "real images", images),
        (encoder, ENCODER_FILE, ENCODER_INPUT, "real images", images[:1]),
    ]
    graphs = [name for name in (ENCODER_FILE, *DECODER_GRAPHS) if (bundle_dir / name).is_file()]
    for graph in graphs[1:]:
        cases += [
            (decoder, graph, DECODER_INPUT, "codes of real images", codes),
            (decoder, graph, DECODER_INPUT, "random N(0, 1) codes", random_codes),
            (decoder, graph, DECODER_INPUT, "random N(0, 1) codes", random_codes[:1]),
        ]
    sessions = {name: create_session((bundle_dir / name).read_bytes(), "cpu")[0] for name in graphs}
    checks = []
    for module, graph, input_name, description, x in cases:
        with torch.no_grad():
            expected = module(x).numpy()
        got = sessions[graph].run(None, {input_name: x.numpy()})[0]
        diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
        checks.append(Check(graph, description, len(x), diff, _tolerance(graph, decoder)))
    failed = [c for c in checks if not c.passed]
    if failed:
        listed = "; ".join(f"{c.graph} on {c.batch} {c.inputs}: {c.max_abs_diff:.3g}" for c in failed)
        tolerances = " or ".join(f"{t:g}" for t in sorted({c.tolerance for c in failed}))
        raise DeepSMOTEError(
            f"ONNX export differs from torch by more than {tolerances} ({listed}); "
            "no bundle was written, report this with the torch and onnxruntime versions"
        )
    return checks


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter warns about torch internals and optional torchvision ops, which say nothing
    # about this model; failures still raise.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_graph(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str, path: Path) -> None:
    """Write ``module`` as ONNX with one dynamic batch axis and its weights inline."""
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
        program.save(path, external_data=False)


def _tolerance(graph: str, decoder: nn.Module) -> float:
    """The check's bound on ``graph``'s difference from ``decoder`` (or the encoder)."""
    if graph == FP16_DECODER_FILE:
        return FP16_TOLERANCE
    if graph == CPU_DECODER_FILE and WinogradDecoder.fits(decoder):
        return WINOGRAD_TOLERANCE
    return TOLERANCE


def _manifest(state: dict[str, Any], checks: list[Check], logs: list[str], bundle_dir: Path) -> Manifest:
    history = state["history"]
    final = {key: history[-1][key] for key in ("loss", "reconstruction", "penalty")}
    return Manifest(
        image_shape=tuple(state["image_shape"]),
        latent_dim=state["config"]["latent_dim"],
        classes=tuple(state["classes"]),
        training=TrainingRecord(
            config=state["config"],
            # The weights exported are those after this many epochs (best.pt: the best epoch).
            epochs_run=state["epoch"],
            final_losses=final,
            best_loss=state["best_loss"],
            data_sha256=state["data_sha256"],
            logs=tuple(logs),
        ),
        export=ExportRecord(
            opset=OPSET,
            exporter=EXPORTER,
            torch_version=torch.__version__,
            onnxruntime_version=import_onnxruntime().__version__,
            tolerance=TOLERANCE,
            # The difference of the graphs TOLERANCE bounds; fp16's and Winograd's checks carry their own.
            max_abs_diff=max(c.max_abs_diff for c in checks if c.tolerance == TOLERANCE),
            checks=tuple(asdict(c) for c in checks),
        ),
        files={
            name: sha256_file(bundle_dir / name)
            for name in (ENCODER_FILE, *DECODER_GRAPHS)
            if (bundle_dir / name).is_file()
        },
    )


def _move_into_place(staging: Path, out: Path, overwrite: bool) -> None:
    """Put the finished bundle at ``out``: synced, then exchanged with an old ``out`` in one step
    (:func:`~deepsmote.runtime.atomic.replace_dir`), so ``out`` always names a whole bundle."""
    if out.exists() or out.is_symlink():
        refuse_existing(out, overwrite)  # ``out`` may have appeared while we exported; it is a bundle
    replace_dir(staging, out)


def _beside(out: Path, kind: str) -> Path:
    """A fresh hidden name next to ``out`` that a later run cleans if this process is killed."""
    return beside(out, kind)
