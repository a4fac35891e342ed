"""The whole method against an independent reference built from plain pieces.

The reference encodes with its own onnxruntime sessions, finds neighbours with `tests/naive.py`,
draws (base, neighbour slot, gap) exactly as the design documents them
(``SeedSequence([seed, class_index, shard_index])``: base, then slot, then gap), interpolates with
`naive.interpolate`, decodes and rounds. The CLI and the API must give its bytes, at 1, 2 and 3
threads, on a job with a class of more than ``SMALL_N`` codes (numpy's GEMM-form k-NN; in the API
runs also sent to the numba k-NN) and a shard of more than ``SMALL_SIZE`` interpolated values
(numba interpolation), which keeps small classes on the numpy paths. A sampler that drew no gap,
the wrong neighbour or the wrong base fails here.
"""

from __future__ import annotations

import os

import naive
import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.kernels import NeighborRows, knn, knn_cross_numba, knn_numba
from deepsmote.kernels.interpolate import SMALL_SIZE
from deepsmote.kernels.knn import MEDIUM_N, SMALL_N
from deepsmote.runtime import DeepSMOTE, read_dataset
from golden import GOLDEN_BUNDLE
from helpers import cpu_session, run_cli

K = 5
SEED = 11
# Class 0 has 1,200 images (the embedded 400 and their mirror images: GEMM-form k-NN) and grows by one
# shard of 20,000 (20,000 x 64 values: numba interpolation); classes 5 (35 images) and 9 (4 images,
# so 3 neighbours) stay on numpy.
NEW = {0: 20_000, 5: 65, 9: 26}
SHARD_SIZE = 20_000
LATENT = 64


