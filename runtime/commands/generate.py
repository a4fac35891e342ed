"""`deepsmote generate BUNDLE DATA --out OUT`: torch-free oversampling to disk.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..bundle import CPU_DECODE_BATCH, GPU_DECODE_BATCH, PRECISIONS, PROVIDERS, load_bundle, read_manifest
from ..codes import LatentCache, read_latent_cache
from ..console import QUIET, table, verbosity, verbosity_options
from ..errors import InvalidInputError
from ..gate import DEFAULT_MAX_DRAW_RATIO, check_threshold
from ..job import ENGINES, check_remix_job, generate_dataset, plan_table, resolve_originals
from ..mixing import check_share
from ..outdir import refuse_out_inside_data
from ..plan import DEFAULT_SHARD_SIZE
from ..readers import is_latent_cache
from ..recipes import recipe_option, recipe_values
from ..resize import Resize, parse_resize
from ..strategy import parse_strategy
from ..stream import open_dataset
from ..writers import FORMATS
from .options import remix_options, remix_settings, resize_options, sampler_option


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
@sampler_option
@remix_options
@click.option(
    "--hard-labels",
    is_flag=True,
    help="--sampler remix: drop the soft labels, each image keeping its base's class alone (loses the mix's "
    "label weights; what an ImageFolder needs).",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--format", "fmt", default="imagefolder", show_default=True, type=click.Choice(FORMATS))
@click.option("--provider", default="auto", show_default=True, type=click.Choice(PROVIDERS))
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help=f"Codes decoded per onnxruntime call (default: {CPU_DECODE_BATCH} on the CPU, fewer above 64x64x1; "
    f"{GPU_DECODE_BATCH} on a GPU); does not change the output.",
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
    help="Decoder arithmetic; fp16 is for GPUs (a bundle exported before 0.9.0 also needs the onnx package).",
)
@click.option("--engine", default="local", show_default=True, type=click.Choice(ENGINES))
@click.option("--address", default=None, help="Ray cluster address (--engine ray); default: start a local Ray.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Ray workers (--engine ray).")
@click.option(
    "--include-originals/--synthetic-only",
    default=None,
    help="Write the originals too, so OUT is the whole balanced set (the default from DATA), or only the new "
    "samples (the only choice from CODES).",
)
@click.option(
    "--filter",
    "filter_threshold",
    default=None,
    type=float,
    help="Quality gate: keep candidates the bundle's classifier gives >= P of their class (0 < P <= 1).",
)
@click.option(
    "--max-draw-ratio",
    default=DEFAULT_MAX_DRAW_RATIO,
    show_default=True,
    type=click.IntRange(min=1),
    help="--filter draws at most this many candidates per image kept, then stops with an error.",
)
@click.option(
    "--synthetic-share",
    default=1.0,
    show_default=True,
    type=float,
    help="Share of each class's gap filled with synthetic images; the rest repeats its real images.",
)
@recipe_option
@click.option("--overwrite", is_flag=True, help="Replace an OUT made by a job with other settings.")
@click.option("--dry-run", is_flag=True, help="Print the per-class plan and write nothing.")
@verbosity_options
def generate(
    bundle: str,
    data: str,
    out: str,
    labels: str | None,
    resize: str | None,
    crop: str,
    strategy: str,
    k_neighbors: int,
    sampler: str,
    remix_min_weight: float,
    remix_kappa: float,
    remix_tau: float,
    remix_partner: str,
    remix_base: str,
    hard_labels: bool,
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
    include_originals: bool | None,
    filter_threshold: float | None,
    max_draw_ratio: int,
    synthetic_share: float,
    recipe: str | None,
    overwrite: bool,
    dry_run: bool,
) -> None:
    """Oversample DATA with BUNDLE and write the balanced set to OUT: the originals and the new images.

    DATA is an ImageFolder directory, an .npz with 'images' and 'labels', or an IDX images
    file, read in batches (only the codes are kept); or CODES, the latent cache that
    `deepsmote encode` wrote for this bundle, which gives the same bytes without the images. A
    rerun of an interrupted job with the same settings completes it.
    """
    chosen = recipe_values(recipe, "generate")
    sampler = chosen.get("sampler", sampler)
    filter_threshold = chosen.get("filter_threshold", filter_threshold)
    synthetic_share = chosen.get("synthetic_share", synthetic_share)
    remix = remix_settings(
        sampler,
        chosen.get("remix_min_weight", remix_min_weight),
        chosen.get("remix_kappa", remix_kappa),
        chosen.get("remix_tau", remix_tau),
        chosen.get("remix_partner", remix_partner),
        chosen.get("remix_base", remix_base),
    )
    # The cheap checks first: nothing is read before the arguments are known to be usable.
    check_remix_job(sampler, remix, hard_labels, fmt, filter_threshold)
    sampling_strategy = parse_strategy(strategy)
    check_threshold(filter_threshold)
    check_share(synthetic_share)
    refuse_out_inside_data(out, data)
    size = parse_resize(resize, crop)
    if is_latent_cache(Path(data)):
        dataset = read_codes_input(data, labels, size, include_originals, synthetic_share)
    else:
        # Headers and labels only: the images are read in batches as they are encoded. An IDX header
        # is compared with the bundle before gigabytes of data are read.
        dataset = open_dataset(data, labels, image_shape=read_manifest(bundle).image_shape, resize=size)
    if dry_run:
        loaded = load_bundle(bundle)  # a broken bundle is refused now, not at the real run
        if isinstance(dataset, LatentCache):
            dataset.check_bundle(loaded)
        plan = plan_table(dataset, sampling_strategy, fmt, shard_size, resolve_originals(include_originals, dataset))
        click.echo(f"plan for {out} (dry run: nothing written)")
        click.echo(table(["class", "current", "target", "to generate", "shards"], [list(r.values()) for r in plan]))
        return
    engine_options = {"address": address, "workers": workers} if engine == "ray" else None
    summary = generate_dataset(
        bundle,
        dataset,
        out,
        sampling_strategy=sampling_strategy,
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
        include_originals=include_originals,
        filter_threshold=filter_threshold,
        max_draw_ratio=max_draw_ratio,
        synthetic_share=synthetic_share,
        overwrite=overwrite,
        sampler=sampler,
        remix=remix,
        hard_labels=hard_labels,
        progress=verbosity() > QUIET,
    )
    synthetic = sum(c["synthetic"] for c in summary["counts"].values())
    repeated = sum(c.get("repeated", 0) for c in summary["counts"].values())
    originals = sum(c["original"] for c in summary["counts"].values()) if summary["include_originals"] else 0
    wrote = f"{f'{originals} originals, ' if originals else ''}{synthetic} synthetic images"
    wrote += f" and {repeated} repeats of real ones" if repeated else ""
    click.echo(
        f"wrote {wrote} ({summary['images_generated_this_run']} this run) to {out} "
        f"on {summary['provider']} in {summary['timings_s']['total']} s"
    )
    click.echo(count_table(summary))


def count_table(summary: dict) -> str:
    """The end-of-run table: per class its counts, and the repeats and the gate's acceptance rate when used."""
    acceptance = summary.get("acceptance", {})
    mixed = any("repeated" in c for c in summary["counts"].values())
    headers = ["class", "original", "synthetic", *(["repeated"] if mixed else []), "total"]
    headers += ["accepted"] if "filter_threshold" in summary and summary["filter_threshold"] is not None else []
    rows = []
    for name, c in summary["counts"].items():
        row: list[object] = [
            name,
            c["original"],
            c["synthetic"],
            *([c.get("repeated", 0)] if mixed else []),
            c["total"],
        ]
        if headers[-1] == "accepted":
            rate = acceptance.get(name, {}).get("rate") if isinstance(acceptance.get(name), dict) else None
            row.append("-" if rate is None else f"{rate:.1%}")
        rows.append(row)
    return table(headers, rows)


def read_codes_input(
    path: str, labels: str | None, size: Resize | None, include_originals: bool | None, synthetic_share: float
) -> LatentCache:
    """CODES in place of DATA, refusing the options that need the images (a share below 1 repeats them)."""
    needs = (
        (labels, "--labels"),
        (size, "--resize"),
        (include_originals, "--include-originals"),
        (synthetic_share != 1, "--synthetic-share"),
    )
    for given, flag in needs:
        if given:
            raise InvalidInputError(
                f"{flag} needs the images, but {path} is CODES (a latent cache: codes only); give DATA instead, "
                f"or leave out {flag}"
            )
    return read_latent_cache(path)
