"""`deepsmote grid BUNDLE DATA --out grid.png`: real and synthetic images side by side, per class.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import click
import numpy as np

from ..atomic import atomic_path
from ..bundle import PROVIDERS, load_bundle, open_models
from ..console import verbosity_options
from ..errors import DeepSMOTEError, InvalidInputError
from ..pixels import from_model, to_model
from ..readers import label_values
from ..remix import RemixSettings
from ..resize import check_image_shape, parse_resize
from ..sampler import DeepSMOTE
from ..stream import open_dataset
from .options import checked_out_file, remix_options, remix_settings, resize_options, sampler_option


def tile(rows: list[np.ndarray], labels: list[str], scale: int = 2, pad: int = 2) -> np.ndarray:
    """Lay rows of uint8 images into one RGB picture with a label column.

    Parameters
    ----------
    rows : list of np.ndarray
        Each uint8 (n_i, H, W) or (n_i, H, W, 3).
    labels : list of str
        One caption per row.

    Returns
    -------
    np.ndarray
        uint8, shape (height, width, 3).
    """
    from PIL import Image, ImageDraw

    height, width = rows[0].shape[1:3]
    cell_h, cell_w = height * scale + pad, width * scale + pad
    label_w = 8 + 7 * max(len(label) for label in labels)
    columns = max(len(r) for r in rows)
    canvas = Image.new("RGB", (label_w + columns * cell_w + pad, len(rows) * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (images, label) in enumerate(zip(rows, labels, strict=True)):
        top = pad + r * cell_h
        draw.text((4, top + cell_h // 2 - 6), label, fill="black")
        for c, image in enumerate(images):
            picture = Image.fromarray(image).convert("RGB").resize((width * scale, height * scale), Image.NEAREST)
            canvas.paste(picture, (label_w + pad + c * cell_w, top))
    return np.asarray(canvas)


@click.command()
@click.argument("bundle", type=click.Path(path_type=str))
@click.argument("data", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="PNG file to write.")
@click.option("--labels", type=click.Path(path_type=str), help="IDX labels file (default: found by name).")
@resize_options
@click.option("--per-row", default=10, show_default=True, type=click.IntRange(1, 1000), help="Images per row.")
@click.option("--synthetic-rows", default=2, show_default=True, type=click.IntRange(1, 100))
@click.option("--k", "k_neighbors", default=5, show_default=True, type=click.IntRange(min=1))
@sampler_option
@remix_options
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--interpolate", "pair", default=None, help="Two DATA indices 'I,J': add a strip decoding their codes.")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(2, 1000), help="Images in the strip.")
@click.option("--provider", default="auto", show_default=True, type=click.Choice(PROVIDERS))
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@verbosity_options
def grid(
    bundle: str,
    data: str,
    out: str,
    labels: str | None,
    resize: str | None,
    crop: str,
    per_row: int,
    synthetic_rows: int,
    k_neighbors: int,
    sampler: str,
    remix_min_weight: float,
    remix_kappa: float,
    remix_tau: float,
    remix_partner: str,
    remix_base: str,
    seed: int,
    pair: str | None,
    steps: int,
    provider: str,
    overwrite: bool,
) -> None:
    """Write a PNG with, per class, a row of real images and rows of synthetic ones."""

    from PIL import Image

    target = checked_out_file(out, overwrite)
    remix = (
        remix_settings(sampler, remix_min_weight, remix_kappa, remix_tau, remix_partner, remix_base)
        or RemixSettings()
    )
    size = parse_resize(resize, crop)
    loaded = load_bundle(bundle)
    # Read in batches: the sampler keeps codes, and only the images shown are read again by index.
    dataset = open_dataset(data, labels, resize=size)
    check_image_shape(dataset.image_shape, loaded.image_shape)
    counts = dataset.class_counts()
    values = label_values(dataset.classes)
    extra = per_row * synthetic_rows
    growable = [c for c in range(len(counts)) if counts[c] >= 2]
    oversampler = DeepSMOTE(
        loaded,
        sampling_strategy={values[c].item(): int(counts[c]) + extra for c in growable},
        k_neighbors=k_neighbors,
        random_state=seed,
        provider=provider,
        sampler=sampler,
        remix_min_weight=remix.min_weight,
        remix_kappa=remix.kappa,
        remix_tau=remix.tau,
        remix_partner=remix.partner,
        remix_base=remix.base,
    )
    oversampler.fit(dataset)
    synthetic = {c: [] for c in growable}
    for shard in oversampler.synthesizer_.shards:
        synthetic[shard.class_index].append(oversampler.synthesizer_.images(shard))
    rows, captions = [], []
    for c, name in enumerate(dataset.classes):
        rows.append(dataset.take(np.flatnonzero(dataset.labels == c)[:per_row]))
        captions.append(f"{name} real")
        if c in synthetic:
            made = np.concatenate(synthetic[c])
            for r in range(synthetic_rows):
                rows.append(made[r * per_row : (r + 1) * per_row])
                captions.append(f"{name} synth")
    if pair is not None:
        try:
            first, second = (int(v) for v in pair.split(","))
            ends = dataset.take([first, second])
        except (ValueError, IndexError):
            raise InvalidInputError(
                f"--interpolate must be two indices 'I,J' below {len(dataset)}, got '{pair}'"
            ) from None
        models = open_models(loaded, provider)
        codes = models.encode(to_model(ends))
        gaps = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        rows.append(from_model(models.decode(codes[0] + gaps * (codes[1] - codes[0]))))
        captions.append(f"{first}->{second}")
    picture = tile(rows, captions)
    try:
        with atomic_path(target) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
    except OSError as exc:
        raise DeepSMOTEError(f"cannot write --out {target}: {exc.strerror or exc}; choose another --out") from None
    click.echo(f"wrote {target} ({picture.shape[1]}x{picture.shape[0]})")
