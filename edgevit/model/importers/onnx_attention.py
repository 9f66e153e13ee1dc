"""Matching multi-head self-attention in the shapes exporters produce.

From the block's normalised input `u`, the matcher takes the linear layers reading it (one fused
qkv linear, or separate q, k and v linears, MatMul + Add or Gemm), finds the two MatMuls they feed
through data movement and scalar scalings (scores = q @ k^T, then softmax @ v), the Softmax
between them, and the output projection. Which output channel of which linear is head h, channel
j of q, k or v is read from the layout traces (`onnx_trace`), so fused or separate projections,
Reshape/Transpose then Gather, Split or Slice, [B, H, N, d] or [B*H, N, d] batching all reduce to
the same tables. The scalings found on q, k and the scores (1/sqrt(d) after QK^T, on q before it,
or sqrt of it on q and k separately, as torch's scaled_dot_product_attention export does) must
multiply to 1/sqrt(head_dim); any other factor is folded into the q weights with a note.

The result is in edgevit's layout: qkv rows ordered [q | k | v] x heads x head_dim, the proj
input columns heads x head_dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgevit.model.importers.onnx_graph import OnnxGraph, OnnxPatternError, attribute, describe
from edgevit.model.importers.onnx_patterns import Linear, is_linear_start, match_linear
from edgevit.model.importers.onnx_trace import Trace, is_layout, layout_leaves, scale_factor, trace_back


@dataclass
class Attention:
    """A matched attention: qkv and proj in edgevit's layout, the proj output value, claimed nodes."""

    heads: int
    head_dim: int
    qkv: Linear
    proj: Linear
    output: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Heads:
    """Per operand: channel table [H, d] into the concatenated linear outputs, batch of each group."""

    table: np.ndarray
    batch_of_group: np.ndarray
    head_of_group: np.ndarray


def _fail(graph: OnnxGraph, node: onnx.NodeProto, what: str, expected: str) -> OnnxPatternError:
    return OnnxPatternError(f"{graph.source}: {describe(node)}: {what}: expected {expected}")


def match_attention(graph: OnnxGraph, u: str, what: str) -> Attention:
    """The attention reading the normalised tokens `u` [B, N, D], up to its output projection."""
    linears: list[Linear] = []
    for node in graph.data_consumers(u):
        if not is_linear_start(graph, node, u):
            raise _fail(graph, node, what, "the q/k/v (or fused qkv) linear layers reading the normalised tokens")
        linears.append(match_linear(graph, node, u, f"{what} q/k/v"))
    if not linears:
        raise OnnxPatternError(f"{graph.source}: {what}: nothing reads the normalised tokens {u!r}")
    offsets, start = {}, 0
    for lin in linears:
        offsets[lin.output] = start
        start += lin.out_features
    claimed = [n for lin in linears for n in lin.nodes]
    qk, pv, moved = _find_matmuls(graph, set(offsets), what)
    tq = trace_back(graph, qk.input[0], set(offsets), allow_scale=True)
    tk = trace_back(graph, qk.input[1], set(offsets), allow_scale=True)
    tv = trace_back(graph, pv.input[1], set(offsets), allow_scale=True)
    score_scale, softmax = _scores_to_softmax(graph, qk, what, claimed)
    to_pv = trace_back(graph, pv.input[0], softmax.output[0])
    tokens = graph.shape(qk.input[0])[-2]
    q = _heads(graph, tq, offsets, tokens, False, qk, what)
    k = _heads(graph, tk, offsets, tokens, True, qk, what)
    v = _heads(graph, tv, offsets, tokens, False, pv, what)
    if not (np.array_equal(q.batch_of_group, k.batch_of_group) and np.array_equal(q.batch_of_group, v.batch_of_group)):
        raise _fail(graph, qk, what, "q, k and v of the same image in every head")
    heads, head_dim = q.table.shape
    if k.table.shape != (heads, head_dim) or v.table.shape != (heads, head_dim):
        raise _fail(graph, pv, what, f"q, k and v with the same heads x head_dim ({heads} x {head_dim}); "
                                     f"k is {k.table.shape}, v is {v.table.shape}")
    notes: list[str] = []
    factor = tq.scale * tk.scale * score_scale * math.sqrt(head_dim)
    qkv = _qkv_linear(linears, q.table, k.table, v.table, factor, tv.scale)
    if abs(factor - 1.0) > 1e-6:
        notes.append(f"{what}: attention scores scaled by {factor:.6g} x 1/sqrt(head_dim); folded into the q weights")
    if abs(tv.scale - 1.0) > 1e-6:
        notes.append(f"{what}: v scaled by {tv.scale:.6g}; folded into the v weights")
    if any(lin.bias is None for lin in linears):
        notes.append(f"{what}: no q/k/v bias; zero bias used")
    proj, proj_nodes = _projection(graph, pv, q, heads, head_dim, tokens, what)
    claimed += moved + [qk, pv, softmax] + to_pv.nodes + proj_nodes
    return Attention(heads, head_dim, qkv, proj, proj.output, claimed, notes)


