"""`train` -> `generate` -> `grid` at sizes of the resize-conv family, torch-free on the generation side.

Tiny models (width 4, one epoch) on tiny synthetic sets: these prove that every stage accepts the
size and that the bundle contract holds, not that the samples are good (benchmarks/generator_quality.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from deepsmote.runtime import DeepSMOTE
from deepsmote.runtime.bundle import (
    CPU_DECODER_FILE,
    DECODER_FILE,
    DECODER_INPUT,
    create_session,
    load_bundle,
    open_models,
)
from deepsmote.runtime.cli import main
from deepsmote.runtime.commands.grid import tile
from deepsmote.runtime.readers import read_dataset
from deepsmote.runtime.resize import parse_resize
from helpers import run_main, run_python, tree_digest
from PIL import Image

TINY = ["--epochs", "1", "--width", "4", "--latent-dim", "8", "--batch-size", "8", "--device", "cpu"]
COUNTS = (10, 4)


def shapes_images(height: int, width: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes: bright discs and bright bars on black, at random places; uint8 (N, H, W[, 3])."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    images, labels = [], []
    for label, count in enumerate(COUNTS):
        for _ in range(count):
            cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
            if label == 0:
                mask = (rows - cy) ** 2 + (cols - cx) ** 2 < (0.2 * min(height, width)) ** 2
            else:
                mask = np.abs(cols - cx) < 0.1 * width
            image = (mask * rng.uniform(150, 255)).astype(np.uint8)
            images.append(np.repeat(image[..., None], 3, axis=2) * [1, 0.8, 0.5] if channels == 3 else image)
            labels.append(label)
    return np.asarray(images, dtype=np.uint8), np.asarray(labels)


def write_npz(path: Path, height: int, width: int, channels: int) -> Path:
    images, labels = shapes_images(height, width, channels)
    np.savez(path, images=images, labels=labels)
    return path


def write_mixed_folder(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """An ImageFolder whose grey PNGs come in several sizes (H, W)."""
    for i, (height, width) in enumerate(sizes * 7):
        images, labels = shapes_images(height, width, 1, seed=i)
        label = i % 2
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[np.flatnonzero(labels == label)[0]]).save(folder / f"{i}.png")
    return root


def generate_and_grid_without_torch(bundle: Path, data: Path, out: Path, grid: Path, extra: list[str]) -> None:
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from deepsmote.runtime.cli import main
codes, from_codes = {str(out) + ".codes"!r}, {str(out) + "-from-codes"!r}
# --synthetic-only: what CODES, which holds no images, gives, so that the two outputs compare.
only = ["--quiet", "--synthetic-only"]
for args in (["generate", {str(bundle)!r}, {str(data)!r}, "--out", {str(out)!r}, *only, *{extra!r}],
             ["grid", {str(bundle)!r}, {str(data)!r}, "--out", {str(grid)!r}, "--per-row", "4", *{extra!r}],
             ["encode", {str(bundle)!r}, {str(data)!r}, "--out", codes, "--quiet", *{extra!r}],
             ["generate", {str(bundle)!r}, codes, "--out", from_codes, "--quiet"]):
    try:
        main(args)
    except SystemExit as exit:
        assert not exit.code, (args, exit.code)
loaded = [m for m in sys.modules if m.startswith("torch") and sys.modules[m] is not None]
assert not loaded, loaded
print("ok")
"""
    run_python(script)


