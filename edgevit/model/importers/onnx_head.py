"""The end of the graph: final LayerNorm, pooling and classifier head(s) after the last block.

Accepted forms (x: the last block's output [B, N, D]):
- norm then select: LayerNorm(x), then token 0 (class token; Gather or Slice) -> linear (HF ViT,
  timm); with a distillation token also token 1 -> a second linear, the two averaged (HF DeiT
  with teacher: pool "cls_dist"), or token 0 only (HF DeiT: pool "cls" with a distillation token);
- select then norm: token(s) selected, LayerNorm, linear(s) (edgevit's own export);
- mean then norm: ReduceMean over the tokens, LayerNorm, linear (edgevit / timm `fc_norm`).
LayerNorm then mean is refused: it is not what edgevit's mean pooling computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgevit.model.importers.onnx_graph import OnnxGraph, OnnxPatternError, attribute, describe
from edgevit.model.importers.onnx_patterns import LayerNorm, Linear, layernorm_readers, match_layernorm, match_linear
from edgevit.model.importers.onnx_trace import first_compute, follow_layout, layout_leaves, scale_factor, trace_back


@dataclass
class Head:
    """Final norm, the pooled token of each head (None: mean pooling), the head linears, claimed nodes."""

    norm: LayerNorm
    tokens: list[int | None]
    linears: list[Linear]
    nodes: list[onnx.NodeProto] = field(default_factory=list)


def _fail(graph: OnnxGraph, node: onnx.NodeProto, expected: str) -> OnnxPatternError:
    return OnnxPatternError(f"{graph.source}: {describe(node)}: expected {expected}")


def _reduces_tokens(graph: OnnxGraph, node: onnx.NodeProto, x: str) -> bool:
    if node.op_type != "ReduceMean" or node.input[0] != x:
        return False
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = graph.const(node.input[1])
    rank = len(graph.shape(x))
    return axes is not None and [int(a) % rank for a in np.atleast_1d(axes)] == [1]


def _selected_tokens(graph: OnnxGraph, leaf: str, x: str, reader: onnx.NodeProto) -> list[int]:
    """The token positions a value [B, D] or [B, k, D] copies from x [B, N, D], whole rows per image."""
    trace = trace_back(graph, leaf, x)
    batch, count, dim = graph.shape(x)
    index = trace.index.reshape(batch, -1, dim) if trace.index.size % (batch * dim) == 0 else None
    if index is None or index.shape[0] != trace.index.shape[0]:
        raise _fail(graph, reader, f"whole tokens [batch, dim] selected from {x!r}")
    b, n, d = np.unravel_index(index, (batch, count, dim))
    if not (np.all(b == np.arange(batch)[:, None, None]) and np.all(d == np.arange(dim)) and np.all(n == n[:1, :, :1])):
        raise _fail(graph, reader, f"whole tokens of each image selected from {x!r}")
    return [int(t) for t in n[0, :, 0]]


def match_head(graph: OnnxGraph, x: str) -> Head:
    """Final norm, pooling and head(s) reading the last block's output `x`."""
    nodes: list[onnx.NodeProto] = []
    readers = graph.data_consumers(x)
    starts = layernorm_readers(graph, x)
    norm: LayerNorm | None = None
    if starts and len(starts) == len(readers):
        norm = match_layernorm(graph, x, "final norm")
        nodes += norm.nodes
        source = norm.output
    else:
        source = x
    features: list[tuple[str, int | None, LayerNorm | None]] = []  # value [B, D], token, its norm
    for node in graph.data_consumers(source):
        if _reduces_tokens(graph, node, source):
            if norm is not None:
                raise _fail(graph, node, "mean pooling before the final LayerNorm (edgevit normalises the mean "
                                         "of the tokens; a LayerNorm before the mean is not the same model)")
            nodes.append(node)
            value = follow_layout(graph, node.output[0])
            nodes += trace_back(graph, value, node.output[0]).nodes
            features.append((value, None, None))
    for leaf, leaf_readers in layout_leaves(graph, source):
        if leaf == source:
            bad = [n for n in leaf_readers if not _reduces_tokens(graph, n, source)]
            if bad:
                raise _fail(graph, bad[0], "the final LayerNorm, or the class token / mean of the tokens, after the last block")
            continue
        reader = leaf_readers[0] if leaf_readers else graph.producer[leaf]
        tokens = _selected_tokens(graph, leaf, source, reader)
        nodes += trace_back(graph, leaf, source).nodes
        if len(graph.shape(leaf)) == 2:
            features.append((leaf, tokens[0], None))
            continue
        if norm is not None or len(layernorm_readers(graph, leaf)) != len(leaf_readers):
            raise _fail(graph, reader, "one token per head (a [batch, dim] selection), or the final LayerNorm "
                                       "of the selected tokens")
        inner = match_layernorm(graph, leaf, "final norm")
        nodes += inner.nodes
        for sub, sub_readers in layout_leaves(graph, inner.output):
            picks = _selected_tokens(graph, sub, inner.output, sub_readers[0] if sub_readers else reader)
            nodes += trace_back(graph, sub, inner.output).nodes
            if len(graph.shape(sub)) != 2:
                raise _fail(graph, sub_readers[0] if sub_readers else reader, "one token per head (a [batch, dim] selection)")
            features.append((sub, tokens[picks[0]], inner))
    if not features:
        raise _fail(graph, first_compute(graph, x) or graph.producer[x],
                    "the final LayerNorm and the class token (or the mean of the tokens) after the last block")
    norms, linears, tokens = [], [], []
    for value, token, feature_norm in sorted(features, key=lambda f: -1 if f[1] is None else f[1]):
        if feature_norm is None and norm is None:
            feature_norm = match_layernorm(graph, value, "final norm (after pooling)")
            nodes += feature_norm.nodes
            value = feature_norm.output
        norms.append(feature_norm or norm)
        value_readers = graph.data_consumers(value)
        if len(value_readers) != 1:
            raise _fail(graph, value_readers[-1] if value_readers else graph.producer[value],
                        "one classifier linear layer reading the pooled, normalised features")
        lin = match_linear(graph, value_readers[0], value, "classifier head")
        nodes += lin.nodes
        linears.append(lin)
        tokens.append(token)
    for other in norms[1:]:
        if not (np.array_equal(other.weight, norms[0].weight) and np.array_equal(other.bias, norms[0].bias)
                and other.eps == norms[0].eps):
            raise _fail(graph, other.nodes[0], "the same final LayerNorm for both heads")
    nodes += _logits(graph, [lin.output for lin in linears])
    return Head(norms[0], tokens, linears, nodes)