def _find_matmuls(graph: OnnxGraph, sources: set[str], what: str) -> tuple:
    """The scores MatMul (both operands moved from the linears) and the PV MatMul (one operand)."""
    reached, stack, moved = set(sources), list(sources), []
    ends: list[onnx.NodeProto] = []
    while stack:
        value = stack.pop()
        for node in graph.data_consumers(value):
            if is_layout(node) or scale_factor(graph, node, value) is not None:
                if node not in moved:
                    moved.append(node)
                    for out in node.output:
                        if out and graph.is_data(out) and out not in reached:
                            reached.add(out)
                            stack.append(out)
            elif node not in ends:
                ends.append(node)
    for node in ends:
        if node.op_type != "MatMul":
            raise _fail(graph, node, what, "q, k and v to be only reshaped, transposed, split or scaled "
                                           "before the attention MatMuls")
    qk = [n for n in ends if n.input[0] in reached and n.input[1] in reached]
    pv = [n for n in ends if n.input[0] not in reached and n.input[1] in reached]
    if len(qk) != 1 or len(pv) != 1 or len(ends) != 2:
        node = ends[0] if ends else graph.producer[next(iter(sources))]
        raise _fail(graph, node, what, "one MatMul q @ k^T and one MatMul softmax @ v "
                                       f"(found {len(ends)} MatMul(s) reading q/k/v)")
    return qk[0], pv[0], moved


def _scores_to_softmax(graph: OnnxGraph, qk: onnx.NodeProto, what: str, claimed: list) -> tuple[float, onnx.NodeProto]:
    scale, value = 1.0, qk.output[0]
    while True:
        node = graph.only_consumer(value)
        if node is None:
            readers = graph.data_consumers(value)
            raise _fail(graph, readers[0] if readers else qk, what, "the attention scores read by one node only")
        factor = scale_factor(graph, node, value)
        if factor is not None:
            scale *= factor
        elif node.op_type == "Softmax":
            rank = len(graph.shape(value))
            if attribute(node, "axis", -1) % rank != rank - 1:
                raise _fail(graph, node, what, "a Softmax over the keys (last axis)")
            return scale, node
        elif not is_layout(node) or graph.shape(node.output[0]) != graph.shape(value):
            raise _fail(graph, node, what, "the attention scores q @ k^T scaled by a constant, then a Softmax")
        claimed.append(node)
        value = node.output[0]


def _heads(graph: OnnxGraph, trace: Trace, offsets: dict[str, int], tokens: int, transposed: bool,
           matmul: onnx.NodeProto, what: str) -> _Heads:
    """Check an operand [..., N, d] (k^T: [..., d, N]) is per-image, per-head channels of the linears."""
    index = np.swapaxes(trace.index, -1, -2) if transposed else trace.index
    if index.ndim < 3 or index.shape[-2] != tokens:
        raise _fail(graph, matmul, what, f"operands shaped [batch, heads, tokens, head_dim] (got {list(trace.index.shape)})")
    width = graph.shape(trace.source)[-1]
    rows, channels = index // width, index % width
    groups = index.reshape(-1, tokens, index.shape[-1])
    rows = rows.reshape(groups.shape)
    channels = channels.reshape(groups.shape)
    images, positions = rows // tokens, rows % tokens
    per_token = np.arange(tokens)[None, :, None]
    if not (np.all(positions == per_token) and np.all(images == images[:, :1, :1])
            and np.all(channels == channels[:, :1, :])):
        raise _fail(graph, matmul, what, "each head to hold all tokens of one image and fixed channels of q/k/v")
    batch_of_group = images[:, 0, 0]
    head_of_group = np.zeros(len(groups), dtype=np.int64)
    tables = {}
    for g, b in enumerate(batch_of_group):
        head_of_group[g] = len(tables.setdefault(int(b), []))
        tables[int(b)].append(channels[g, 0] + offsets[trace.source])
    first = np.array(tables[min(tables)])
    if any(not np.array_equal(np.array(t), first) for t in tables.values()):
        raise _fail(graph, matmul, what, "the same head layout for every image")
    return _Heads(first, batch_of_group, head_of_group)