CASES = {
    "16x16x1": ((16, 16, 1), "npz", []),
    "32x32x1": ((32, 32, 1), "npz", []),
    "48x40x1": ((48, 40, 1), "mixed", ["--resize", "48x40"]),
    "64x64x3": ((64, 64, 3), "npz", []),
    "128x128x3": ((128, 128, 3), "resized", ["--resize", "128x128", "--crop", "center"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_generate_grid_at_family_sizes(case, tmp_path, capsys):
    (height, width, channels), source, extra = CASES[case]
    if source == "npz":
        data = write_npz(tmp_path / "data.npz", height, width, channels)
    elif source == "mixed":
        data = write_mixed_folder(tmp_path / "data", [(60, 50), (36, 30), (48, 40)])
    else:  # other-sized colour images, centre-cropped and resized on reading
        data = write_npz(tmp_path / "data.npz", 100, 90, channels)
    bundle = tmp_path / "bundle"
    code, out, err = run_main(["train", data, "--out", bundle, *TINY, *extra], capsys)
    assert code == 0, err
    manifest = json.loads((bundle / "deepsmote.json").read_text())
    assert manifest["image_shape"] == [channels, height, width]
    config = manifest["training"]["config"]
    assert (config["arch"], config["loss"], config["penalty"]) == ("resize-conv", "l1+ssim", "reference")
    # The phase arrangement that the CPU runs, beside the plain decoder that GPUs run, in fp32 and fp16.
    assert sorted(manifest["files"]) == ["decoder.onnx", "decoder_cpu.onnx", "decoder_fp16.onnx", "encoder.onnx"]
    assert manifest["export"]["max_abs_diff"] <= 1e-4

    code, out, err = run_main(["inspect", bundle], capsys)
    assert code == 0 and f"{height}x{width} (HxW), {channels} channel" in out
    assert f"--resize {height}x{width}" in out

    generated, grid = tmp_path / "generated", tmp_path / "grid.png"
    generate_and_grid_without_torch(bundle, data, generated, grid, extra)
    # The latent cache gives the same bytes at every size (resized on encoding where DATA is resized).
    assert tree_digest(tmp_path / "generated-from-codes") == tree_digest(generated)
    made = read_dataset(generated)
    assert made.image_shape == (channels, height, width)
    # The minority class grows up to the majority's count, with the API's images from the same DATA
    # (resized as the CLI resizes it), class by class in plan order.
    totals = [c["total"] for c in json.loads((generated / "summary.json").read_text())["counts"].values()]
    assert len(totals) == 2 and totals[0] == totals[1] and len(made.labels) > 0
    source = read_dataset(data, resize=parse_resize(*extra[1::2]) if extra else None)
    X_res, y_res = DeepSMOTE(bundle, random_state=0).fit_resample(source.images, source.labels)
    synthetic, synthetic_labels = X_res[len(source.images) :], y_res[len(source.images) :]
    assert len(made.labels) == len(synthetic) == sum(totals) - len(source.images)
    for c, name in enumerate(source.classes):
        got = made.images[made.labels == made.classes.index(name)] if name in made.classes else made.images[:0]
        assert got.tobytes() == synthetic[synthetic_labels == c].tobytes(), f"class {name}"
    # The grid: per class its first 4 real images, then two rows of 4 synthetic ones, those the
    # sampler makes when each class grows by 8, laid out by `tile`.
    grown = DeepSMOTE(
        bundle, sampling_strategy={c: int(n) + 8 for c, n in enumerate(source.class_counts())}, random_state=0
    )
    X_grid, y_grid = grown.fit_resample(source.images, source.labels)
    rows, captions = [], []
    for c, name in enumerate(source.classes):
        new = X_grid[len(source.images) :][y_grid[len(source.images) :] == c]
        rows += [source.images[source.labels == c][:4], new[:4], new[4:8]]
        captions += [f"{name} real", f"{name} synth", f"{name} synth"]
    np.testing.assert_array_equal(np.asarray(Image.open(grid)), tile(rows, captions))


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def bundle16(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("b16")
    data = write_npz(root / "data.npz", 16, 16, 1)
    try:
        main(["train", str(data), "--out", str(root / "bundle"), *TINY])
    except SystemExit as exit_:
        assert not exit_.code
    return root / "bundle"


def test_a_size_outside_the_family_is_refused(tmp_path, capsys):
    data = write_npz(tmp_path / "small.npz", 12, 12, 1)
    code, _, err = run_main(["train", data, "--out", tmp_path / "b", *TINY], capsys)
    one_line_error(code, err, "image size 12x12x1 is not supported", "16..256", "--resize HxW")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.npz"]


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--resize", "0x16"], ("--resize must be HxW with sides 1..1024", "'0x16'")),
        (["--resize", "16"], ("--resize must be HxW",)),
        (["--resize", "16x4000"], ("--resize must be HxW with sides 1..1024",)),
        (["--crop", "center"], ("--crop center needs a target size: pass --resize HxW",)),
    ],
)
@pytest.mark.parametrize("command", ["train", "generate", "grid"])
def test_a_resize_that_cannot_apply_is_refused(command, flags, needles, bundle16, tmp_path, capsys):
    data = write_npz(tmp_path / "data.npz", 16, 16, 1)
    target = tmp_path / ("out.png" if command == "grid" else "out")
    args = [command, data, "--out", target, *TINY] if command == "train" else [command, bundle16, data, "--out", target]
    code, _, err = run_main([*args, *flags], capsys)
    one_line_error(code, err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]


@pytest.mark.parametrize("command", ["generate", "grid"])
def test_a_size_error_states_the_bundles_size_and_the_fix(command, bundle16, tmp_path, capsys):
    data = write_npz(tmp_path / "data.npz", 40, 30, 1)
    target = tmp_path / ("out.png" if command == "grid" else "out")
    code, _, err = run_main([command, bundle16, data, "--out", target], capsys)
    one_line_error(
        code, err, "DATA images are 40x30 (HxW), 1 channel", "expects 16x16 (HxW), 1 channel", "--resize 16x16"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]
    # The fix it names works.
    code, _, err = run_main([command, bundle16, data, "--out", target, "--resize", "16x16"], capsys)
    assert code == 0, err


def test_a_channel_mismatch_is_not_offered_a_resize(bundle16, tmp_path, capsys):
    data = write_npz(tmp_path / "data.npz", 16, 16, 3)
    code, _, err = run_main(["generate", bundle16, data, "--out", tmp_path / "out"], capsys)
    one_line_error(
        code, err, "3 channels", "expects 16x16 (HxW), 1 channel", "use a bundle trained on 3-channel images"
    )
    assert "--resize" not in err


def test_mixed_sizes_without_resize_name_the_flag(tmp_path, capsys):
    data = write_mixed_folder(tmp_path / "data", [(20, 20), (24, 20)])
    code, _, err = run_main(["train", data, "--out", tmp_path / "b", *TINY], capsys)
    one_line_error(code, err, "differs from", "pass --resize HxW")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_cpu_runs_the_phase_graph_of_a_resize_conv_bundle(bundle16):
    codes = np.random.default_rng(0).standard_normal((9, 8), dtype=np.float32)

    def decoded_by(graph: str) -> np.ndarray:
        session, _ = create_session((bundle16 / graph).read_bytes(), "cpu", 1)
        return session.run(None, {DECODER_INPUT: codes})[0]

    by_phase_graph, by_plain_graph = decoded_by(CPU_DECODER_FILE), decoded_by(DECODER_FILE)
    assert by_phase_graph.tobytes() != by_plain_graph.tobytes()  # else this test could not tell them apart
    np.testing.assert_allclose(by_phase_graph, by_plain_graph, rtol=0, atol=1e-5)
    assert open_models(load_bundle(bundle16), "cpu").decode(codes).tobytes() == by_phase_graph.tobytes()
