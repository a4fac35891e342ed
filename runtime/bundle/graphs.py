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
_MODEL_GRAPH, _MODEL_TRAINING_INFO, _MODEL_FUNCTIONS = 7, 20, 25
_TRAINING_GRAPHS = (1, 2)
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
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


def _sparse(data: memoryview) -> Iterator[str]:
    for tensor in _children(data, (_SPARSE_VALUES, _SPARSE_INDICES)):
        yield from _tensor(tensor)


def _nodes(nodes: Iterator[memoryview], depth: int) -> Iterator[str]:
    for node in nodes:
        for attribute in _children(node, (_NODE_ATTRIBUTE,)):
            for number, wire, value in _fields(attribute):
                if wire != 2:
                    continue
                if number in (_ATTR_TENSOR, _ATTR_TENSORS):
                    yield from _tensor(value)  # type: ignore[arg-type]
                elif number in (_ATTR_GRAPH, _ATTR_GRAPHS):
                    yield from _graph(value, depth + 1)  # type: ignore[arg-type]
                elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
                    yield from _sparse(value)  # type: ignore[arg-type]


def _graph(data: memoryview, depth: int = 0) -> Iterator[str]:
    if depth > MAX_DEPTH:
        raise MalformedModel(f"subgraphs nested more than {MAX_DEPTH} levels deep")
    for tensor in _children(data, (_GRAPH_INITIALIZER,)):
        yield from _tensor(tensor)
    for sparse in _children(data, (_GRAPH_SPARSE_INITIALIZER,)):
        yield from _sparse(sparse)
    yield from _nodes(_children(data, (_GRAPH_NODE,)), depth)


def external_data_locations(model: bytes) -> list[str]:
    """Locations of every tensor stored as external data in a serialized ModelProto.

    Raises
    ------
    MalformedModel
        If the bytes are not a well-formed protobuf message.
    """
    found: list[str] = []
    # Slices of a memoryview share its memory: slicing the bytes would copy every weight tensor
    # once per enclosing message (~0.15 s for a paper-size decoder).
    view = memoryview(model)
    for graph in _children(view, (_MODEL_GRAPH,)):
        found += _graph(graph)
    for info in _children(view, (_MODEL_TRAINING_INFO,)):
        for graph in _children(info, _TRAINING_GRAPHS):
            found += _graph(graph)
    for function in _children(view, (_MODEL_FUNCTIONS,)):
        found += _nodes(_children(function, (_FUNCTION_NODE,)), 0)
    return found


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
