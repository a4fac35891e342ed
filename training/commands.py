"""`deepsmote train` and `deepsmote export`: the torch half of the CLI, imported only when called.

Every check that can fail on the user's input runs before anything is written: an existing
``--out`` is refused before training starts, and a failed export leaves no partial bundle.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from deepsmote.runtime.bundle import Manifest
from deepsmote.runtime.commands.options import resize_options
from deepsmote.runtime.console import table, verbosity_options
from deepsmote.runtime.readers import read_dataset
from deepsmote.runtime.recipes import recipe_option, recipe_values
from deepsmote.runtime.resize import parse_resize

from .export import export_bundle, refuse_existing
from .gate import GateConfig, add_classifier
from .loss import LOSSES, PENALTIES
from .model import ARCHITECTURES
from .precision import PRECISIONS
from .trainer import DEVICES, TrainConfig
from .trainer import train as train_run
from .winograd import CONV_ALGORITHMS

_DEFAULTS = TrainConfig()
_GATE = GateConfig()


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write.")
@click.option("--labels", type=click.Path(path_type=Path), help="IDX labels file, if not found by name.")
@resize_options
@click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True, help="Epochs in total.")
@click.option("--width", type=int, default=_DEFAULTS.width, show_default=True, help="Channels of the first conv.")
@click.option("--latent-dim", type=int, default=_DEFAULTS.latent_dim, show_default=True, help="Latent code size.")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default=_DEFAULTS.arch, show_default=True)
@click.option(
    "--res-blocks", type=int, default=_DEFAULTS.res_blocks, show_default=True, help="Residual blocks per stage."
)
@click.option("--loss", type=click.Choice(LOSSES), default=_DEFAULTS.loss, show_default=True)
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True, help="Adam learning rate.")
@click.option("--penalty", type=click.Choice(PENALTIES), default=_DEFAULTS.penalty, show_default=True)
@click.option("--penalty-weight", type=float, default=_DEFAULTS.penalty_weight, show_default=True)
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default=_DEFAULTS.device, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=_DEFAULTS.precision,
    show_default=True,
    help="fp32, or mixed precision: bf16 (GPUs; CPUs with bf16 instructions), fp16 (GPUs).",
)
@click.option(
    "--conv",
    type=click.Choice(CONV_ALGORITHMS),
    default=_DEFAULTS.conv,
    show_default=True,
    help="winograd: the 28x28 paper decoder's stride-1 transposed convs in fewer multiply-adds (CPU, fp32).",
)
@click.option("--run-dir", type=click.Path(path_type=Path), help="Checkpoints and logs [default: BUNDLE.run].")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last.pt.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out; without --resume, start --run-dir over.")
@click.option(
    "--classifier",
    is_flag=True,
    help="Also train the quality gate's classifier on DATA and add it to the bundle (generate --filter).",
)
@click.option(
    "--classifier-steps", type=int, default=_GATE.steps, show_default=True, help="Adam steps of that classifier."
)
@recipe_option
@verbosity_options
def train(
    data: Path,
    out: Path,
    labels: Path | None,
    resize: str | None,
    crop: str,
    epochs: int,
    width: int,
    latent_dim: int,
    arch: str,
    res_blocks: int,
    loss: str,
    batch_size: int,
    lr: float,
    penalty: str,
    penalty_weight: float,
    seed: int,
    device: str,
    precision: str,
    conv: str,
    run_dir: Path | None,
    resume: bool,
    overwrite: bool,
    classifier: bool,
    classifier_steps: int,
    recipe: str | None,
) -> None:
    """Train an encoder/decoder on DATA and export the best epoch as the bundle --out.

    DATA is an ImageFolder directory, an .npz with images and labels, or an IDX images file.
    """
    chosen = recipe_values(recipe, "train")
    arch, loss, penalty = chosen.get("arch", arch), chosen.get("loss", loss), chosen.get("penalty", penalty)
    classifier = chosen.get("classifier", classifier)
    config = TrainConfig(
        epochs=epochs,
        width=width,
        latent_dim=latent_dim,
        arch=arch,
        res_blocks=res_blocks,
        loss=loss,  # type: ignore[arg-type]
        batch_size=batch_size,
        lr=lr,
        penalty=penalty,  # type: ignore[arg-type]  # click.Choice has checked it
        penalty_weight=penalty_weight,
        seed=seed,
        device=device,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        conv=conv,  # type: ignore[arg-type]
    )
    gate = GateConfig(steps=classifier_steps, seed=seed) if classifier else None
    size = parse_resize(resize, crop)
    out = Path(os.path.abspath(out))
    refuse_existing(out, overwrite)
    dataset = read_dataset(data, labels, resize=size)
    files = train_run(
        dataset, config, run_dir or out.with_name(out.name + ".run"), resume=resume, restart=overwrite and not resume
    )
    manifest = export_bundle(files.best, out, overwrite=overwrite)
    if gate is not None:
        manifest = add_classifier(out, dataset, gate)
    click.echo(_summary(out, manifest))
    counts = dataset.class_counts().tolist()
    click.echo(
        table(["class", "training images"], [[name, n] for name, n in zip(dataset.classes, counts, strict=True)])
    )


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out once the new bundle is complete.")
@verbosity_options
def export(checkpoint: Path, out: Path, overwrite: bool) -> None:
    """Export CHECKPOINT (a run directory's best.pt or last.pt) as the bundle --out."""
    click.echo(_summary(out, export_bundle(checkpoint, out, overwrite=overwrite)))


@click.command("add-classifier")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--labels", type=click.Path(path_type=Path), help="IDX labels file, if not found by name.")
@resize_options
@click.option("--steps", type=int, default=_GATE.steps, show_default=True, help="Adam steps.")
@click.option("--width", type=int, default=_GATE.width, show_default=True, help="Channels of the first conv.")
@click.option("--batch-size", type=int, default=_GATE.batch_size, show_default=True)
@click.option("--lr", type=float, default=_GATE.lr, show_default=True, help="Adam's initial learning rate.")
@click.option("--seed", type=int, default=_GATE.seed, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the classifier BUNDLE already has.")
@verbosity_options
def add_classifier_command(
    bundle: Path,
    data: Path,
    labels: Path | None,
    resize: str | None,
    crop: str,
    steps: int,
    width: int,
    batch_size: int,
    lr: float,
    seed: int,
    overwrite: bool,
) -> None:
    """Train the quality gate's classifier on DATA and add it to BUNDLE as classifier.onnx.

    DATA must have the bundle's classes and image size (the data the bundle was trained on). The
    bundle is rewritten whole beside itself and renamed into place: a failure leaves it as it was.
    """
    config = GateConfig(width=width, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    dataset = read_dataset(data, labels, resize=parse_resize(resize, crop))
    manifest = add_classifier(bundle, dataset, config, overwrite=overwrite)
    click.echo(_summary(bundle, manifest))


def _summary(out: Path, manifest: Manifest) -> str:
    training, export_info, gate = manifest.training, manifest.export, manifest.classifier
    classifier = (
        f"; classifier training accuracy {gate.train_accuracy:.3f} (balanced {gate.train_balanced_accuracy:.3f}), "
        f"ONNX max_abs_diff {gate.max_abs_diff:.2e}"
        if gate is not None
        else ""
    )
    return (
        f"wrote {out}: epoch {training.epochs_run}, loss {training.final_losses['loss']:.5f}, "
        f"ONNX max_abs_diff {export_info.max_abs_diff:.2e}{classifier}"
    )
