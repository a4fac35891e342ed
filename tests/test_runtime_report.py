"""`deepsmote report OUT`: one self-contained page, checked in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from helpers import run_main

GOLDEN_BUNDLE = Path(__file__).resolve().parent / "data" / "golden" / "bundle"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _main(*args: object) -> None:
    from deepsmote.runtime.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        assert not exit_.code


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    _main("generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", "webdataset", "-q")
    _main("report", out, "--names", ",".join(NAMES))
    return out


NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _class_rows(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr class="class-row" data-class="([^"]+)">(.*?)</tr>', page))


def test_the_page_is_self_contained_and_shows_every_class(reported):
    page = (reported / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    rows = _class_rows(page)
    assert list(rows) == [str(c) for c in range(10)]
    assert "<th>Ankle boot (9)</th>" in rows["9"]  # the display names beside the job's
    # up to six real thumbnails per class (class 9 has 4), six synthetic ones but for class 0, which gets none
    for c, row in rows.items():
        real, synthetic = re.findall(r'<td class="(?:real|synthetic)">(.*?)</td>', row)
        assert real.count('class="thumb"') == (4 if c == "9" else 6)
        assert synthetic.count('class="thumb"') == (0 if c == "0" else 6)
    assert '<svg id="loss"' in page  # the golden bundle carries its losses.jsonl


def test_each_class_shows_its_distances_and_its_closest_synthetic_images_beside_real_ones(reported):
    page = (reported / "report.html").read_text()
    rows = _class_rows(page)
    for c, row in rows.items():
        nearest, spacing, duplicates = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert float(spacing) > 0 and duplicates.endswith("%") if c != "0" else nearest == "–"
    pairs = dict(re.findall(r'<div class="pairs" data-class="([^"]+)">(.*?)</div>', page))
    assert list(pairs) == [str(c) for c in range(1, 10)]
    for block in pairs.values():
        distances = [float(d) for d in re.findall(r"distance ([0-9.]+)", block)]
        assert 1 <= len(distances) <= 4 and distances == sorted(distances)
        figures = re.findall(r'<figure class="pair">(.*?)</figure>', block)
        real = [re.findall(r'src="([^"]+)"', figure)[1] for figure in figures]
        assert len(figures) == len(distances) and len(set(real)) == len(real)  # one pair per real image


def test_the_loss_plot_has_axes_and_its_three_curves(reported):
    page = (reported / "report.html").read_text()
    svg = page[page.index('<svg id="loss"') : page.index("</svg>")]
    assert re.findall(r'data-curve="([a-z]+)"', svg) == ["loss", "reconstruction", "penalty"]
    assert ">epoch</text>" in svg and ">training loss</text>" in svg
    assert len(re.findall(r'text-anchor="end">[0-9.]+</text>', svg)) >= 3  # y ticks


def test_near_duplicates_are_counted_against_the_real_images_spacing():
    from deepsmote.runtime.report import class_quality

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (20, 8, 8), dtype=np.uint8)
    copies = real[[3, 7, 7]].astype(np.int16) + rng.integers(-2, 3, (3, 8, 8))
    fresh = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    quality = class_quality(np.concatenate([np.clip(copies, 0, 255).astype(np.uint8), fresh]), real)
    assert quality.partner[:3].tolist() == [3, 7, 7] and quality.nearest[:3].max() < 2
    assert quality.near_duplicates == 3 / 8


def test_a_synthetic_only_out_takes_the_real_images_from_data(tmp_path):
    out = tmp_path / "out"
    _main("generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--synthetic-only", "--strategy", '{"9": 20}', "-q")
    _main("report", out, "--html", tmp_path / "alone.html")  # the DATA path the job recorded
    _main("report", out, "--data", fmnist_mini())
    for page in ((tmp_path / "alone.html").read_text(), (out / "report.html").read_text()):
        assert f"Real images from DATA {fmnist_mini()}" in page
        real, _ = re.findall(r'<td class="(?:real|synthetic)">(.*?)</td>', _class_rows(page)["9"])
        assert real.count('class="thumb"') == 4
    summary = json.loads((out / "summary.json").read_text())
    summary["data"]["path"] = str(tmp_path / "moved")
    (out / "summary.json").write_text(json.dumps(summary))
    _main("report", out)
    assert "pass <code>--data DATA</code>" in (out / "report.html").read_text()


def test_the_gate_acceptance_is_shown_when_the_job_was_filtered(reported, tmp_path):
    from deepsmote.runtime.report import build_report

    out = tmp_path / "out"
    shutil.copytree(reported, out)
    summary = json.loads((out / "summary.json").read_text())
    summary["filter_threshold"] = 0.9
    summary["acceptance"] = {"9": {"accepted": 396, "drawn": 792, "rate": 0.5}}
    (out / "summary.json").write_text(json.dumps(summary))
    page = build_report(out)
    assert "<th>gate accepted</th>" in page and '<td class="num">50.0%</td>' in _class_rows(page)["9"]


def test_a_new_job_over_an_old_one_leaves_no_old_report(reported, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reported, out)
    _main("generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--strategy", '{"9": 10}', "--overwrite", "-q")
    assert not (out / "report.html").exists()


def test_report_of_a_directory_without_a_job_is_one_line(tmp_path, capsys):
    code, _, err = run_main(["report", tmp_path], capsys)
    assert (
        code == 1
        and err.strip() == f"Error: --out {tmp_path} holds no finished deepsmote generate job; run generate first"
    )


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (make test installs the Debian package where it can)"
)
def test_the_page_loads_in_headless_chromium_without_console_errors(reported, tmp_path):
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (reported / "report.html").as_uri()
    dom = subprocess.run(
        [*base, "--enable-logging=stderr", "--v=0", "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    assert re.findall(r'class="class-row" data-class="([^"]+)"', dom.stdout) == [str(c) for c in range(10)]
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2000", url], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