def reference_synthetic(
    images: np.ndarray,
    labels: np.ndarray,
    new_counts: dict[int, int] = NEW,
    shard_size: int = SHARD_SIZE,
    k: int = K,
) -> dict[int, np.ndarray]:
    """Synthetic uint8 images (m, 28, 28) per class, in shard order, by the documented method."""
    encoder = cpu_session(GOLDEN_BUNDLE / "encoder.onnx")
    # The CPU provider runs the bundle's CPU arrangement of the decoder in fp32.
    decoder = cpu_session(GOLDEN_BUNDLE / "decoder_cpu.onnx")
    result = {}
    for c, new in new_counts.items():
        x = images[labels == c].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        x = x[:, None]
        # The runtime encodes in batches of 256 whatever the caller asks, so the codes are fixed.
        codes = np.concatenate([encoder.run(None, {"image": x[i : i + 256]})[0] for i in range(0, len(x), 256)])
        n = len(codes)
        distances = naive.sq_distances_diff(codes) if n <= SMALL_N else naive.sq_distances_gemm32(codes)
        neighbors, _ = naive.kneighbors(distances, k)
        shards = []
        for shard_index, start in enumerate(range(0, new, shard_size)):
            m = min(shard_size, new - start)
            rng = np.random.default_rng(np.random.SeedSequence([SEED, c, shard_index]))
            base = rng.integers(0, n, size=m, dtype=np.int64)
            slot = rng.integers(0, neighbors.shape[1], size=m, dtype=np.int64)
            gap = rng.random(m, dtype=np.float32)
            z = naive.interpolate(codes, neighbors, base, slot, gap)
            decoded = decoder.run(None, {"latent": z})[0]
            shards.append(np.rint((np.clip(decoded, -1, 1) + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8))
        result[c] = np.concatenate(shards)[:, 0]
    return result


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """The embedded subset with class 0 tripled by its left-right and up-down mirror images, as an .npz."""
    dataset = read_dataset(fmnist_mini())
    class_0 = dataset.images[dataset.labels == 0]
    images = np.concatenate([dataset.images, class_0[:, :, ::-1], class_0[:, ::-1, :]])
    labels = np.concatenate([dataset.labels, np.zeros(2 * len(class_0), dtype=dataset.labels.dtype)])
    path = tmp_path_factory.mktemp("data") / "data.npz"
    np.savez(path, images=images, labels=labels)
    return path


@pytest.fixture(scope="module")
def data(data_file):
    dataset = read_dataset(data_file)
    return dataset.images, dataset.labels


@pytest.fixture(scope="module")
def reference(data):
    return reference_synthetic(*data)


def test_the_job_takes_every_path_of_the_kernels(data):
    _, labels = data
    assert SMALL_N < np.sum(labels == 0) <= MEDIUM_N
    assert SHARD_SIZE * LATENT > SMALL_SIZE
    assert all(np.sum(labels == c) <= SMALL_N for c in (5, 9))


def test_reference_draws_use_every_documented_choice(reference):
    # The reference itself must not be degenerate: synthetic images are neither copies of
    # reconstructions nor all alike.
    assert len(np.unique(reference[0].reshape(len(reference[0]), -1), axis=0)) > 0.99 * NEW[0]
    assert {c: len(v) for c, v in reference.items()} == NEW


def api_synthetic(
    data: tuple[np.ndarray, np.ndarray], new_counts: dict[int, int], shard_size: int, threads: int, k: int = K
) -> tuple[DeepSMOTE, dict[int, np.ndarray]]:
    """The sampler after `fit_resample` grows each class by ``new_counts``, and its synthetic images per class."""
    images, labels = data
    targets = {c: int(np.sum(labels == c)) + n for c, n in new_counts.items()}
    sampler = DeepSMOTE(
        GOLDEN_BUNDLE,
        sampling_strategy=targets,
        k_neighbors=k,
        random_state=SEED,
        shard_size=shard_size,
        n_threads=threads,
    )
    X_res, y_res = sampler.fit_resample(images, labels)
    synthetic, synthetic_labels = X_res[len(images) :], y_res[len(images) :]
    return sampler, {c: synthetic[synthetic_labels == c] for c in new_counts}


@pytest.mark.parametrize("knn_path", ["numpy-gemm", "numba"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_api_matches_the_reference(data, reference, threads, knn_path, monkeypatch):
    taken = []
    # Sent above MEDIUM_N, the class takes numba's rows kernel (args: padded codes, n, ...).
    module, name = (knn_cross_numba, "kneighbors_of_padded") if knn_path == "numba" else (knn, "_kneighbors_numpy_gemm")
    kernel = getattr(module, name)
    size = (lambda args: args[1]) if knn_path == "numba" else (lambda args: len(args[0]))
    monkeypatch.setattr(module, name, lambda *args: taken.append(size(args)) or kernel(*args))
    if knn_path == "numba":
        monkeypatch.setattr(knn, "MEDIUM_N", SMALL_N)
    _, synthetic = api_synthetic(data, NEW, SHARD_SIZE, threads)
    for c in NEW:
        assert synthetic[c].tobytes() == reference[c].tobytes(), f"class {c}"
    assert taken == [int(np.sum(data[1] == 0))], f"class 0 did not take the {knn_path} k-NN"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cli_matches_the_reference(data_file, data, reference, threads, tmp_path):
    _, labels = data
    targets = {str(c): int(np.sum(labels == c)) + n for c, n in NEW.items()}
    out = tmp_path / "out"
    # numba's pool has one thread per core unless told otherwise: 3 threads must be real threads.
    env = {**os.environ, "NUMBA_NUM_THREADS": "4"}
    strategy = "{" + ", ".join(f'"{c}": {n}' for c, n in targets.items()) + "}"
    args = ["generate", GOLDEN_BUNDLE, data_file, "--out", out, "--format", "npz", "--strategy", strategy]
    args += ["--seed", SEED, "--k", K, "--shard-size", SHARD_SIZE, "--threads", threads, "--quiet", "--synthetic-only"]
    run_cli(*args, env=env)
    back = read_dataset(out)
    for c in NEW:
        got = back.images[back.labels == back.classes.index(str(c))]
        assert got.tobytes() == reference[c].tobytes(), f"class {c}"


# A job that draws 300 bases from class 0's 1,200 codes (7,090 at most would) finds the neighbours
# of the bases each shard draws, when it draws them (`kernels.NeighborRows`), in shards of 100.
FEW = {0: 300, 9: 26}
FEW_SHARD_SIZE = 100


@pytest.fixture(scope="module")
def reference_few(data):
    return reference_synthetic(*data, FEW, FEW_SHARD_SIZE)


@pytest.mark.parametrize("threads", [1, 2])
def test_api_drawing_few_bases_finds_only_their_neighbours_and_matches_the_reference(
    data, reference_few, threads, monkeypatch
):
    def whole_search(*args):
        raise AssertionError("class 0 searched every code's neighbours")

    monkeypatch.setattr(knn, "_kneighbors_numpy_gemm", whole_search)
    sampler, synthetic = api_synthetic(data, FEW, FEW_SHARD_SIZE, threads)
    for c in FEW:
        assert synthetic[c].tobytes() == reference_few[c].tobytes(), f"class {c}"
    search = sampler.synthesizer_.latents[0].neighbors
    assert isinstance(search, NeighborRows)
    found = np.flatnonzero((search.table >= 0).all(axis=1))
    assert 0 < len(found) <= FEW[0] < int(np.sum(data[1] == 0))


def test_cli_drawing_few_bases_matches_the_reference_and_resumes_to_the_same_bytes(
    data_file, data, reference_few, tmp_path
):
    _, labels = data
    strategy = "{" + ", ".join(f'"{c}": {int(np.sum(labels == c)) + n}' for c, n in FEW.items()) + "}"
    out = tmp_path / "out"
    args = ["generate", GOLDEN_BUNDLE, data_file, "--out", out, "--format", "npz", "--strategy", strategy]
    args += ["--seed", SEED, "--k", K, "--shard-size", FEW_SHARD_SIZE, "--quiet", "--synthetic-only"]
    run_cli(*args)
    back = read_dataset(out)
    for c in FEW:
        got = back.images[back.labels == back.classes.index(str(c))]
        assert got.tobytes() == reference_few[c].tobytes(), f"class {c}"
    # Resumed with two of class 0's three shards to make again: their rows are found anew.
    files = {p.name: p.read_bytes() for p in out.rglob("*.npz")}
    marks = sorted(out.glob(".deepsmote-done-*"))
    victims = [m for m in marks if m.name.startswith(".deepsmote-done-class-0000-")][1:]
    assert len(victims) == 2, [m.name for m in marks]
    for mark in victims:
        mark.unlink()
        (out / f"{mark.name.removeprefix('.deepsmote-done-')}.npz").unlink()
    run_cli(*args)
    assert {p.name: p.read_bytes() for p in out.rglob("*.npz")} == files


# A job that draws 7,200 bases from class 0's 1,200 codes, sent above MEDIUM_N, takes the numba
# rows: the first shard's are found before it is decoded, each row once, never the whole search.
MANY = {0: 7_200, 9: 26}


@pytest.fixture(scope="module")
def reference_many(data):
    return reference_synthetic(*data, MANY, FEW_SHARD_SIZE)


def test_api_on_the_numba_rows_searches_the_first_shards_rows_alone_and_matches_the_reference(
    data, reference_many, monkeypatch
):
    monkeypatch.setattr(knn, "MEDIUM_N", SMALL_N)
    calls, kernels = [], {}
    for module, name in ((knn_numba, "kneighbors_gemm"), (knn_cross_numba, "kneighbors_of_padded")):
        kernel = kernels[name] = getattr(module, name)

        def traced(*args, kernel=kernel, name=name):
            calls.append((name, len(args[3]) if name == "kneighbors_of_padded" else len(args[0])))
            return kernel(*args)

        monkeypatch.setattr(module, name, traced)
    sampler, synthetic = api_synthetic(data, MANY, FEW_SHARD_SIZE, threads=2)
    for c in MANY:
        assert synthetic[c].tobytes() == reference_many[c].tobytes(), f"class {c}"
    n = int(np.sum(data[1] == 0))
    assert calls[0][0] == "kneighbors_of_padded" and calls[0][1] <= FEW_SHARD_SIZE, calls[:3]
    assert {name for name, _ in calls} == {"kneighbors_of_padded"}, "the job ran the whole search"
    found = sum(rows for _, rows in calls)
    latents = sampler.synthesizer_.latents[0]
    assert isinstance(latents.neighbors, NeighborRows)
    assert found == np.count_nonzero((latents.neighbors.table >= 0).all(axis=1)) <= n
    # What the Ray engine ships: the table of one whole search, the same bytes as the rows.
    shipped = sampler.synthesizer_.with_whole_search().latents[0]
    assert calls[-1] == ("kneighbors_gemm", n) and isinstance(shipped.neighbors, np.ndarray)
    whole, _ = kernels["kneighbors_gemm"](latents.codes, K)
    assert shipped.neighbors.tobytes() == whole.tobytes()


# Each k on both searches: class 0 (1,200 codes, 300 drawn) finds its drawn bases' rows, classes 5
# (35 codes) and 7 (10) search whole; every class holds more than k + 1 codes, so k neighbours.
BY_K = {0: 300, 5: 65, 7: 30}


@pytest.fixture(scope="module", params=[2, 3, 5])
def k_and_reference(request, data):
    k = request.param
    _, labels = data
    assert all(np.sum(labels == c) > k + 1 for c in BY_K)
    return k, reference_synthetic(*data, BY_K, FEW_SHARD_SIZE, k=k)


def test_the_reference_neighbours_depend_on_k(data):
    # k changes the images, so a job that ignored `k` fails one of the tests below.
    by_2, by_5 = (reference_synthetic(*data, {7: 30}, FEW_SHARD_SIZE, k=k)[7] for k in (2, 5))
    assert by_2.tobytes() != by_5.tobytes()


def test_api_matches_the_reference_for_each_k(data, k_and_reference):
    k, reference = k_and_reference
    sampler, synthetic = api_synthetic(data, BY_K, FEW_SHARD_SIZE, threads=1, k=k)
    for c in BY_K:
        assert synthetic[c].tobytes() == reference[c].tobytes(), f"class {c}, k={k}"
    assert {c: sampler.synthesizer_.latents[c].n_neighbors for c in BY_K} == dict.fromkeys(BY_K, k)


def test_cli_matches_the_reference_for_each_k(data_file, data, k_and_reference, tmp_path):
    k, reference = k_and_reference
    _, labels = data
    strategy = "{" + ", ".join(f'"{c}": {int(np.sum(labels == c)) + n}' for c, n in BY_K.items()) + "}"
    out = tmp_path / "out"
    args = ["generate", GOLDEN_BUNDLE, data_file, "--out", out, "--format", "npz", "--strategy", strategy]
    run_cli(*args, "--seed", SEED, "--k", k, "--shard-size", FEW_SHARD_SIZE, "--synthetic-only", "--quiet")
    back = read_dataset(out)
    for c in BY_K:
        got = back.images[back.labels == back.classes.index(str(c))]
        assert got.tobytes() == reference[c].tobytes(), f"class {c}, k={k}"