def _qkv_linear(linears: list[Linear], q: np.ndarray, k: np.ndarray, v: np.ndarray, q_factor: float,
                v_factor: float) -> Linear:
    """One [3A, D] linear in edgevit's row order from the matched q/k/v channel tables."""
    rows = np.concatenate([q.reshape(-1), k.reshape(-1), v.reshape(-1)])
    attn_dim = q.size
    bias = np.concatenate([lin.bias_or_zeros() for lin in linears])[rows]
    if len(linears) == 1 and linears[0].factor is not None:
        weight, factor = linears[0].weight[rows], linears[0].factor
    else:
        weight, factor = np.concatenate([lin.dense() for lin in linears])[rows], None
    weight, bias = weight.copy(), bias.copy()
    for part, scale in ((slice(0, attn_dim), q_factor), (slice(2 * attn_dim, 3 * attn_dim), v_factor)):
        if abs(scale - 1.0) > 1e-6:
            weight[part] *= np.float32(scale)
            bias[part] *= np.float32(scale)
    return Linear(weight, bias, "", [], factor)


def _projection(graph: OnnxGraph, pv: onnx.NodeProto, q: _Heads, heads: int, head_dim: int, tokens: int,
                what: str) -> tuple[Linear, list[onnx.NodeProto]]:
    """The output projection after the heads are merged, its input columns in edgevit's order."""
    out = pv.output[0]
    leaves = layout_leaves(graph, out)
    if len(leaves) != 1 or len(leaves[0][1]) != 1 or not is_linear_start(graph, leaves[0][1][0], leaves[0][0]):
        node = next((n for _, ns in leaves for n in ns), pv)
        raise _fail(graph, node, what, "the heads merged back to [batch, tokens, heads*head_dim] and the "
                                       "output projection (MatMul or Gemm by a constant weight)")
    merged, (reader,) = leaves[0]
    trace = trace_back(graph, merged, out)
    shape, width = graph.shape(out), graph.shape(merged)[-1]
    groups = int(np.prod(shape[:-2]))
    if shape[-2:] != (tokens, head_dim):
        raise _fail(graph, pv, what, f"softmax @ v shaped [..., {tokens}, {head_dim}] (got {list(shape)})")
    if width != heads * head_dim:
        raise _fail(graph, reader, what, f"the projection to read heads*head_dim = {heads * head_dim} channels (reads {width})")
    index = trace.index.reshape(-1, width)
    group, position, channel = index // (tokens * head_dim), (index // head_dim) % tokens, index % head_dim
    rows = np.arange(index.shape[0])[:, None]
    head = q.head_of_group[group]
    if (groups != len(q.head_of_group) or not np.all(position == rows % tokens)
            or not np.all(q.batch_of_group[group] == rows // tokens)
            or not np.all(head == head[:1]) or not np.all(channel == channel[:1])):
        raise _fail(graph, reader, what, "the projection to read every head's output of its own token and image")
    order = head[0] * head_dim + channel[0]  # edgevit column of each source column
    if sorted(order.tolist()) != list(range(width)):
        raise _fail(graph, reader, what, "every head channel exactly once in the merged heads")
    lin = match_linear(graph, reader, merged, f"{what} output projection")
    inverse = np.argsort(order)
    if lin.factor is not None:
        lin.factor = np.ascontiguousarray(lin.factor[:, inverse])
    else:
        lin.weight = np.ascontiguousarray(lin.weight[:, inverse])
    return lin, trace.nodes + lin.nodes
