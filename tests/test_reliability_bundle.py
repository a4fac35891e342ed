"""Untrusted bundles and checkpoints: gaps left by test_runtime_bundle.py, and proof that no pickle runs.

Every defect is a one-line :class:`DeepSMOTEError`; a payload that would run code when unpickled
(here: create a marker directory) is refused before it can run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime.bundle import CPU_DECODER_FILE, FP16_DECODER_FILE, MANIFEST_NAME, load_bundle, sha256_file
from deepsmote.runtime.bundle.graphs import MalformedModel, external_data_locations
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import read_dataset
from helpers import flip_a_byte, run_main, without_graphs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper


class Payload:
    """Unpickling this creates ``marker``: the test fails if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def full_bundle(tiny_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    """The two graphs the contract requires, as a bundle made elsewhere has them: the runtime
    then runs decoder.onnx on the CPU too, so a defect in it shows there."""
    return without_graphs(tiny_bundle, tmp_path / "bundle", CPU_DECODER_FILE, FP16_DECODER_FILE)


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST_NAME).read_text())


def set_manifest(bundle: Path, manifest) -> None:
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def replace_graph(bundle: Path, name: str, model: onnx.ModelProto) -> None:
    onnx.save(model, bundle / name)
    manifest = manifest_of(bundle)
    manifest["files"][name] = sha256_file(bundle / name)
    set_manifest(bundle, manifest)


def graph(inputs: list, outputs: list, nodes: list) -> onnx.ModelProto:
    return helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )


def one_line(match: str, fn, *args) -> str:
    with pytest.raises(DeepSMOTEError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


# --- graphs whose outputs break the contract ------------------------------------------------


def float_info(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_wrong_output_name(bundle):
    shape = ["N", *manifest_of(bundle)["image_shape"]]
    model = graph([float_info("latent", ["N", 16])], [float_info("pixels", shape)], [])
    model.graph.node.append(helper.make_node("Identity", ["latent"], ["pixels"]))
    replace_graph(bundle, "decoder.onnx", model)
    one_line("decoder.onnx: expected one output named 'image', found \\['pixels'\\]", load_bundle, bundle)


@pytest.mark.parametrize("name", [CPU_DECODER_FILE, FP16_DECODER_FILE])
def test_a_defect_in_an_optional_decoder_is_named(full_bundle, name):
    shape = ["N", *manifest_of(full_bundle)["image_shape"]]
    model = graph([float_info("latent", ["N", 16])], [float_info("pixels", shape)], [])
    model.graph.node.append(helper.make_node("Identity", ["latent"], ["pixels"]))
    replace_graph(full_bundle, name, model)
    one_line(f"{name}: expected one output named 'image', found \\['pixels'\\]", load_bundle, full_bundle)


@pytest.mark.parametrize("name", [CPU_DECODER_FILE, FP16_DECODER_FILE])
def test_a_tampered_optional_decoder_fails_its_hash(full_bundle, name):
    flip_a_byte(full_bundle / name)
    one_line(f"{name}: sha256 does not match", load_bundle, full_bundle)


def test_generate_reads_only_the_graphs_it_runs_and_refuses_a_bad_one_it_runs(full_bundle, tmp_path, capsys):
    # On the CPU a job runs decoder_cpu.onnx and the encoder: a corrupt fp16 decoder is never read,
    # a corrupt CPU decoder is refused in one line before OUT is made.
    for name in (FP16_DECODER_FILE, CPU_DECODER_FILE):
        flip_a_byte(full_bundle / name)
        out = tmp_path / f"out-{name}"
        args = ["generate", full_bundle, fmnist_mini(), "--out", out, "--strategy", '{"9": 10}', "--quiet"]
        args += ["--synthetic-only"]
        code, _, err = run_main(args, capsys)
        if name == FP16_DECODER_FILE:
            assert code == 0, err
            assert len(list(out.rglob("*.png"))) == 6
        else:
            assert code != 0 and f"{name}: sha256 does not match" in err and len(err.strip().splitlines()) == 1, err
            assert not out.exists()


@pytest.mark.parametrize("name", [CPU_DECODER_FILE, FP16_DECODER_FILE])
def test_an_optional_decoder_listed_but_missing_is_refused(full_bundle, name):
    (full_bundle / name).unlink()
    one_line(f"{name}: missing", load_bundle, full_bundle)


def test_two_outputs(bundle):
    image = ["N", *manifest_of(bundle)["image_shape"]]
    nodes = [helper.make_node("Identity", ["image"], ["latent"]), helper.make_node("Identity", ["image"], ["extra"])]
    model = graph([float_info("image", image)], [float_info("latent", image), float_info("extra", image)], nodes)
    replace_graph(bundle, "encoder.onnx", model)
    one_line("expected one output named 'latent', found \\['latent', 'extra'\\]", load_bundle, bundle)


def test_wrong_output_shape(bundle):
    # A decoder that makes 32x32 images for a manifest that says 28x28.
    latent = manifest_of(bundle)["latent_dim"]
    weights = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 32, 32])
    model = graph(
        [float_info("latent", ["N", latent])],
        [float_info("image", ["N", 1, 32, 32])],
        [helper.make_node("Reshape", ["latent", "shape"], ["image"])],
    )
    model.graph.initializer.append(weights)
    replace_graph(bundle, "decoder.onnx", model)
    message = one_line("output 'image' has shape", load_bundle, bundle)
    assert "1, 32, 32]" in message and "1, 28, 28]" in message


