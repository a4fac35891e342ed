"""Read what the bundle checks need from a serialized ONNX model, without the ``onnx`` package.

Two readings of the protobuf wire format, along the schema paths that hold what they need:

- :func:`external_data_locations`: onnxruntime resolves external data of a model loaded from
  bytes against the working directory, so a bundle could make it read files that are not part
  of the bundle; the runtime refuses external data altogether and names the path it found.
- :func:`graph_signature`: the names, element types and shapes of the graph's inputs and
  outputs, checked against the manifest when the bundle is loaded (``docs/design.md`` §2).

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# Field numbers from onnx.proto, checked against the onnx package's descriptors in tests.
_MODEL_GRAPH = 7
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
# Every message field of onnx.proto on a path from ModelProto to a TensorProto: message name ->
# {field number: message name}. The external-data scan follows all of them, so no TensorProto
# of the model is left out (functions' attribute defaults included); a test rebuilds this table
# from the onnx package's descriptors, so a field added to the schema fails it until it is here.
_TENSOR_PATHS: dict[str, dict[int, str]] = {
    "ModelProto": {7: "GraphProto", 20: "TrainingInfoProto", 25: "FunctionProto"},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto"},
    "FunctionProto": {7: "NodeProto", 11: "AttributeProto"},
    "GraphProto": {1: "NodeProto", 5: "TensorProto", 15: "SparseTensorProto"},
    "NodeProto": {5: "AttributeProto"},
    "AttributeProto": {
        5: "TensorProto",
        6: "GraphProto",
        10: "TensorProto",
        11: "GraphProto",
        22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto"},
    "TensorProto": {},
}
_GRAPH_INITIALIZER = 5
_TENSOR_NAME = 8
_GRAPH_INPUT, _GRAPH_OUTPUT = 11, 12
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_TYPE_ELEM, _TENSOR_TYPE_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2
# TensorProto.DataType names as onnxruntime prints them ("tensor(float)").
_ELEMENT_TYPES = {
    1: "float",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "double",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1
# Subgraphs nest (If, Loop, Scan bodies); a real model nests a few levels, a crafted one could
# nest thousands to exhaust the stack.
MAX_DEPTH = 64


class MalformedModel(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedModel("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: memoryview) -> Iterator[tuple[int, int, memoryview | int]]:
    """(field number, wire type, value) of each field; value is a memoryview for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise MalformedModel("length past the end")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise MalformedModel(f"unsupported wire type {wire}")
    if pos != len(data):
        raise MalformedModel("truncated field")


def _children(data: memoryview, numbers: tuple[int, ...]) -> Iterator[memoryview]:
    for number, wire, value in _fields(data):
        if wire == 2 and number in numbers:
            yield value  # type: ignore[misc]


def _tensor(data: memoryview) -> Iterator[str]:
    external = False
    locations = []
    for number, wire, value in _fields(data):
        if number == _TENSOR_DATA_LOCATION and wire == 0:
            external = value == _EXTERNAL
        elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
            entry = {n: v for n, w, v in _fields(value) if w == 2}  # type: ignore[arg-type]
            if entry.get(_ENTRY_KEY) == b"location":
                locations.append(bytes(entry.get(_ENTRY_VALUE, b"")).decode("utf-8", "replace"))
    if external or locations:
        yield from locations or ["<no location>"]


def _scan(data: memoryview, message: str, depth: int) -> Iterator[str]:
    """External-data locations of every TensorProto within ``data``, a serialized ``message``."""
    if message == "TensorProto":
        yield from _tensor(data)
        return
    if message == "GraphProto":
        # Subgraphs nest (If, Loop, Scan bodies, graph attributes of functions' nodes).
        depth += 1
        if depth > MAX_DEPTH:
            raise MalformedModel(f"subgraphs nested more than {MAX_DEPTH} levels deep")
    paths = _TENSOR_PATHS[message]
    for number, wire, value in _fields(data):
        child = paths.get(number)
        if child is not None and wire == 2:
            yield from _scan(value, child, depth)  # type: ignore[arg-type]


def external_data_locations(model: bytes) -> list[str]:
    """Locations of every tensor stored as external data in a serialized ModelProto.

    Every TensorProto is looked at, wherever the schema allows one: initializers, sparse
    tensors, node attributes, functions' nodes and attribute defaults, training graphs, and
    subgraphs at any depth up to :data:`MAX_DEPTH`. A tensor marked external without a location
    is reported as ``<no location>``.

    Raises
    ------
    MalformedModel
        If the bytes are not a well-formed protobuf message, or nest subgraphs deeper than
        :data:`MAX_DEPTH`.
    """
    # Slices of a memoryview share its memory: slicing the bytes would copy every weight tensor
    # once per enclosing message (~0.15 s for a paper-size decoder).
    return list(_scan(memoryview(model), "ModelProto", 0))


@dataclass(frozen=True)
class ValueInfo:
    """One graph input or output.

    Attributes
    ----------
    name : str
    type : str
        As onnxruntime names it: ``tensor(float)``, ``tensor(double)``, ...
    shape : list
        One entry per axis: an int for a fixed size, a str for a named (symbolic) size, None for
        an unnamed one.
    """

    name: str
    type: str
    shape: list[int | str | None]


def _value_info(data: memoryview) -> ValueInfo:
    name, kind, shape = "", "unknown", []
    for number, wire, value in _fields(data):
        if number == _VALUE_NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")  # type: ignore[arg-type]
        elif number == _VALUE_TYPE and wire == 2:
            for tensor in _children(value, (_TYPE_TENSOR,)):  # type: ignore[arg-type]
                for tnum, twire, tval in _fields(tensor):
                    if tnum == _TENSOR_TYPE_ELEM and twire == 0:
                        kind = f"tensor({_ELEMENT_TYPES.get(tval, str(tval))})"  # type: ignore[arg-type]
                    elif tnum == _TENSOR_TYPE_SHAPE and twire == 2:
                        shape = [_dimension(d) for d in _children(tval, (_SHAPE_DIM,))]  # type: ignore[arg-type]
    return ValueInfo(name, kind, shape)


def _dimension(data: memoryview) -> int | str | None:
    for number, wire, value in _fields(data):
        if number == _DIM_VALUE and wire == 0:
            return int(value)  # type: ignore[arg-type]
        if number == _DIM_PARAM and wire == 2:
            return bytes(value).decode("utf-8", "replace")  # type: ignore[arg-type]
    return None


def graph_signature(model: bytes) -> tuple[list[ValueInfo], list[ValueInfo]]:
    """The inputs and outputs of a serialized ModelProto's main graph.

    Inputs that are also initializers (weights listed as inputs by old exporters) are left out,
    as onnxruntime leaves them out of ``get_inputs()``.

    Raises
    ------
    MalformedModel
        If the bytes are not a well-formed protobuf message.
    """
    inputs: list[ValueInfo] = []
    outputs: list[ValueInfo] = []
    for graph in _children(memoryview(model), (_MODEL_GRAPH,)):
        weights = {
            bytes(v).decode("utf-8", "replace")  # type: ignore[arg-type]
            for tensor in _children(graph, (_GRAPH_INITIALIZER,))
            for n, w, v in _fields(tensor)
            if n == _TENSOR_NAME and w == 2
        }
        inputs += [i for i in map(_value_info, _children(graph, (_GRAPH_INPUT,))) if i.name not in weights]
        outputs += map(_value_info, _children(graph, (_GRAPH_OUTPUT,)))
    return inputs, outputs
