"""A job's report: one self-contained HTML page that helps judge the data ``generate`` wrote.

Per class: the counts, the gate's acceptance rate when the job was filtered, how far the synthetic
images lie from the real ones (the median distance to the nearest real image of the class, beside
the real images' own median distance to their nearest other real image), the share of
near-duplicates (closer to a real image than a quarter of that real-to-real distance), and a row of
real and of synthetic thumbnails. Then a memorisation check: the synthetic images of each class
closest to a real one, each beside that real image. Then the timings and the training loss curves
(total, reconstruction, penalty) when the bundle carries its ``losses.jsonl``. The real images are
OUT's originals, or DATA's (``--data``, else the DATA path the job recorded when it is still there).
Everything is inline (images as PNG data URIs, the curves as SVG, no script), so the page opens
anywhere, offline.

Distances are root-mean-square pixel differences on the 0..255 scale, between images of one class.

Internal module: use ``deepsmote report OUT``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic
from .errors import DeepSMOTEError, InvalidInputError

# Thumbnails per class row, of each kind; synthetic images beside their nearest real one per class.
PER_ROW = 6
PAIRS = 4
# Synthetic images per class that are measured; real images per class they are compared with (fewer
# for large images, so that a report stays a matter of seconds).
MEASURED = 200
REAL_VALUES = 2 * 10**8
# A synthetic image closer to a real one than this share of the real images' own median distance to
# their nearest neighbour counts as a near-duplicate.
NEAR_DUPLICATE = 0.25


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


class _OutImages:
    """The images of manifest rows, read from OUT's files whatever the format, each file read once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.cache: dict[str, Any] = {}

    def __call__(self, file: str, key: str) -> np.ndarray:
        path = self.out / file
        if path.suffix == ".png":
            return _decode_png(path.read_bytes())
        if file not in self.cache:
            if path.suffix == ".tar":
                with tarfile.open(path) as tar:
                    self.cache[file] = {
                        m.name.removesuffix(".png"): tar.extractfile(m).read()  # type: ignore[union-attr]
                        for m in tar.getmembers()
                        if m.name.endswith(".png")
                    }
            elif path.suffix == ".parquet":
                import pyarrow.parquet as pq

                rows = pq.read_table(path, columns=["image"]).column("image").to_pylist()
                self.cache[file] = {Path(r["path"]).stem: r["bytes"] for r in rows}
            else:
                with np.load(path) as shard:
                    self.cache[file] = shard["images"]
        found = self.cache[file]
        return found[int(key)] if isinstance(found, np.ndarray) else _decode_png(found[key])


@dataclass(frozen=True)
class ClassQuality:
    """How one class's synthetic images lie against its real ones.

    Attributes
    ----------
    nearest : np.ndarray
        float64, shape (m,): each measured synthetic image's distance to its nearest real image.
    partner : np.ndarray
        int64, shape (m,): the position of that real image among the class's real images.
    real_spacing : float or None
        The real images' median distance to their nearest other real image (None below two).
    """

    nearest: np.ndarray
    partner: np.ndarray
    real_spacing: float | None

    @property
    def near_duplicates(self) -> float | None:
        """The share of measured synthetic images closer to a real one than ``NEAR_DUPLICATE`` x spacing."""
        if self.real_spacing is None or not len(self.nearest):
            return None
        return float(np.mean(self.nearest < NEAR_DUPLICATE * self.real_spacing))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64, shape (len(a), len(b)): RMS differences of flattened images, 0..255 scale."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0) / a.shape[1])


def class_quality(synthetic: np.ndarray, real: np.ndarray) -> ClassQuality:
    """Nearest-real distances of ``synthetic`` (m, ...) among ``real`` (n, ...) images of one class."""
    if not len(synthetic) or not len(real):
        return ClassQuality(np.zeros(0), np.zeros(0, dtype=np.int64), None)
    d = _distances(synthetic, real)
    partner = d.argmin(axis=1)
    spacing = None
    if len(real) >= 2:
        own = _distances(real, real)
        np.fill_diagonal(own, np.inf)
        spacing = float(np.median(own.min(axis=1)))
    return ClassQuality(d[np.arange(len(d)), partner], partner, spacing)


def _png(image: np.ndarray) -> bytes:
    from .writers import encode_png

    return encode_png(np.ascontiguousarray(image))


def _img(image: np.ndarray, title: str, css: str = "") -> str:
    data = base64.b64encode(_png(image)).decode()
    return (
        f'<img class="{css}" src="data:image/png;base64,{data}" alt="{html.escape(title)}" '
        f'title="{html.escape(title)}">'
    )