def test_wrong_output_type(bundle):
    # Right name and shape, but float64 pixels: (N, Z) -> sum -> (N, 1, 1, 1) -> expand to (N, 1, 28, 28).
    latent = manifest_of(bundle)["latent_dim"]
    model = graph(
        [float_info("latent", ["N", latent])],
        [helper.make_tensor_value_info("image", TensorProto.DOUBLE, ["N", 1, 28, 28])],
        [
            helper.make_node("Cast", ["latent"], ["wide"], to=TensorProto.DOUBLE),
            helper.make_node("ReduceSum", ["wide", "axis"], ["sum"], keepdims=1),
            helper.make_node("Reshape", ["sum", "column"], ["cell"]),
            helper.make_node("Expand", ["cell", "size"], ["image"]),
        ],
    )
    for name, values in (("axis", [1]), ("column", [-1, 1, 1, 1]), ("size", [1, 1, 28, 28])):
        model.graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], values))
    replace_graph(bundle, "decoder.onnx", model)
    one_line("output 'image' is tensor\\(double\\), expected tensor\\(float\\)", load_bundle, bundle)


def test_wrong_input_rank(bundle):
    model = graph([float_info("image", ["N", 784])], [float_info("latent", ["N", 784])], [])
    model.graph.node.append(helper.make_node("Identity", ["image"], ["latent"]))
    replace_graph(bundle, "encoder.onnx", model)
    one_line("input 'image' has shape", load_bundle, bundle)


# --- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["[]", '"bundle"', "null", "42", "[1, 2, 3]"])
def test_manifest_that_is_not_an_object(bundle, content):
    (bundle / MANIFEST_NAME).write_text(content)
    one_line("must be a JSON object", load_bundle, bundle)


def test_manifest_that_is_not_utf8(bundle):
    (bundle / MANIFEST_NAME).write_bytes(b'{"format_version": 1, "x": "\xff\xfe"}')
    one_line("not valid JSON", load_bundle, bundle)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("format_version", 1.0, "must be int"),
        ("format_version", "1", "must be int"),
        ("format_version", 0, "not supported"),
        ("format_version", 2, "not supported"),
        ("latent_dim", 0, "must be positive"),
        ("latent_dim", -16, "must be positive"),
        ("latent_dim", True, "must be int"),
        ("image_shape", [1, 28, 0], "positive integers"),
        ("image_shape", [1, 28.0, 28], "positive integers"),
        ("image_shape", "1x28x28", "must be list"),
        ("classes", "0123456789", "must be list"),
        ("training", [], "must be dict"),
        ("export", None, "must be dict"),
        ("files", {"encoder.onnx": 5, "decoder.onnx": "ab"}, "lacks the sha256 of encoder.onnx"),
        ("files", [], "must be dict"),
    ],
)
def test_more_mistyped_fields(bundle, field, value, match):
    manifest = manifest_of(bundle)
    manifest[field] = value
    set_manifest(bundle, manifest)
    one_line(match, load_bundle, bundle)


def test_onnx_file_that_is_a_directory(bundle):
    (bundle / "encoder.onnx").unlink()
    (bundle / "encoder.onnx").mkdir()
    one_line("encoder.onnx: missing", load_bundle, bundle)


