"""The latent cache (`deepsmote encode`, `runtime/codes.py`): the same bytes from CODES as from DATA,
and every wrong CODES refused in one line with nothing left behind."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import DeepSMOTE, generate_dataset, read_dataset
from deepsmote.runtime.codes import read_latent_cache
from deepsmote.runtime.stream import open_dataset
from golden import GOLDEN_BUNDLE
from helpers import run_main, tree_digest

STRATEGY = '{"9": 60, "5": 90}'


def one_line_error(code: int, err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def codes(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("codes") / "fmnist.codes"
    code, out, err = _main(["encode", GOLDEN_BUNDLE, fmnist_mini(), "--out", target])
    assert code == 0, err
    assert out.startswith(f"wrote {target}: 900 codes of ")
    return target


def _main(args: list[object]) -> tuple[int, str, str]:
    # run_main wants capsys, which a module-scoped fixture cannot have.
    import contextlib
    import io

    from deepsmote.runtime.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_a_cache_holds_the_codes_labels_classes_index_and_fingerprint(codes):
    cache = read_latent_cache(codes)
    data = read_dataset(fmnist_mini())
    assert isinstance(cache.codes, np.memmap) and cache.codes.dtype == np.float32
    assert cache.codes.shape == (900, json.loads((GOLDEN_BUNDLE / "deepsmote.json").read_text())["latent_dim"])
    assert np.array_equal(cache.labels, data.labels) and np.array_equal(cache.index, np.arange(900))
    assert cache.classes == data.classes and cache.image_shape == (1, 28, 28)
    assert cache.data == data.fingerprint() and cache.source == str(fmnist_mini())
    # An uncompressed archive: the codes are read in place.
    with zipfile.ZipFile(codes) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize("fmt", ["npz", "webdataset"])
def test_codes_give_the_same_bytes_as_data(fmt, codes, tmp_path, capsys):
    outs = {}
    for name, source in (("data", fmnist_mini()), ("codes", codes)):
        outs[name] = tmp_path / name
        args = ["generate", GOLDEN_BUNDLE, source, "--out", outs[name], "--strategy", STRATEGY, "--format", fmt]
        # CODES holds no images: its default is the new samples alone, with a warning; DATA gives them when asked
        only = ["--synthetic-only"] if name == "data" else []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code, _, err = run_main([*args, "--seed", "3", "--shard-size", "25", "--quiet", *only], capsys)
        assert code == 0, err
        said = any("holds no images, so `out` gets the new samples only" in str(w.message) for w in caught)
        assert said == (name == "codes")
    assert tree_digest(outs["codes"]) == tree_digest(outs["data"])
    # manifest.csv and the shards' provenance name DATA indices, and the job records the same settings,
    # so a job started from DATA resumes from CODES.
    assert (outs["codes"] / "manifest.csv").read_text() == (outs["data"] / "manifest.csv").read_text()
    assert (outs["codes"] / ".deepsmote-job.json").read_bytes() == (outs["data"] / ".deepsmote-job.json").read_bytes()


def test_the_library_takes_codes_too(codes, tmp_path):
    cache = read_latent_cache(codes)
    strategy = {"9": 50}
    generate_dataset(GOLDEN_BUNDLE, cache, tmp_path / "a", fmt="npz", sampling_strategy=strategy, progress=False)
    generate_dataset(
        GOLDEN_BUNDLE,
        open_dataset(fmnist_mini()),
        tmp_path / "b",
        fmt="npz",
        sampling_strategy=strategy,
        include_originals=False,
    )
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    from_codes = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy={9: 50}, random_state=1).fit(cache)
    data = read_dataset(fmnist_mini())
    from_images = DeepSMOTE(GOLDEN_BUNDLE, sampling_strategy={9: 50}, random_state=1).fit(data.images, data.labels)
    for (x1, y1), (x2, y2) in zip(from_codes.iter_synthetic(), from_images.iter_synthetic(), strict=True):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    with pytest.raises(ValueError, match="CODES does not hold"):
        DeepSMOTE(GOLDEN_BUNDLE, random_state=1).fit_resample(cache)


def test_a_cache_from_another_bundle_is_refused(codes, tiny_bundle, tmp_path, capsys):
    fingerprint = read_latent_cache(codes).bundle[:12]
    code, _, err = run_main(["generate", tiny_bundle, codes, "--out", tmp_path / "out"], capsys)
    one_line_error(code, err, f"CODES {codes}", fingerprint, str(tiny_bundle), f"re-run deepsmote encode {tiny_bundle}")
    assert list(tmp_path.iterdir()) == []
    code, _, err = run_main(["generate", tiny_bundle, codes, "--out", tmp_path / "out", "--dry-run"], capsys)
    one_line_error(code, err, "re-run deepsmote encode")


def _truncated(codes: Path, target: Path) -> Path:
    target.write_bytes(codes.read_bytes()[: codes.stat().st_size // 2])
    return target


def _flipped(codes: Path, target: Path) -> Path:
    raw = bytearray(codes.read_bytes())
    with zipfile.ZipFile(codes) as archive:
        info = archive.getinfo("codes.npy")
    raw[info.header_offset + 200] ^= 0x01  # inside the codes
    target.write_bytes(bytes(raw))
    return target


def _wrong_header(codes: Path, target: Path) -> Path:
    with zipfile.ZipFile(codes) as archive:
        arrays = {name: np.load(archive.open(f"{name}.npy")) for name in ("codes", "labels", "index")}
    header = np.frombuffer(json.dumps({"format": "something else"}).encode(), dtype=np.uint8)
    with open(target, "wb") as f:
        np.savez(f, header=header, **arrays)
    return target


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (_truncated, "truncated or corrupt"),
        (_flipped, "do not match the digest"),
        (_wrong_header, "not a latent cache"),
    ],
)
def test_a_corrupt_or_truncated_cache_is_refused(damage, needle, codes, tmp_path, capsys):
    broken = damage(codes, tmp_path / "broken.codes")
    out = tmp_path / "out"
    code, _, err = run_main(["generate", GOLDEN_BUNDLE, broken, "--out", out], capsys)
    one_line_error(code, err, f"CODES {broken}", needle, "re-run deepsmote encode")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.codes"]
    with pytest.raises(Exception, match="truncated or corrupt"):
        read_latent_cache(broken)


def _with_header(codes: Path, target: Path, edit) -> Path:
    """A copy of ``codes`` whose header (its sha256 kept) was edited by ``edit``."""
    with zipfile.ZipFile(codes) as archive:
        arrays = {name: np.load(archive.open(f"{name}.npy")) for name in ("codes", "labels", "index")}
        header = json.loads(np.load(archive.open("header.npy")).tobytes())
    edit(header)
    with open(target, "wb") as f:
        np.savez(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    return target


HEADER_EDITS = {
    "duplicate classes": (lambda h: h["classes"].__setitem__(1, h["classes"][0]), "names a class twice"),
    "classes swapped": (lambda h: h["classes"].reverse(), "do not match the digest"),
    "source renamed": (lambda h: h.__setitem__("source", "elsewhere"), "do not match the digest"),
    "latent_dim a string": (lambda h: h.__setitem__("latent_dim", "16"), "'latent_dim' and 'count' must be"),
    "count a float": (lambda h: h.__setitem__("count", 900.0), "'latent_dim' and 'count' must be"),
    "image_shape short": (lambda h: h.__setitem__("image_shape", [1, 28]), "'image_shape' must be [C, H, W]"),
    "classes a string": (lambda h: h.__setitem__("classes", "0123456789"), "'classes' must be a non-empty list"),
    "bundle a number": (lambda h: h.__setitem__("bundle", 7), "'bundle' is not a sha256"),
    "source a list": (lambda h: h.__setitem__("source", [1]), "'source' must be a string"),
}


@pytest.mark.parametrize("edit", sorted(HEADER_EDITS))
def test_every_header_field_is_checked_and_inside_the_digest(edit, codes, tmp_path, capsys):
    change, needle = HEADER_EDITS[edit]
    broken = _with_header(codes, tmp_path / "edited.codes", change)
    code, _, err = run_main(["generate", GOLDEN_BUNDLE, broken, "--out", tmp_path / "out", "--format", "npz"], capsys)
    one_line_error(code, err, f"CODES {broken}", needle, "re-run deepsmote encode")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.codes"]


@pytest.mark.parametrize(
    ("command", "extra", "needles"),
    [
        ("grid", [], ("is a latent cache from deepsmote encode", "give the DATA it was encoded from")),
        ("encode", [], ("is a latent cache from deepsmote encode", "give the DATA it was encoded from")),
        ("generate", ["--include-originals"], ("--include-originals needs the images", "give DATA instead")),
        ("generate", ["--synthetic-share", "0.5"], ("--synthetic-share needs the images", "give DATA instead")),
        ("generate", ["--resize", "28x28"], ("--resize needs the images", "give DATA instead")),
    ],
)
def test_codes_where_images_are_needed_are_refused(command, extra, needles, codes, tmp_path, capsys):
    out = tmp_path / ("grid.png" if command == "grid" else "out")
    code, _, err = run_main([command, GOLDEN_BUNDLE, codes, "--out", out, *extra], capsys)
    one_line_error(code, err, str(codes), *needles)
    assert list(tmp_path.iterdir()) == []


def test_training_on_codes_is_refused(codes, tmp_path, capsys):
    code, _, err = run_main(["train", codes, "--out", tmp_path / "bundle", "--epochs", "1"], capsys)
    one_line_error(code, err, "is a latent cache from deepsmote encode", "give the DATA it was encoded from")
    assert list(tmp_path.iterdir()) == []


def test_the_library_refuses_originals_from_codes(codes, tmp_path):
    with pytest.raises(Exception, match="`include_originals` needs the original images"):
        generate_dataset(GOLDEN_BUNDLE, read_latent_cache(codes), tmp_path / "out", include_originals=True)
    assert list(tmp_path.iterdir()) == []


def test_encode_refuses_to_overwrite_and_leaves_nothing_on_failure(codes, tmp_path, capsys):
    target = tmp_path / "c.codes"
    target.write_bytes(b"mine")
    code, _, err = run_main(["encode", GOLDEN_BUNDLE, fmnist_mini(), "--out", target], capsys)
    one_line_error(code, err, "exists; pass --overwrite")
    assert target.read_bytes() == b"mine"
    # DATA of another size: refused, the existing file kept, no temporary file left.
    data = tmp_path / "small.npz"
    np.savez(data, images=np.zeros((4, 16, 16), np.uint8), labels=np.arange(4) % 2)
    code, _, err = run_main(["encode", GOLDEN_BUNDLE, data, "--out", target, "--overwrite"], capsys)
    one_line_error(code, err, "DATA images are 16x16 (HxW), 1 channel", "--resize 28x28")
    assert target.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["c.codes", "small.npz"]
