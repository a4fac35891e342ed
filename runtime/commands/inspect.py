"""`deepsmote inspect BUNDLE`: the manifest's summary, with the file hashes checked and the graphs run once.

A hash says the files are those the manifest names, not that they work: ``hashes: ok`` is
printed only after onnxruntime has loaded every graph and each has turned one input into an
output of exactly the expected shape with finite values (the run-time checks of ``Models``).

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import json

import click
import numpy as np

from ..bundle import load_bundle, open_models
from ..console import verbosity_options
from ..resize import describe_shape


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the check results as JSON.")
@verbosity_options
def inspect(bundle: str, as_json: bool) -> None:
    """Print the summary of BUNDLE and verify its ONNX file hashes."""
    loaded = load_bundle(bundle)
    models = open_models(loaded, "cpu", threads=1)
    codes = models.encode(np.zeros((1, *loaded.image_shape), dtype=np.float32))
    models.decode(codes)
    if as_json:
        report = {"bundle": str(loaded.path), "fingerprint": loaded.fingerprint, "hashes": "ok"}
        click.echo(json.dumps({**report, "manifest": loaded.manifest.to_json()}, indent=2, sort_keys=True))
        return
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
        ("graphs", "load and run"),
        ("hashes", "ok"),
    ]
    for key, value in rows:
        click.echo(f"{key:>15}: {value}")
