"""The README's runnable Python examples, run as a user would paste them, and checked to do what
the README says they do.

A block is runnable when it starts with an import from ``deepsmote.data`` (the embedded dataset);
``fmnist.bundle`` in it names the committed golden bundle here. Each block has a check below, found
by a name the block uses, which reads the block's own variables and outputs after it ran.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import generate_dataset, open_dataset
from helpers import tree_digest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_BUNDLE = ROOT / "tests" / "data" / "golden" / "bundle"
BLOCKS = [
    b
    for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if b.startswith("from deepsmote.data import")
]


def check_grid_search(names: dict[str, Any], printed: str, tmp_path: Path) -> None:
    """GridSearchCV in an imbalanced-learn Pipeline tries each k, through the sampler, and prints the best."""
    search = names["search"]
    scores = search.cv_results_["mean_test_score"]
    assert [p["oversample__k_neighbors"] for p in search.cv_results_["params"]] == [3, 5]
    assert np.isfinite(scores).all()
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(scores))]
    assert printed.strip() == str(search.best_params_)
    # The refitted pipeline's sampler was fitted with the chosen k: each class uses that many
    # neighbours, or all its other codes when it has no more.
    sampler = search.best_estimator_.named_steps["oversample"]
    k = search.best_params_["oversample__k_neighbors"]
    fitted = [latents for latents in sampler.synthesizer_.latents if latents is not None]
    assert len(fitted) == 9
    assert all(latents.n_neighbors == min(k, len(latents.codes) - 1) for latents in fitted)


def check_codes(names: dict[str, Any], printed: str, tmp_path: Path) -> None:
    """The job from CODES writes the bytes of the job from DATA; the sampler yields that job's shards, one at a time."""
    from_data = tmp_path / "from-data"
    # From CODES a job writes the new samples alone (CODES holds no images): so does this one.
    generate_dataset(
        GOLDEN_BUNDLE, open_dataset(fmnist_mini()), from_data, fmt="npz", progress=False, include_originals=False
    )
    assert tree_digest(tmp_path / "synthetic") == tree_digest(from_data)
    files = sorted((tmp_path / "synthetic").glob("*.npz"))
    shards = list(names["sampler"].iter_synthetic())
    # One npz per shard, in the same order (class, then shard): each yield is one file's samples.
    assert len(shards) == len(files) > 1
    for (X_new, y_new), file in zip(shards, files, strict=True):
        with np.load(file) as written:
            assert X_new.tobytes() == written["images"].tobytes(), file.name
            assert y_new.tolist() == written["labels"].tolist(), file.name


def check_stream(names: dict[str, Any], printed: str, tmp_path: Path) -> None:
    """The stream gives 4,000 images, 400 per class, as float32 (1, 28, 28) in [0, 1]; the loss is finite."""
    seen: Counter[int] = Counter()
    for image, label in names["stream"]:
        assert image.dtype == names["torch"].float32 and tuple(image.shape) == (1, 28, 28)
        assert 0 <= float(image.min()) and float(image.max()) <= 1
        seen[int(label)] += 1
    assert seen == dict.fromkeys(range(10), 400)
    match = re.fullmatch(r"last batch loss (\d+\.\d{3})", printed.strip())
    assert match and math.isfinite(float(match.group(1)))


def check_remix_stream(names: dict[str, Any], printed: str, tmp_path: Path) -> None:
    """Two epochs of the balanced set (4,000 images) with soft targets: K-vectors summing to 1, some
    of them mixed, and each epoch its own synthetic images."""
    stream, torch = names["stream"], names["torch"]
    epochs = []
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        pairs = [(image.numpy().tobytes(), target) for image, target in stream]
        assert len(pairs) == 4000
        targets = torch.stack([t for _, t in pairs])
        assert targets.shape == (4000, 10) and torch.allclose(targets.sum(dim=1), torch.ones(4000))
        assert (targets.max(dim=1).values < 1).any()
        epochs.append({image for image, t in pairs if t.max() < 1})
    assert not epochs[0] & epochs[1]
    match = re.fullmatch(r"epoch 1: last batch loss (\d+\.\d{3})", printed.strip())
    assert match and math.isfinite(float(match.group(1)))


CHECKS: dict[str, Callable[[dict[str, Any], str, Path], None]] = {
    "GridSearchCV": check_grid_search,
    "encode_dataset": check_codes,
    "for images, labels in loader": check_stream,
    "set_epoch": check_remix_stream,
}


def _check_of(block: str) -> Callable[[dict[str, Any], str, Path], None]:
    found = [check for name, check in CHECKS.items() if name in block]
    assert len(found) == 1, "each README example needs exactly one check in tests/test_readme_examples.py"
    return found[0]


def test_the_readme_has_runnable_examples_and_each_has_a_check():
    assert len(BLOCKS) >= 1
    assert sorted(_check_of(block).__name__ for block in BLOCKS) == sorted(c.__name__ for c in CHECKS.values())


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: _check_of(b).__name__.removeprefix("check_"))
def test_readme_example_does_what_the_readme_says(block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = block.replace('"fmnist.bundle"', repr(str(GOLDEN_BUNDLE)))
    names: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), names)
    printed = capsys.readouterr().out
    _check_of(block)(names, printed, tmp_path)