# --- the external-data scanner on damaged graphs -----------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_scanner_on_damaged_graphs_raises_only_malformed(tiny_bundle, data):
    raw = bytearray((tiny_bundle / "decoder.onnx").read_bytes())
    cut = data.draw(st.integers(0, len(raw)), label="truncate at")
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=8))
    for position, value in edits:
        raw[position] = value
    try:
        found = external_data_locations(bytes(raw[:cut]))
    except MalformedModel:
        return
    assert isinstance(found, list) and all(isinstance(location, str) for location in found)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_scanner_on_random_bytes_raises_only_malformed(raw):
    try:
        external_data_locations(raw)
    except MalformedModel:
        pass


# --- nothing is unpickled --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["images", "labels"])
def test_npz_with_a_pickled_payload_is_refused_and_never_runs(tmp_path, key):
    marker = tmp_path / "pwned"
    arrays = {"images": np.zeros((4, 28, 28), np.uint8), "labels": np.arange(4)}
    arrays[key] = np.array([Payload(marker)] * 4, dtype=object)
    np.savez(tmp_path / "d.npz", **arrays)
    # The payload is real: numpy would run it if pickles were allowed.
    with np.load(tmp_path / "d.npz", allow_pickle=True) as loaded:
        loaded[key]
    assert marker.is_dir()
    marker.rmdir()
    one_line(f"'{key}' holds Python objects", read_dataset, tmp_path / "d.npz")
    assert not marker.exists()


def test_checkpoint_with_a_pickled_payload_is_refused_by_export_and_resume(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from deepsmote.runtime.cli import main
    from deepsmote.training.trainer import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, TrainConfig, train

    marker = tmp_path / "pwned"
    checkpoint = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": Payload(marker)}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(checkpoint, run_dir / "last.pt")
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(run_dir / "last.pt"), "--out", str(tmp_path / "bundle")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(err) == 1
    assert "last.pt: not a deepsmote checkpoint (UnpicklingError)" in err[0]
    data = read_dataset(Path(__file__).resolve().parents[1] / "data" / "fmnist-mini" / "train-images-idx3-ubyte.gz")
    config = TrainConfig(epochs=1, width=8, latent_dim=16, device="cpu")
    one_line("last.pt: not a deepsmote checkpoint", lambda: train(data, config, run_dir, resume=True))
    assert not marker.exists() and not (tmp_path / "bundle").exists()
    # The same payload does run under a plain pickle load: the refusal above is what stopped it.
    torch.load(run_dir / "last.pt", weights_only=False)
    assert marker.is_dir()


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_deeply_nested_graph_is_a_one_line_error(bundle):
    from onnx import AttributeProto, GraphProto, ModelProto, NodeProto

    def number(message, name: str) -> int:
        return message.DESCRIPTOR.fields_by_name[name].number

    node, attribute = number(GraphProto, "node"), number(NodeProto, "attribute")
    subgraph, graph = number(AttributeProto, "g"), number(ModelProto, "graph")
    # 30 KB: a graph in a node attribute in a graph ... 3000 levels deep.
    nested = b""
    for _ in range(3000):
        nested = _field(node, _field(attribute, _field(subgraph, nested)))
    (bundle / "encoder.onnx").write_bytes(_field(graph, nested))
    manifest = manifest_of(bundle)
    manifest["files"]["encoder.onnx"] = sha256_file(bundle / "encoder.onnx")
    set_manifest(bundle, manifest)
    one_line("not a valid ONNX file", load_bundle, bundle)


# --- external data anywhere in a graph ----------------------------------------------------------


def _external_tensor(name: str, location: str) -> onnx.TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _holder(tensor: onnx.TensorProto) -> onnx.GraphProto:
    """A subgraph whose one initializer is ``tensor``."""
    return helper.make_graph([], "sub", [], [], initializer=[tensor])


def _sparse(tensor: onnx.TensorProto, where: str) -> onnx.SparseTensorProto:
    plain = helper.make_tensor("p", TensorProto.INT64, [1], [0])
    values, indices = (tensor, plain) if where == "values" else (plain, tensor)
    return helper.make_sparse_tensor(values, indices, [4])


def _function_default(tensor: onnx.TensorProto) -> onnx.FunctionProto:
    """A local function whose attribute ``t`` defaults to ``tensor``, read by its Constant node."""
    const = helper.make_node("Constant", [], ["c"])
    const.attribute.append(onnx.AttributeProto(name="value", ref_attr_name="t", type=onnx.AttributeProto.TENSOR))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    opset = [helper.make_opsetid("", 17)]
    return helper.make_function(
        "local", "F", ["x"], ["y"], [const, add], opset, attribute_protos=[helper.make_attribute("t", tensor)]
    )


def _nested(tensor: onnx.TensorProto, levels: int) -> onnx.GraphProto:
    inner = _holder(tensor)
    for _ in range(levels):
        inner = helper.make_graph(
            [helper.make_node("If", ["b"], ["y"], then_branch=inner, else_branch=inner)], "g", [], []
        )
    return inner


# Each place the ONNX schema lets a TensorProto be: the model with an external tensor there.
_PLACES = {
    "initializer": lambda t: helper.make_model(_holder(t)),
    "sparse initializer values": lambda t: helper.make_model(
        helper.make_graph([], "g", [], [], sparse_initializer=[_sparse(t, "values")])
    ),
    "sparse initializer indices": lambda t: helper.make_model(
        helper.make_graph([], "g", [], [], sparse_initializer=[_sparse(t, "indices")])
    ),
    "Constant value": lambda t: helper.make_model(
        helper.make_graph([helper.make_node("Constant", [], ["c"], value=t)], "g", [], [])
    ),
    "attribute tensors": lambda t: helper.make_model(
        helper.make_graph([helper.make_node("Op", [], [], ts=[t])], "g", [], [])
    ),
    "attribute sparse tensor": lambda t: helper.make_model(
        helper.make_graph([helper.make_node("Op", [], [], s=_sparse(t, "values"))], "g", [], [])
    ),
    "attribute sparse tensors": lambda t: helper.make_model(
        helper.make_graph([helper.make_node("Op", [], [], ss=[_sparse(t, "values")])], "g", [], [])
    ),
    "If branch, 20 levels deep": lambda t: helper.make_model(_nested(t, 20)),
    "attribute graphs": lambda t: helper.make_model(
        helper.make_graph([helper.make_node("Op", [], [], gs=[_holder(t)])], "g", [], [])
    ),
    "training initialization": lambda t: _training(t, "initialization"),
    "training algorithm": lambda t: _training(t, "algorithm"),
    "function node": lambda t: helper.make_model(
        helper.make_graph([], "g", [], []),
        functions=[helper.make_function("local", "F", [], [], [helper.make_node("Constant", [], ["c"], value=t)], [])],
    ),
    "function attribute default": lambda t: helper.make_model(
        helper.make_graph([], "g", [], []), functions=[_function_default(t)]
    ),
    "function node's subgraph": lambda t: helper.make_model(
        helper.make_graph([], "g", [], []),
        functions=[
            helper.make_function("local", "F", [], [], [helper.make_node("Op", [], [], body=_nested(t, 3))], [])
        ],
    ),
}


def _training(tensor: onnx.TensorProto, field: str) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph([], "g", [], []))
    getattr(model.training_info.add(), field).CopyFrom(_holder(tensor))
    return model


