"""Layout tracing: where every element of a value comes from, through pure data-movement ops.

Exporters spread a ViT's tensors over chains of Reshape / Transpose / Gather / Slice / Split /
Squeeze ... whose exact form differs between exporters and versions. Instead of matching those
chains node by node, `trace_back` walks from a value back to a source value through such ops
(and, where the caller allows it, multiplications or divisions by a scalar constant, which
commute with data movement) and replays the chain on an index array: the result has the value's
shape and holds, for each element, the flat index of the source element it copies. Callers read
the structure they need (which head and channel, which token) from that map. Every trace is
checked against the probe tensors, so a mistake here cannot go unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgevit.model.importers.onnx_graph import OnnxGraph, OnnxPatternError, attribute, describe

LAYOUT_OPS = ("Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Gather", "Slice",
              "Split", "Cast", "Dropout")
SCALE_OPS = ("Mul", "Div")


@dataclass
class Trace:
    """`index` (shape of the traced value): flat indices into `source`; `scale`: the product of the
    scalar factors met on the way; `nodes`: the nodes walked (source side first)."""

    source: str
    index: np.ndarray
    scale: float = 1.0
    nodes: list[onnx.NodeProto] = field(default_factory=list)


def is_layout(node: onnx.NodeProto) -> bool:
    """True for ops that only move or select elements (Cast only between float types)."""
    if node.op_type == "Cast":
        return attribute(node, "to") == onnx.TensorProto.FLOAT
    return node.op_type in LAYOUT_OPS


def scale_factor(graph: OnnxGraph, node: onnx.NodeProto, data_input: str) -> float | None:
    """The factor a Mul/Div by a scalar constant applies to `data_input`, else None."""
    if node.op_type not in SCALE_OPS or len(node.input) != 2:
        return None
    other = graph.other_input(node, data_input)
    value = graph.scalar(other)
    if value is None or graph.is_data(other):
        return None
    if node.op_type == "Mul":
        return value
    if node.input[0] == data_input and value != 0.0:  # x / c
        return 1.0 / value
    return None


def layout_consumers(graph: OnnxGraph, name: str) -> list[onnx.NodeProto]:
    """The data consumers of `name` that are layout ops."""
    return [n for n in graph.data_consumers(name) if is_layout(n)]


def follow_layout(graph: OnnxGraph, name: str) -> str:
    """Walk forward from `name` while its only data consumer is a layout op; the last value reached."""
    while True:
        node = graph.only_consumer(name)
        if node is None or not is_layout(node):
            return name
        name = node.output[0]


def layout_leaves(graph: OnnxGraph, name: str) -> list[tuple[str, list[onnx.NodeProto]]]:
    """Values reached from `name` through trees of layout ops, with the non-layout nodes reading them."""
    leaves, stack = [], [name]
    while stack:
        value = stack.pop()
        readers = graph.data_consumers(value)
        others = [n for n in readers if not is_layout(n)]
        if others or not readers:
            leaves.append((value, others))
        for node in readers:
            if is_layout(node):
                stack.extend(o for o in node.output if o and graph.is_data(o))
    return leaves


def first_compute(graph: OnnxGraph, name: str) -> onnx.NodeProto | None:
    """For messages: the first node reading `name` (looking through layout ops) that is not a layout op,
    preferring one that is not an Add (residual Adds read the token stream everywhere)."""
    found = [n for _, readers in layout_leaves(graph, name) for n in readers]
    found += graph.data_consumers(name)
    found.sort(key=lambda n: n.op_type == "Add")
    return found[0] if found else None


def trace_back(graph: OnnxGraph, name: str, sources: set[str] | str, allow_scale: bool = False) -> Trace:
    """Trace value `name` back to one of `sources` through layout ops (and scalar scalings if allowed).

    Raises OnnxPatternError naming the first node on the way that is neither.
    """
    sources = {sources} if isinstance(sources, str) else sources
    steps: list[tuple[onnx.NodeProto, str]] = []
    scale, value = 1.0, name
    while value not in sources:
        node = graph.producer.get(value)
        if node is None:
            raise OnnxPatternError(f"{graph.source}: value {value!r} is a graph input; expected it to come "
                                   f"from {_names(sources)} by data movement only")
        data = graph.data_inputs(node)
        factor = scale_factor(graph, node, data[0]) if allow_scale and len(data) == 1 else None
        if factor is not None:
            scale *= factor
        elif not is_layout(node) or len(data) != 1 or data[0] != node.input[0]:
            what = "data movement or a scalar scaling" if allow_scale else "data movement"
            raise OnnxPatternError(f"{graph.source}: {describe(node)}: expected {what} "
                                   f"(Reshape, Transpose, Gather, Slice, ...) between {_names(sources)} and {name!r}")
        steps.append((node, value))
        value = data[0]
    steps.reverse()
    index = np.arange(int(np.prod(graph.shape(value)))).reshape(graph.shape(value))
    for node, out in steps:
        if node.op_type not in SCALE_OPS:
            index = _replay(graph, node, out, index)
    trace = Trace(value, index, scale, [n for n, _ in steps])
    _check(graph, trace, name)
    return trace


def _replay(graph: OnnxGraph, node: onnx.NodeProto, out: str, index: np.ndarray) -> np.ndarray:
    op, want = node.op_type, graph.shape(out)
    if op == "Transpose":
        perm = attribute(node, "perm") or list(range(index.ndim))[::-1]
        index = np.transpose(index, perm)
    elif op == "Gather":
        axis = attribute(node, "axis", 0)
        picks = graph.const(node.input[1])
        index = np.take(index, np.where(picks < 0, picks + index.shape[axis], picks), axis=axis)
    elif op == "Slice":
        index = _slice(graph, node, index)
    elif op == "Split":
        axis = attribute(node, "axis", 0) % index.ndim
        position = list(node.output).index(out)
        start = sum(graph.shape(o)[axis] for o in node.output[:position])
        index = np.take(index, np.arange(start, start + want[axis]), axis=axis)
    elif op not in ("Identity", "Cast", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze"):
        raise OnnxPatternError(f"{graph.source}: {describe(node)}: not a data-movement op")
    if index.size != int(np.prod(want)):
        raise OnnxPatternError(f"{graph.source}: {describe(node)}: could not follow its data movement "
                               f"({list(index.shape)} -> {list(want)})")
    return index.reshape(want)


def _slice(graph: OnnxGraph, node: onnx.NodeProto, index: np.ndarray) -> np.ndarray:
    inputs = list(node.input) + [""] * (5 - len(node.input))
    starts, ends = graph.const(inputs[1]), graph.const(inputs[2])
    if starts is None or ends is None:
        raise OnnxPatternError(f"{graph.source}: {describe(node)}: slice bounds must be constant")
    axes = graph.const(inputs[3]) if inputs[3] else np.arange(len(starts))
    steps = graph.const(inputs[4]) if inputs[4] else np.ones(len(starts), dtype=np.int64)
    region = [slice(None)] * index.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        region[int(axis) % index.ndim] = slice(int(start), int(end), int(step))
    return index[tuple(region)]


def _check(graph: OnnxGraph, trace: Trace, name: str) -> None:
    source = graph.values[trace.source].reshape(-1)
    expected = graph.values[name]
    got = source[trace.index] * np.float32(trace.scale)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-6 * (np.abs(expected).max() + 1e-30)):
        raise OnnxPatternError(f"{graph.source}: the data movement from {trace.source!r} to {name!r} "
                               f"(through {', '.join(describe(n) for n in trace.nodes)}) is not understood")


def _names(sources: set[str]) -> str:
    return " or ".join(repr(s) for s in sorted(sources))
