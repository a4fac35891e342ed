"""`deepsmote inspect BUNDLE`: the manifest's summary, with the file hashes checked."""

from __future__ import annotations

import click

from ..bundle import load_bundle


@click.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
def inspect(bundle: str) -> None:
    """Print the summary of BUNDLE and verify its ONNX file hashes."""
    loaded = load_bundle(bundle)
    manifest = loaded.manifest
    training = manifest["training"]
    export = manifest["export"]
    config = training.get("config", {})
    rows = [
        ("bundle", str(loaded.path)),
        ("format_version", manifest["format_version"]),
        ("image_shape", "x".join(map(str, manifest["image_shape"]))),
        ("latent_dim", manifest["latent_dim"]),
        ("classes", ", ".join(manifest["classes"])),
        ("width", config.get("width", "?")),
        ("penalty", f"{config.get('penalty', '?')} (weight {config.get('penalty_weight', '?')})"),
        ("epochs run", training.get("epochs_run", "?")),
        ("final losses", training.get("final_losses", "?")),
        (
            "export",
            f"opset {export.get('opset', '?')}, torch {export.get('torch_version', '?')}, "
            f"max_abs_diff {export.get('max_abs_diff', '?')}",
        ),
        ("fingerprint", loaded.fingerprint),
        ("hashes", "ok"),
    ]
    for key, value in rows:
        click.echo(f"{key:>15}: {value}")