@pytest.mark.parametrize("place", sorted(_PLACES))
def test_the_scanner_finds_external_data_wherever_a_tensor_can_be(place):
    model = _PLACES[place](_external_tensor("t", "secret.bin"))
    assert "secret.bin" in external_data_locations(model.SerializeToString())


def test_the_scanner_follows_every_path_of_the_schema_to_a_tensor():
    # The schema's own answer: every message field from ModelProto through which a TensorProto
    # can be reached. A field the scanner does not follow is a place to hide external data.
    from deepsmote.runtime.bundle import graphs as scan
    from google.protobuf.descriptor import FieldDescriptor

    messages, todo = {}, [onnx.ModelProto.DESCRIPTOR]
    while todo:
        descriptor = todo.pop()
        if descriptor.name not in messages:
            messages[descriptor.name] = descriptor
            todo += [f.message_type for f in descriptor.fields if f.type == FieldDescriptor.TYPE_MESSAGE]
    reach, grew = {"TensorProto"}, True
    while grew:
        before = len(reach)
        reach |= {
            name
            for name, d in messages.items()
            if any(f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.name in reach for f in d.fields)
        }
        grew = len(reach) > before
    expected = {
        name: {
            f.number: f.message_type.name
            for f in messages[name].fields
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.name in reach
        }
        for name in reach
    }
    assert scan._TENSOR_PATHS == expected
    assert onnx.TensorProto.DESCRIPTOR.fields_by_name["external_data"].number == scan._TENSOR_EXTERNAL_DATA
    assert onnx.TensorProto.DESCRIPTOR.fields_by_name["data_location"].number == scan._TENSOR_DATA_LOCATION


