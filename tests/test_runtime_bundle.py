"""Bundles are untrusted input: each defect is a one-line error, nothing is unpickled."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from deepsmote.runtime.bundle import (
    MANIFEST_NAME,
    create_session,
    load_bundle,
    open_models,
    read_manifest,
    resolve_provider,
    sha256_file,
)
from deepsmote.runtime.errors import DeepSMOTEError
from helpers import flip_a_byte
from onnx import TensorProto, helper


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def edit_manifest(bundle: Path, **changes) -> None:
    path = bundle / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


def rehash(bundle: Path) -> None:
    edit_manifest(bundle, files={n: sha256_file(bundle / n) for n in ("encoder.onnx", "decoder.onnx")})


def one_line_error(match: str, fn, *args) -> str:
    with pytest.raises(DeepSMOTEError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_valid_bundle_loads_and_opens(bundle):
    models = open_models(load_bundle(bundle), "cpu")
    assert models.provider == "CPUExecutionProvider"


def test_the_cpu_decoder_runs_on_the_cpu_and_a_two_graph_bundle_runs_decoder_onnx(bundle):
    codes = np.random.default_rng(0).standard_normal((9, 16), dtype=np.float32)

    def decoded_by(graph: str) -> np.ndarray:
        session, _ = create_session((bundle / graph).read_bytes(), "cpu", 1)
        return session.run(None, {"latent": codes})[0]

    by_cpu_graph, by_plain_graph = decoded_by("decoder_cpu.onnx"), decoded_by("decoder.onnx")
    assert by_cpu_graph.tobytes() != by_plain_graph.tobytes()  # else this test could not tell them apart
    np.testing.assert_allclose(by_cpu_graph, by_plain_graph, rtol=0, atol=1e-5)
    assert open_models(load_bundle(bundle), "cpu").decode(codes).tobytes() == by_cpu_graph.tobytes()
    (bundle / "decoder_cpu.onnx").unlink()
    rehash(bundle)
    assert open_models(load_bundle(bundle), "cpu").decode(codes).tobytes() == by_plain_graph.tobytes()


def test_the_cpu_sessions_are_built_at_once(bundle, monkeypatch):
    # Each build waits until all three have started: built in turn, the first would time out.
    from deepsmote.runtime.bundle import models

    loaded = load_bundle(bundle)
    codes = np.zeros((2, 16), dtype=np.float32)
    reference = open_models(loaded, "cpu").decode(codes)
    started = threading.Barrier(3, timeout=10)

    def create_when_all_started(*args, **kwargs):
        started.wait()
        return create_session(*args, **kwargs)

    monkeypatch.setattr(models, "create_session", create_when_all_started)
    opened = open_models(loaded, "cpu", pixels=True)
    assert opened.decoder_file == "decoder_cpu.onnx"
    assert opened.decode(codes).tobytes() == reference.tobytes()
    assert opened.pixels is not None and opened.encoder is not None


def test_the_encoders_error_is_reported_where_several_graphs_fail(bundle, monkeypatch):
    # The decoder fails first in time; the encoder's error, first in the graphs' order, is the one raised.
    from deepsmote.runtime.bundle import models

    loaded = load_bundle(bundle)

    def failing(graph, *args, **kwargs):
        if graph == loaded.encoder_bytes:
            time.sleep(0.2)
            raise DeepSMOTEError("the encoder failed")
        raise DeepSMOTEError("the decoder failed")

    monkeypatch.setattr(models, "create_session", failing)
    one_line_error("the encoder failed", open_models, loaded, "cpu")


def test_a_missing_classifier_is_refused_before_any_session_is_built(bundle, monkeypatch):
    from deepsmote.runtime.bundle import models

    monkeypatch.setattr(models, "create_session", lambda *args, **kwargs: pytest.fail("a session was built"))
    one_line_error("has no classifier.onnx", lambda: open_models(load_bundle(bundle), "cpu", classifier=True))


def test_the_graphs_are_read_at_once(bundle, monkeypatch):
    # Each read waits until all have started: read in turn, the first would time out.
    from deepsmote.runtime.bundle import loading

    files = read_manifest(bundle).graph_files
    started = threading.Barrier(len(files), timeout=10)
    read_and_hash = loading._read_and_hash

    def read_when_all_started(file):
        started.wait()
        return read_and_hash(file)

    monkeypatch.setattr(loading, "_read_and_hash", read_when_all_started)
    loaded = load_bundle(bundle)
    assert loaded.decoder_bytes == (bundle / "decoder.onnx").read_bytes()
    assert loaded.encoder_bytes == (bundle / "encoder.onnx").read_bytes()


def reads_of(monkeypatch) -> list[str]:
    """The names of the graph files `load_bundle` and `Bundle.graph` read from now on, in order."""
    from deepsmote.runtime.bundle import loading

    read: list[str] = []
    read_and_hash = loading._read_and_hash

    def recorded(file):
        read.append(file.name)
        return read_and_hash(file)

    monkeypatch.setattr(loading, "_read_and_hash", recorded)
    return read


def test_a_lazy_bundle_reads_each_graph_once_where_it_is_used(bundle, monkeypatch):
    codes = np.zeros((3, 16), dtype=np.float32)
    eager = load_bundle(bundle)
    reference = open_models(eager, "cpu", encoder=False).decode(codes)
    read = reads_of(monkeypatch)
    lazy = load_bundle(bundle, lazy=True)
    assert read == []
    assert lazy.fingerprint == eager.fingerprint
    assert open_models(lazy, "cpu", encoder=False).decode(codes).tobytes() == reference.tobytes()
    assert read == ["decoder_cpu.onnx"]
    open_models(lazy, "cpu")
    assert read == ["decoder_cpu.onnx", "encoder.onnx"]
    assert lazy.cpu_decoder_bytes == (bundle / "decoder_cpu.onnx").read_bytes()
    assert read == ["decoder_cpu.onnx", "encoder.onnx"]


def test_a_lazy_bundle_checks_each_graph_where_it_is_used(bundle):
    # A corrupt graph the job does not run is never read; one it runs is refused as load_bundle refuses it.
    for name in ("decoder.onnx", "encoder.onnx"):
        flip_a_byte(bundle / name)
    lazy = load_bundle(bundle, lazy=True)
    open_models(lazy, "cpu", encoder=False).decode(np.zeros((2, 16), dtype=np.float32))
    message = one_line_error("sha256 does not match", open_models, lazy, "cpu")
    assert message.startswith(f"{bundle / 'encoder.onnx'}:"), message
    one_line_error("sha256 does not match", load_bundle, bundle)
    one_line_error(f"{bundle} has no classifier.onnx", lazy.graph, "classifier.onnx")
    assert lazy.classifier_bytes is None and not lazy.has_graph("classifier.onnx")


def test_a_lazy_bundle_still_refuses_a_missing_graph_file_at_once(bundle):
    (bundle / "decoder.onnx").unlink()
    one_line_error("decoder.onnx: missing", lambda: load_bundle(bundle, lazy=True))


def test_a_pickled_bundle_carries_every_graph_checked(bundle):
    lazy = load_bundle(bundle, lazy=True)
    shipped = pickle.dumps(lazy)
    graphs = {name: (bundle / name).read_bytes() for name in read_manifest(bundle).graph_files}
    shutil.rmtree(bundle)  # a copy elsewhere never reads the directory
    copy = pickle.loads(shipped)
    assert {name: copy.graph(name) for name in graphs} == graphs
    assert copy.manifest == lazy.manifest


def test_the_first_bad_graph_in_the_manifests_order_is_reported(bundle):
    files = read_manifest(bundle).graph_files
    assert len(files) >= 2
    for name in files:
        flip_a_byte(bundle / name, -1)
    message = one_line_error("sha256 does not match", load_bundle, bundle)
    assert message.startswith(f"{bundle / files[0]}:"), message


def test_tampered_onnx_fails_hash(bundle):
    flip_a_byte(bundle / "decoder.onnx")
    one_line_error("sha256 does not match", load_bundle, bundle)


@pytest.mark.parametrize("field", ["format_version", "image_shape", "latent_dim", "classes", "files"])
def test_missing_field(bundle, field):
    edit_manifest(bundle, **{field: None})
    one_line_error(f"'{field}' is missing", load_bundle, bundle)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("latent_dim", "16", "must be int"),
        ("image_shape", [1, 28], "must be \\[C, H, W\\]"),
        ("image_shape", [2, 28, 28], "1 or 3 channels"),
        ("classes", [1, 2], "list of strings"),
        ("pixel_range", [0, 1], "pixel_range"),
        ("format_version", 99, "not supported"),
        ("format_version", True, "must be int"),
    ],
)
def test_mistyped_field(bundle, field, value, match):
    edit_manifest(bundle, **{field: value})
    one_line_error(match, load_bundle, bundle)


def test_manifest_not_json(bundle):
    (bundle / MANIFEST_NAME).write_text("{not json")
    one_line_error("not valid JSON", load_bundle, bundle)


def test_not_a_bundle(tmp_path):
    one_line_error("not a deepsmote bundle", load_bundle, tmp_path)
    one_line_error("not a bundle directory", load_bundle, tmp_path / "missing")


def test_symlinked_onnx_is_refused(bundle, tmp_path):
    target = tmp_path / "elsewhere.onnx"
    shutil.move(bundle / "encoder.onnx", target)
    (bundle / "encoder.onnx").symlink_to(target)
    one_line_error("missing \\(or a link\\)", load_bundle, bundle)


def test_latent_size_disagreeing_with_manifest(bundle):
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    edit_manifest(bundle, latent_dim=manifest["latent_dim"] + 1)
    one_line_error("has shape", load_bundle, bundle)


def identity_graph(path: Path, in_name: str, out_name: str, shape: list) -> None:
    node = helper.make_node("Identity", [in_name], [out_name])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_wrong_input_name(bundle):
    identity_graph(bundle / "encoder.onnx", "pixels", "latent", ["N", 1, 28, 28])
    rehash(bundle)
    one_line_error("expected one input named 'image'", load_bundle, bundle)


def test_fixed_batch_axis(bundle):
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    identity_graph(bundle / "decoder.onnx", "latent", "image", [4, manifest["latent_dim"]])
    rehash(bundle)
    one_line_error("fixed batch size 4", load_bundle, bundle)


@pytest.mark.parametrize("location", ["../../weights.bin", "/etc/passwd", "weights.bin"])
def test_external_data_is_refused(bundle, location):
    # onnxruntime resolves external data of a graph loaded from bytes against the working
    # directory; the bundle check refuses every such reference before onnxruntime sees it.
    model = onnx.load(bundle / "decoder.onnx")
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (bundle / "decoder.onnx").write_bytes(model.SerializeToString())
    rehash(bundle)
    message = one_line_error("external data", load_bundle, bundle)
    assert location in message


def test_missing_cuda_provider_lists_available():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    message = one_line_error("Provider CUDAExecutionProvider is not available", resolve_provider, "cuda")
    assert "CPUExecutionProvider" in message


def test_unknown_provider():
    one_line_error("`provider` must be one of", resolve_provider, "tpu")


def test_scanner_field_numbers_match_onnx_schema():
    from deepsmote.runtime.bundle import graphs as scan
    from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

    assert ModelProto.DESCRIPTOR.fields_by_name["graph"].number == scan._MODEL_GRAPH
    assert GraphProto.DESCRIPTOR.fields_by_name["initializer"].number == scan._GRAPH_INITIALIZER
    assert scan._TENSOR_PATHS["GraphProto"][GraphProto.DESCRIPTOR.fields_by_name["node"].number] == "NodeProto"
    assert scan._TENSOR_PATHS["AttributeProto"][AttributeProto.DESCRIPTOR.fields_by_name["t"].number] == "TensorProto"
    assert scan._TENSOR_PATHS["AttributeProto"][AttributeProto.DESCRIPTOR.fields_by_name["g"].number] == "GraphProto"
    assert TensorProto.DESCRIPTOR.fields_by_name["external_data"].number == scan._TENSOR_EXTERNAL_DATA
    assert TensorProto.DESCRIPTOR.fields_by_name["data_location"].number == scan._TENSOR_DATA_LOCATION


def test_garbage_onnx_is_a_clear_error(bundle):
    (bundle / "encoder.onnx").write_bytes(b"\xff\xff\xff")
    rehash(bundle)
    one_line_error("not a valid ONNX file", load_bundle, bundle)


def test_models_opened_without_the_encoder_decode_the_same_bytes_and_refuse_to_encode(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    codes = np.random.default_rng(3).standard_normal((20, bundle.latent_dim)).astype(np.float32)
    decoder_only = open_models(bundle, "cpu", encoder=False)
    assert decoder_only.encoder is None
    assert decoder_only.decode(codes).tobytes() == open_models(bundle, "cpu").decode(codes).tobytes()
    with pytest.raises(ValueError, match=r"the encoder session was not opened \(open_models\(\.\.\., encoder=True\)\)"):
        decoder_only.encode(np.zeros((1, *bundle.image_shape), dtype=np.float32))