def _logits(graph: OnnxGraph, outputs: list[str]) -> list[onnx.NodeProto]:
    """Check the head outputs reach the graph's logits (two heads: averaged); the nodes used."""
    nodes: list[onnx.NodeProto] = []
    if len(outputs) == 2:
        add = graph.only_consumer(outputs[0])
        if add is None or add.op_type != "Add" or set(add.input) != set(outputs):
            bad = add or graph.producer[outputs[0]]
            raise _fail(graph, bad, "the two heads' logits added, then halved (DeiT's distilled inference)")
        half = graph.only_consumer(add.output[0])
        if half is None or scale_factor(graph, half, add.output[0]) != 0.5:
            raise _fail(graph, half or add, "the sum of the two heads' logits halved (Div by 2 or Mul by 0.5)")
        nodes += [add, half]
        value = half.output[0]
    elif len(outputs) == 1:
        value = outputs[0]
    else:
        raise OnnxPatternError(f"{graph.source}: expected one classifier head (or two averaged, DeiT), "
                               f"found {len(outputs)}")
    end = follow_layout(graph, value)
    if end != value:
        nodes += trace_back(graph, end, value).nodes
    if end != graph.output_name or graph.shape(end) != graph.shape(value):
        node = graph.producer[end]
        raise _fail(graph, node, f"the head's logits to be the graph output {graph.output_name!r}")
    return nodes
