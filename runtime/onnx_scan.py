"""Find external-data references in a serialized ONNX model without the ``onnx`` package.

onnxruntime resolves external data of a model loaded from bytes against the working
directory, so a bundle could make it read files that are not part of the bundle. The
runtime keeps its dependencies light, so this walks the protobuf wire format along the
schema paths that can hold a tensor (GUIDE §2: refuse paths outside the bundle; the runtime
refuses external data altogether and names the path it found).
"""

from __future__ import annotations

from collections.abc import Iterator

# Field numbers from onnx.proto, checked against the onnx package's descriptors in tests.
_MODEL_GRAPH, _MODEL_TRAINING_INFO, _MODEL_FUNCTIONS = 7, 20, 25
_TRAINING_GRAPHS = (1, 2)
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
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
