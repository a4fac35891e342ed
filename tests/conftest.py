"""Fixtures shared by the test suite: the embedded FMNIST subset and a tiny trained bundle.

Other test modules depend on the names ``fmnist_mini``, ``tiny_bundle`` and ``three_classes``; keep
them stable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_WIDTH, TINY_LATENT = 8, 16


@pytest.fixture(scope="session")
def fmnist_mini() -> Path:
    """The embedded IDX training images (900 FMNIST images, 400..4 per class); labels beside it."""
    return ROOT / "data" / "fmnist-mini" / "train-images-idx3-ubyte.gz"


@pytest.fixture(scope="session")
def tiny_bundle(fmnist_mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle trained for 1 epoch (width 8, latent 16, seed 0) on ``fmnist_mini`` and exported.

    Its run directory (``best.pt``, ``last.pt``, logs) lies beside it as ``<bundle>.run``, as
    `deepsmote train` would leave it.
    """
    try:
        import torch
    except ImportError:
        # Most runtime tests use this bundle: a skip here would hide them all, so it is an error.
        pytest.fail("the test suite trains its bundle with torch: install the train extra (make test does)")
    from deepsmote.runtime.readers import read_dataset
    from deepsmote.training.export import export_bundle
    from deepsmote.training.trainer import TrainConfig, train

    torch.set_num_threads(1)
    bundle = tmp_path_factory.mktemp("tiny") / "bundle"
    # The paper's model (with its decoder_cpu.onnx), which the runtime tests were written against.
    config = TrainConfig(
        epochs=1, width=TINY_WIDTH, latent_dim=TINY_LATENT, arch="paper", loss="mse", seed=0, device="cpu"
    )
    files = train(read_dataset(fmnist_mini), config, bundle.with_name("bundle.run"))
    export_bundle(files.best, bundle)
    return bundle


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # Tiny models gain nothing from a second thread, and on a shared 2-core machine OpenMP
    # threads spinning against other processes made training steps ten times slower. torch is
    # never imported here: runtime tests check that they run without it.
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="session")
def three_classes(fmnist_mini: Path) -> tuple:
    """A tiny imbalanced set for the classifier tests: the embedded subset's first 24, 8 and 4 images
    of classes 0, 1 and 2 (uint8 (36, 28, 28) and their labels)."""
    import numpy as np
    from deepsmote.runtime.readers import read_dataset

    data = read_dataset(fmnist_mini)
    keep = np.concatenate([np.flatnonzero(data.labels == c)[:n] for c, n in ((0, 24), (1, 8), (2, 4))])
    return data.images[keep], data.labels[keep]
