"""A job's report: one self-contained HTML page about an OUT that ``generate`` wrote.

Per-class counts, a grid of real and synthetic images per class, the timings, and the training
loss curve when the bundle carries its ``losses.jsonl``. Everything is inline (images as PNG data
URIs, the curve as SVG, no script), so the page opens anywhere, offline.

Internal module: use ``deepsmote report OUT``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic
from .errors import DeepSMOTEError

PER_ROW = 8


def _png_of(out: Path, file: str, key: str, cache: dict[str, Any]) -> bytes:
    """The PNG bytes of one manifest row, whatever the format."""
    path = out / file
    if path.suffix == ".png":
        return path.read_bytes()
    if path.suffix == ".tar":
        if file not in cache:
            with tarfile.open(path) as tar:
                cache[file] = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".png")}
        return cache[file][f"{key}.png"]
    if path.suffix == ".parquet":
        if file not in cache:
            import pyarrow.parquet as pq

            rows = pq.read_table(path, columns=["image"]).column("image").to_pylist()
            cache[file] = {Path(r["path"]).stem: r["bytes"] for r in rows}
        return cache[file][key]
    if file not in cache:
        with np.load(path) as shard:
            cache[file] = shard["images"]
    from .writers import encode_png

    return encode_png(cache[file][int(key)])


def _img(png: bytes, title: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(title)}" title="{html.escape(title)}">'


def _loss_svg(entries: list[dict[str, Any]]) -> str:
    losses = [float(e["loss"]) for e in entries]
    width, height, pad = 480, 200, 30
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    step = (width - 2 * pad) / max(len(losses) - 1, 1)
    points = " ".join(
        f"{pad + i * step:.1f},{height - pad - (v - low) / span * (height - 2 * pad):.1f}" for i, v in enumerate(losses)
    )
    return (
        f'<svg id="loss" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>'
        f'<text x="{pad}" y="16" font-size="12">'
        f"loss {losses[0]:.4f} → {losses[-1]:.4f} over {len(losses)} epochs</text>"
        "</svg>"
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


def build_report(out: Path) -> str:
    """The report page of OUT, as HTML text.

    Raises
    ------
    DeepSMOTEError
        If OUT holds no finished job (no ``summary.json`` and ``manifest.csv``).
    """
    summary_file, manifest_file = out / "summary.json", out / "manifest.csv"
    if not summary_file.is_file() or not manifest_file.is_file():
        raise DeepSMOTEError(f"`out` {out} holds no finished deepsmote generate job; run generate first")
    summary = _summary(summary_file)
    picked: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    with manifest_file.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kind = "synthetic" if row["synthetic"] == "1" else "real"
            if len(picked[(row["class"], kind)]) < PER_ROW:
                picked[(row["class"], kind)].append((row["file"], row["key"]))
    cache: dict[str, Any] = {}
    rows = []
    for name in summary["classes"]:
        counts = summary["counts"][name]
        cells = []
        for kind in ("real", "synthetic"):
            images = "".join(_img(_png_of(out, f, k, cache), f"{name} {kind}") for f, k in picked[(name, kind)])
            cells.append(f"<td>{images or '<em>none written</em>'}</td>")
        rows.append(
            f'<tr class="class-row" data-class="{html.escape(name)}"><th>{html.escape(name)}</th>'
            f"<td>{counts['original']}</td><td>{counts['synthetic']}</td><td>{counts['total']}</td>{''.join(cells)}</tr>"
        )
    timings = "".join(f"<li>{html.escape(k)}: {v} s</li>" for k, v in summary["timings_s"].items())
    loss = _loss_section(Path(summary["bundle"]["path"]))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>deepsmote report: {html.escape(out.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:middle}}
img{{width:42px;height:42px;image-rendering:pixelated;margin:1px}}</style>
</head><body>
<h1>deepsmote report</h1>
<p>{html.escape(str(out))}: format {html.escape(summary["format"])}, seed {summary["seed"]},
k {summary["k_neighbors"]}, provider {html.escape(str(summary["provider"]))},
deepsmote {html.escape(summary["deepsmote_version"])}. Real images are shown where the job
wrote the originals (<code>--include-originals</code>).</p>
<h2>Classes</h2>
<table id="classes">
<tr><th>class</th><th>original</th><th>synthetic</th><th>total</th><th>real</th><th>synthetic</th></tr>
{"".join(rows)}</table>
<h2>Timings</h2><ul id="timings">{timings}<li>images per second: {summary["images_per_s"]}</li></ul>
<h2>Training loss</h2>{loss}
</body></html>
"""


def _loss_section(bundle: Path) -> str:
    log = bundle / "losses.jsonl"
    if not log.is_file():
        return "<p>The bundle carries no training log.</p>"
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return _loss_svg(entries) if entries else "<p>The training log is empty.</p>"


def write_report(out: Path, target: Path) -> None:
    """Write the report of OUT to ``target`` atomically."""
    page = build_report(out).encode()
    try:
        write_bytes_atomic(target, page)
    except OSError as exc:
        raise DeepSMOTEError(
            f"cannot write the report {target}: {exc.strerror or exc}; give `target` a writable path"
        ) from None
