"""`deepsmote generate BUNDLE DATA --out OUT`: torch-free oversampling to disk.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import json

import click

from ..bundle import PRECISIONS, PROVIDERS
from ..job import ENGINES, generate_dataset
from ..plan import DEFAULT_SHARD_SIZE
from ..readers import read_dataset
from ..resize import parse_resize
from ..strategy import parse_strategy
from ..writers import FORMATS
from .options import resize_options


@click.command()
@click.argument("bundle", type=click.Path(path_type=str))
@click.argument("data", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str), help="Output directory.")
@click.option("--labels", type=click.Path(path_type=str), help="IDX labels file (default: found by name).")
@resize_options
@click.option(
    "--strategy",
    default="auto",
    show_default=True,
    help="auto | minority | not-majority | not-minority | all | JSON {class: count after}.",
)
@click.option(
    "--k",
    "k_neighbors",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Nearest neighbours within a class.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--format", "fmt", default="imagefolder", show_default=True, type=click.Choice(FORMATS))
@click.option("--provider", default="auto", show_default=True, type=click.Choice(PROVIDERS))
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Codes decoded per onnxruntime call (default: 32 on the CPU, 256 on a GPU); does not change the output.",
)
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads (default: all cores).")
@click.option(
    "--shard-size",
    default=DEFAULT_SHARD_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples per output shard and per seed.",
)
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(PRECISIONS),
    help="Decoder arithmetic; fp16 is for GPUs (needs the onnx package).",
)
@click.option("--engine", default="local", show_default=True, type=click.Choice(ENGINES))
@click.option("--address", default=None, help="Ray cluster address (--engine ray); default: start a local Ray.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Ray workers (--engine ray).")
@click.option("--overwrite", is_flag=True, help="Replace an OUT made by a job with other settings.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(
    bundle: str,
    data: str,
    out: str,
    labels: str | None,
    resize: str | None,
    crop: str,
    strategy: str,
    k_neighbors: int,
    seed: int,
    fmt: str,
    provider: str,
    batch_size: int | None,
    threads: int | None,
    shard_size: int,
    precision: str,
    engine: str,
    address: str | None,
    workers: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Oversample DATA with BUNDLE and write the synthetic images to OUT.

    DATA is an ImageFolder directory, an .npz with 'images' and 'labels', or an IDX images
    file. A rerun of an interrupted job with the same settings completes it.
    """
    dataset = read_dataset(data, labels, parse_resize(resize, crop))
    engine_options = {"address": address, "workers": workers} if engine == "ray" else None
    summary = generate_dataset(
        bundle,
        dataset,
        out,
        sampling_strategy=parse_strategy(strategy),
        k_neighbors=k_neighbors,
        seed=seed,
        fmt=fmt,
        provider=provider,
        batch_size=batch_size,
        threads=threads,
        shard_size=shard_size,
        precision=precision,
        engine=engine,
        engine_options=engine_options,
        overwrite=overwrite,
        progress=not quiet,
    )
    synthetic = sum(c["synthetic"] for c in summary["counts"].values())
    click.echo(
        f"wrote {synthetic} synthetic images ({summary['images_generated_this_run']} this run) to {out} "
        f"on {summary['provider']} in {summary['timings_s']['total']} s"
    )
    click.echo(json.dumps({k: v["total"] for k, v in summary["counts"].items()}))
