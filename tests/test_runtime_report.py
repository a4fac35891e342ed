"""`deepsmote report OUT`: one self-contained page, checked in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deepsmote.data import fmnist_mini
from helpers import run_main

GOLDEN_BUNDLE = Path(__file__).resolve().parent / "data" / "golden" / "bundle"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    from deepsmote.runtime.cli import main

    for args in (
        ["generate", GOLDEN_BUNDLE, fmnist_mini(), "--out", out, "--format", "webdataset", "--include-originals", "-q"],
        ["report", out],
    ):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            assert not exit_.code
    return out


def test_the_page_is_self_contained_and_shows_every_class(reported):
    page = (reported / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert re.findall(r'data-class="([^"]+)"', page) == [str(c) for c in range(10)]
    assert page.count("data:image/png;base64,") == 10 * 8 + 9 * 8 - 4 - 2  # real: 8 per class but 6 and 4
    assert '<svg id="loss"' in page  # the golden bundle carries its losses.jsonl


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
    assert re.findall(r'data-class="([^"]+)"', dom.stdout) == [str(c) for c in range(10)]
    shot = tmp_path / "report.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1100,1400", url], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
