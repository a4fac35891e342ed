"""`deepsmote inspect BUNDLE`: the manifest's summary, with the file hashes checked.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import click

from ..bundle import load_bundle
from ..resize import describe_shape


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
def inspect(bundle: str) -> None:
    """Print the summary of BUNDLE and verify its ONNX file hashes."""
    loaded = load_bundle(bundle)
    manifest = loaded.manifest
    training, export = manifest.training, manifest.export
    config = training.config

    def known(value: object) -> object:
        # A bundle made elsewhere may leave the training and export records out.
        return "?" if value is None else value

    rows = [
        ("bundle", str(loaded.path)),
        ("format_version", manifest.format_version),
        ("image_shape", "x".join(map(str, manifest.image_shape))),
        (
            "expects",
            f"{describe_shape(manifest.image_shape)} images; other sizes: "
            f"--resize {manifest.image_shape[1]}x{manifest.image_shape[2]}",
        ),
        ("latent_dim", manifest.latent_dim),
        ("classes", ", ".join(manifest.classes)),
        ("arch", known(config.get("arch", "paper" if config else None))),
        ("width", known(config.get("width"))),
        ("loss", known(config.get("loss", "mse" if config else None))),
        ("penalty", f"{known(config.get('penalty'))} (weight {known(config.get('penalty_weight'))})"),
        ("epochs run", known(training.epochs_run)),
        ("final losses", known(training.final_losses)),
        (
            "export",
            f"opset {known(export.opset)}, torch {known(export.torch_version)}, "
            f"max_abs_diff {known(export.max_abs_diff)}",
        ),
        ("fingerprint", loaded.fingerprint),
        ("hashes", "ok"),
    ]
    for key, value in rows:
        click.echo(f"{key:>15}: {value}")