def _decoder_with_a_function_default(bundle: Path, location: str) -> onnx.ModelProto:
    """A decoder of the bundle's signature whose local function's attribute default is an external tensor."""
    manifest = manifest_of(bundle)
    channels, height, width = manifest["image_shape"]
    size = channels * height * width
    tensor = _external_tensor("t", location)
    tensor.dims[:] = [size]
    tensor.external_data[2].value = str(4 * size)
    nodes = [
        helper.make_node("ReduceSum", ["latent", "one"], ["s"]),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("F", ["z"], ["flat"], domain="local"),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
    ]
    weights = [
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("shape", TensorProto.INT64, [4], [-1, channels, height, width]),
    ]
    main_graph = helper.make_graph(
        nodes,
        "g",
        [float_info("latent", ["N", manifest["latent_dim"]])],
        [float_info("image", ["N", channels, height, width])],
        weights,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    return helper.make_model(main_graph, opset_imports=opsets, functions=[_function_default(tensor)])


def test_external_data_in_a_function_attribute_default_is_refused_by_every_command(
    bundle, tmp_path, capsys, monkeypatch
):
    # The sweep's case: the file named relative to the working directory, where a job runs.
    size = int(np.prod(manifest_of(bundle)["image_shape"]))
    monkeypatch.chdir(tmp_path)
    np.full(size, 0.5, np.float32).tofile(tmp_path / "secret.bin")
    replace_graph(bundle, "decoder.onnx", _decoder_with_a_function_default(bundle, "secret.bin"))
    one_line("decoder.onnx: weights stored as external data \\('secret.bin'\\)", load_bundle, bundle)
    out = tmp_path / "out"
    for args in (["inspect", bundle], ["generate", bundle, fmnist_mini(), "--out", out, "--strategy", '{"9": 10}']):
        code, stdout, err = run_main(args, capsys)
        assert code == 1 and "hashes: ok" not in stdout, (args, stdout, err)
        assert err.startswith("Error: ") and "external data ('secret.bin')" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_session_resolves_no_external_data_even_past_the_scanner(tmp_path, monkeypatch):
    # The scanner is the first wall; the session is the second: a graph handed to create_session
    # with an external tensor in an If branch, the file in the working directory, which
    # onnxruntime would read there (the subgraph's initializer is loaded as it is).
    from deepsmote.runtime.bundle import create_session

    monkeypatch.chdir(tmp_path)
    np.arange(4, dtype=np.float32).tofile(tmp_path / "secret.bin")

    def branch() -> onnx.GraphProto:
        add = helper.make_node("Add", ["x", "c"], ["z"])
        return helper.make_graph([add], "b", [], [float_info("z", ["N", 4])], [_external_tensor("c", "secret.bin")])

    nodes = [
        helper.make_node("ReduceMin", ["x"], ["m"], keepdims=0),
        helper.make_node("Greater", ["m", "zero"], ["b"]),
        helper.make_node("If", ["b"], ["y"], then_branch=branch(), else_branch=branch()),
    ]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    model = graph([float_info("x", ["N", 4])], [float_info("y", ["N", 4])], nodes)
    model.graph.initializer.append(zero)
    one_line("onnxruntime cannot load the graph", create_session, model.SerializeToString(), "cpu")


def test_a_manifest_class_name_that_is_not_utf8_is_refused(bundle):
    manifest = manifest_of(bundle)
    manifest["classes"][0] = "bad\udcff"
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))  # ASCII JSON: the escape \udcff
    one_line("manifest class name 'bad\\\\udcff' is not valid UTF-8", load_bundle, bundle)


def test_a_huge_sparse_graph_file_is_refused_before_it_is_read(bundle, tmp_path):
    # 3 GB of holes: read whole it would take 3 GB of memory; under a 1.5 GiB address-space
    # limit the check must come from its size alone.
    import subprocess
    import sys

    with open(bundle / "decoder.onnx", "r+b") as f:
        f.truncate(3 * 10**9)
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))\n"
        "from deepsmote.runtime.bundle import load_bundle\n"
        "from deepsmote.runtime.errors import DeepSMOTEError\n"
        "try:\n    load_bundle(sys.argv[1])\nexcept DeepSMOTEError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(bundle)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "decoder.onnx: 3000000000 bytes, more than a self-contained ONNX file can hold" in result.stdout
