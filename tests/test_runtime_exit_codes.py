"""Exit statuses: 2 for a usage error (click's own checks and every option value deepsmote checks
itself), 1 for a failure while running, as the README says; each one line, nothing written."""

from __future__ import annotations

import pytest
from golden import GOLDEN_BUNDLE
from helpers import run_main

USAGE_ERRORS = {
    "strategy name": (["--strategy", "bogus"], "--strategy"),
    "strategy class": (["--strategy", '{"nope": 5}'], "nope"),
    "filter": (["--filter", "2"], "--filter must lie in (0, 1]"),
    "resize": (["--resize", "abc"], "--resize must be HxW"),
    "crop without resize": (["--crop", "center"], "--crop center needs a target size"),
    "share": (["--synthetic-share", "1.5"], "--synthetic-share must lie in [0, 1]"),
    "max draw ratio (click)": (["--max-draw-ratio", "0"], "--max-draw-ratio"),
    "format (click)": (["--format", "tiff"], "--format"),
    "sampler (click)": (["--sampler", "bogus"], "--sampler"),
}


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


@pytest.mark.parametrize("name", sorted(USAGE_ERRORS))
def test_every_checked_option_value_of_generate_exits_2(name, fmnist_mini, tmp_path, capsys):
    extra, fragment = USAGE_ERRORS[name]
    out = tmp_path / "out"
    code, _, err = run_main(["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", out, *extra], capsys)
    assert code == 2 and fragment in _one_line(err), err
    assert not out.exists()


def test_the_options_that_need_images_exit_2_with_codes(fmnist_mini, tmp_path, capsys):
    codes = tmp_path / "x.codes"
    assert run_main(["encode", GOLDEN_BUNDLE, fmnist_mini, "--out", codes, "-q"], capsys)[0] == 0
    code, _, err = run_main(["generate", GOLDEN_BUNDLE, codes, "--out", tmp_path / "o", "--include-originals"], capsys)
    assert code == 2 and "--include-originals needs the images" in _one_line(err)


def test_train_and_grid_option_values_exit_2(fmnist_mini, tmp_path, capsys):
    code, _, err = run_main(["train", fmnist_mini, "--out", tmp_path / "b", "--resize", "0x0"], capsys)
    assert code == 2 and "--resize must be HxW" in _one_line(err)
    args = ["grid", GOLDEN_BUNDLE, fmnist_mini, "--out", tmp_path / "g.png", "--interpolate", "a,b"]
    code, _, err = run_main(args, capsys)
    assert code == 2 and "--interpolate must be two indices" in _one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_running_exits_1(fmnist_mini, tmp_path, capsys):
    code, _, err = run_main(["generate", GOLDEN_BUNDLE, tmp_path / "missing.npz", "--out", tmp_path / "o"], capsys)
    assert code == 1 and "missing.npz" in _one_line(err)
    code, _, err = run_main(["generate", tmp_path / "no.bundle", fmnist_mini, "--out", tmp_path / "o"], capsys)
    assert code == 1 and "no.bundle" in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