# summary.json is a few kB; a larger one was not written by generate.
_MAX_SUMMARY_BYTES = 16 << 20


def _summary(file: Path) -> dict[str, Any]:
    """``summary.json`` as generate writes it, or a one-line error naming what is wrong with it."""
    fix = "rerun the generate job to rewrite it"
    if file.is_symlink() or not file.is_file():
        raise DeepSMOTEError(f"{file}: not a regular file (a link?); {fix}")
    if file.stat().st_size > _MAX_SUMMARY_BYTES:
        raise DeepSMOTEError(f"{file}: {file.stat().st_size} bytes, not a summary generate writes; {fix}")
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DeepSMOTEError(f"{file}: not valid JSON ({type(exc).__name__}); {fix}") from None
    ok = (
        isinstance(summary, dict)
        and isinstance(summary.get("classes"), list)
        and all(isinstance(c, str) for c in summary["classes"])
        and isinstance(summary.get("counts"), dict)
        and all(
            isinstance(summary["counts"].get(c), dict)
            and all(isinstance(summary["counts"][c].get(k), int) for k in ("original", "synthetic", "total"))
            for c in summary["classes"]
        )
        and all(isinstance(summary.get(k), str) for k in ("format", "deepsmote_version"))
        and isinstance(summary.get("timings_s"), dict)
        and isinstance(summary.get("bundle"), dict)
        and isinstance(summary["bundle"].get("path"), str)
        and all(k in summary for k in ("seed", "k_neighbors", "provider", "images_per_s"))
    )
    if not ok:
        raise DeepSMOTEError(f"{file}: not the summary of a deepsmote generate job (fields missing or mistyped); {fix}")
    return summary


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning [low, high]."""
    span = (high - low) or abs(high) or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def loss_svg(entries: Sequence[dict[str, Any]]) -> str:
    """The training curves of ``losses.jsonl``'s entries: total, reconstruction and penalty per epoch,
    with labelled axes and a legend."""
    series = [
        (key, colour) for key, colour in (("loss", "#1f77b4"), ("reconstruction", "#2ca02c"), ("penalty", "#d62728"))
    ]
    series = [(k, c) for k, c in series if all(k in e for e in entries)]
    epochs = [int(e.get("epoch", i + 1)) for i, e in enumerate(entries)]
    values = [float(e[k]) for e in entries for k, _ in series]
    width, height, left, right, top, bottom = 640, 300, 64, 150, 20, 44
    low, high = min([*values, 0.0]), max(values)
    y_ticks = _ticks(low, high)
    low, high = min(low, y_ticks[0]), max(high, y_ticks[-1])
    x_low, x_high = min(epochs), max(epochs)

    def x(epoch: float) -> float:
        return left + (epoch - x_low) / ((x_high - x_low) or 1) * (width - left - right)

    def y(value: float) -> float:
        return height - bottom - (value - low) / ((high - low) or 1) * (height - top - bottom)

    parts = [
        f'<svg id="loss" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="training loss per epoch" font-family="sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
    ]
    for tick in y_ticks:
        parts.append(
            f'<line x1="{left - 4}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" stroke="#eee"/>'
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    for tick in _ticks(x_low, x_high, 8):
        if float(tick).is_integer():
            parts.append(
                f'<line x1="{x(tick):.1f}" y1="{height - bottom}" x2="{x(tick):.1f}" y2="{height - bottom + 4}" '
                f'stroke="#333"/><text x="{x(tick):.1f}" y="{height - bottom + 18}" '
                f'text-anchor="middle">{tick:g}</text>'
            )
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">epoch</text>')
    parts.append(
        f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + height - bottom) / 2})">training loss</text>'
    )
    for row, (key, colour) in enumerate(series):
        points = " ".join(f"{x(ep):.1f},{y(float(e[key])):.1f}" for ep, e in zip(epochs, entries, strict=True))
        parts.append(
            f'<polyline class="curve" data-curve="{key}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"/>'
        )
        ly = top + 10 + 20 * row
        parts.append(
            f'<line x1="{width - right + 14}" y1="{ly}" x2="{width - right + 34}" y2="{ly}" stroke="{colour}" '
            f'stroke-width="2"/><text x="{width - right + 40}" y="{ly + 4}">{key}</text>'
        )
    last = entries[-1]
    parts.append(
        f'<text x="{width - right + 14}" y="{top + 10 + 20 * len(series) + 10}" fill="#555">'
        f"{len(entries)} epochs; last {float(last['loss']):.4f}</text></svg>"
    )
    return "".join(parts)


def _real_from_data(data: str, summary: dict[str, Any]) -> dict[str, np.ndarray]:
    """Up to the cap of each class's real images, read from DATA (which must have the job's classes)."""
    from .stream import open_dataset

    source = open_dataset(data)
    if list(source.classes) != list(summary["classes"]):
        raise InvalidInputError(
            f"`data` {data} has classes {', '.join(source.classes[:5])}..., not the job's "
            f"{', '.join(summary['classes'][:5])}...; give the DATA the job read"
        )
    cap = _real_cap(source.item_shape)
    found = {}
    for c, name in enumerate(source.classes):
        indices = np.flatnonzero(source.labels == c)[:cap]
        found[name] = source.take(indices) if len(indices) else np.zeros((0, *source.item_shape), np.uint8)
    return found


def _real_cap(item_shape: Sequence[int]) -> int:
    return int(max(100, min(2000, REAL_VALUES // (MEASURED * max(1, math.prod(item_shape))))))


def _recorded_data(summary: dict[str, Any]) -> str | None:
    """The DATA path the job recorded, if it is still there."""
    recorded = (summary.get("data") or {}).get("path")
    return recorded if recorded and Path(recorded).exists() else None


def build_report(out: Path, data: str | None = None, names: Sequence[str] | None = None) -> str:
    """The report page of OUT, as HTML text.

    Parameters
    ----------
    out : Path
        A finished job's output directory.
    data : str, optional
        The DATA the job read, for the real images when OUT holds none (``--synthetic-only``).
    names : sequence of str, optional
        Display names of the classes, in the job's class order (for DATA whose classes are numbers).

    Raises
    ------
    DeepSMOTEError
        If OUT holds no finished job (no ``summary.json`` and ``manifest.csv``).
    """
    summary_file, manifest_file = out / "summary.json", out / "manifest.csv"
    if not summary_file.is_file() or not manifest_file.is_file():
        raise DeepSMOTEError(f"`out` {out} holds no finished deepsmote generate job; run generate first")
    summary = _summary(summary_file)
    classes = list(summary["classes"])
    if names is not None and len(names) != len(classes):
        raise InvalidInputError(f"`names` gives {len(names)} names for the job's {len(classes)} classes")
    shown = {c: (f"{names[i]} ({c})" if names else c) for i, c in enumerate(classes)}
    rows: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    with manifest_file.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[(row["class"], "synthetic" if row["synthetic"] == "1" else "real")].append((row["file"], row["key"]))
    read = _OutImages(out)
    synthetic = {
        c: np.asarray([read(f, k) for f, k in rows[(c, "synthetic")][:MEASURED]])
        for c in classes
        if rows[(c, "synthetic")]
    }
    source = data or (None if summary.get("include_originals") else _recorded_data(summary))
    real = _real_from_data(source, summary) if source is not None else {}
    some = next(iter(synthetic.values()), None)
    if source is not None and some is not None and any(len(r) and r.shape[1:] != some.shape[1:] for r in real.values()):
        if data is not None:
            raise InvalidInputError(
                f"`data` {data} holds images of shape {next(iter(real.values())).shape[1:]}, the job's are "
                f"{some.shape[1:]}; give the DATA the job read, at its size"
            )
        source, real = None, {}  # the recorded DATA was resized by the job: compare with nothing rather than fail
    if source is not None:
        real_note = f"Real images from DATA {html.escape(str(source))}."
    else:
        cap = _real_cap(some.shape[1:] if some is not None else (28, 28))
        real = {c: np.asarray([read(f, k) for f, k in rows[(c, "real")][:cap]]) for c in classes if rows[(c, "real")]}
        real_note = (
            "Real images from the originals in OUT."
            if real
            else "OUT holds no real images (<code>--synthetic-only</code>): pass <code>--data DATA</code> to compare."
        )
    quality = {c: class_quality(synthetic.get(c, np.zeros(0)), real.get(c, np.zeros(0))) for c in classes}
    acceptance = summary.get("acceptance") if summary.get("filter_threshold") is not None else None
    table_rows, pair_rows = [], []
    for c in classes:
        counts, q = summary["counts"][c], quality[c]
        cells = []
        for kind, images in (("real", real.get(c)), ("synthetic", synthetic.get(c))):
            thumbs = "".join(
                _img(im, f"{c} {kind}", "thumb") for im in (images if images is not None else [])[:PER_ROW]
            )
            cells.append(f'<td class="{kind}">{thumbs or "<em>none</em>"}</td>')
        numbers = [
            f"{np.median(q.nearest):.1f}" if len(q.nearest) else "–",
            f"{q.real_spacing:.1f}" if q.real_spacing is not None else "–",
            f"{q.near_duplicates:.0%}" if q.near_duplicates is not None else "–",
        ]
        if acceptance is not None:
            rate = acceptance.get(c, {}).get("rate") if isinstance(acceptance.get(c), dict) else None
            numbers.append("–" if rate is None else f"{rate:.1%}")
        table_rows.append(
            f'<tr class="class-row" data-class="{html.escape(c)}"><th>{html.escape(shown[c])}</th>'
            f"<td>{counts['original']}</td><td>{counts['synthetic']}</td><td>{counts['total']}</td>"
            + "".join(f'<td class="num">{n}</td>' for n in numbers)
            + "".join(cells)
            + "</tr>"
        )
        if len(q.nearest):
            pairs, partners = [], set()
            for i in np.argsort(q.nearest, kind="stable").tolist():
                # One pair per real image: several synthetic images near one real image show it once.
                if len(pairs) == PAIRS or int(q.partner[i]) in partners:
                    continue
                partners.add(int(q.partner[i]))
                pairs.append(
                    '<figure class="pair">'
                    + _img(synthetic[c][i], f"{c} synthetic", "big")
                    + _img(real[c][q.partner[i]], f"{c} nearest real", "big")
                    + f"<figcaption>distance {q.nearest[i]:.1f}</figcaption></figure>"
                )
            pair_rows.append(
                f'<div class="pairs" data-class="{html.escape(c)}"><h3>{html.escape(shown[c])}</h3>'
                f"{''.join(pairs)}</div>"
            )
    gate_head = "<th>gate accepted</th>" if acceptance is not None else ""
    timings = "".join(f"<li>{html.escape(k)}: {v} s</li>" for k, v in summary["timings_s"].items())
    loss = _loss_section(Path(summary["bundle"]["path"]))
    pairs_html = "".join(pair_rows) or "<p>No synthetic image has a real one to compare with.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>deepsmote report: {html.escape(out.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:middle}} td.num{{text-align:right}}
img{{image-rendering:pixelated;margin:1px;background:#000}} img.thumb{{width:52px;height:52px}}
td.real,td.synthetic{{white-space:nowrap}}
img.big{{width:84px;height:84px}} .pairs{{display:inline-block;vertical-align:top;margin:0 1.5em 1em 0}}
.pairs h3{{margin:0 0 .3em;font-size:1em}} figure.pair{{display:inline-block;margin:0 .6em .4em 0;text-align:center}}
figcaption{{font-size:.8em;color:#555}} .note{{color:#555;max-width:60em}}</style>
</head><body>
<h1>deepsmote report</h1>
<p>{html.escape(str(out))}: format {html.escape(summary["format"])}, seed {summary["seed"]},
k {summary["k_neighbors"]}, sampler {html.escape(str(summary.get("sampler", "smote")))},
provider {html.escape(str(summary["provider"]))}, deepsmote {html.escape(summary["deepsmote_version"])}.
{real_note}</p>
<h2>Classes</h2>
<p class="note">Distances are root-mean-square pixel differences (0-255) between images of a class, over up to
{MEASURED} synthetic images per class. <b>nearest real</b>: the median distance of a synthetic image to the
nearest real one; <b>real spacing</b>: the real images' median distance to their nearest other real image;
<b>near-duplicates</b>: the share of synthetic images closer to a real one than {NEAR_DUPLICATE:g} of the real
spacing (copies rather than new images).</p>
<table id="classes">
<tr><th>class</th><th>original</th><th>synthetic</th><th>total</th><th>nearest real</th><th>real spacing</th>
<th>near-duplicates</th>{gate_head}<th>real images</th><th>synthetic images</th></tr>
{"".join(table_rows)}</table>
<h2>Memorisation check</h2>
<p class="note">Per class, the {PAIRS} synthetic images closest to a real image (left), each beside that real image
(right), one pair per real image. Pairs that look alike are copies of the training data.</p>
<div id="pairs">{pairs_html}</div>
<h2>Training loss</h2>{loss}
<h2>Timings</h2><ul id="timings">{timings}<li>images per second: {summary["images_per_s"]}</li></ul>
</body></html>
"""


def _loss_section(bundle: Path) -> str:
    log = bundle / "losses.jsonl"
    if not log.is_file():
        return "<p>The bundle carries no training log.</p>"
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return loss_svg(entries) if entries else "<p>The training log is empty.</p>"


def write_report(out: Path, target: Path, data: str | None = None, names: Sequence[str] | None = None) -> None:
    """Write the report of OUT to ``target`` atomically (see :func:`build_report`)."""
    page = build_report(out, data, names).encode()
    try:
        write_bytes_atomic(target, page)
    except OSError as exc:
        raise DeepSMOTEError(
            f"cannot write the report {target}: {exc.strerror or exc}; give `target` a writable path"
        ) from None
