"""`deepsmote encode BUNDLE DATA --out CODES`: DATA's codes in a latent cache, for `generate` without the images.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import time

import click

from ..bundle import PROVIDERS, read_manifest
from ..codes import encode_dataset
from ..console import verbosity_options
from ..outdir import refuse_out_inside_data
from ..resize import parse_resize
from ..stream import open_dataset
from .options import checked_out_file, resize_options


@click.command()
@click.argument("bundle", type=click.Path(path_type=str))
@click.argument("data", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="CODES file to write.")
@click.option("--labels", type=click.Path(path_type=str), help="IDX labels file (default: found by name).")
@resize_options
@click.option("--provider", default="auto", show_default=True, type=click.Choice(PROVIDERS))
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@verbosity_options
def encode(
    bundle: str,
    data: str,
    out: str,
    labels: str | None,
    resize: str | None,
    crop: str,
    provider: str,
    threads: int | None,
    overwrite: bool,
) -> None:
    """Encode DATA with BUNDLE's encoder into CODES, a latent cache.

    CODES holds the codes (N x Z float32, memory-mappable), labels, class names, each code's DATA
    index and the bundle's fingerprint. `deepsmote generate BUNDLE CODES --out OUT` then makes the
    same images as from DATA, on a machine that has only the bundle and CODES.
    """
    target = checked_out_file(out, overwrite)
    refuse_out_inside_data(out, data)
    start = time.perf_counter()
    source = open_dataset(
        data, labels, image_shape=read_manifest(bundle).image_shape, resize=parse_resize(resize, crop)
    )
    cache = encode_dataset(bundle, source, target, provider=provider, threads=threads)
    size = target.stat().st_size
    click.echo(
        f"wrote {target}: {len(cache)} codes of {cache.codes.shape[1]} floats ({size / 1e6:.1f} MB) in "
        f"{time.perf_counter() - start:.1f} s"
    )
