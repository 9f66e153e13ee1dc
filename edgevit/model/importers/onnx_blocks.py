"""The walk from the image input to the last block: patch embedding, prefix tokens, positions, blocks.

Patch embedding: a `Conv` with kernel == stride == patch size (no padding, dilation, groups)
whose output is flattened to [B, N, D] in row-major patch order, or the image moved into patches
by Reshape/Transpose (any order of channel and in-patch position, read from the layout trace)
and a linear layer, which is rewritten as the equivalent conv weight. Then, in either order: a
`Concat` in front of the patches of constant tokens (class token, then distillation token;
exporters broadcast them with `Expand`) and `Add`s of constant position embeddings (on all
tokens, or on the patches only: the prefix tokens then get zero positions, which is exact).

Each block is pre-norm: x + attention(norm1(x)), then x + mlp(norm2(x)) with MLP = linear, GELU,
linear. Anything else reading a block's input or output is refused naming that node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from edgevit.model.importers.onnx_attention import Attention, match_attention
from edgevit.model.importers.onnx_graph import OnnxGraph, OnnxPatternError, attribute, describe
from edgevit.model.importers.onnx_patterns import (Activation, LayerNorm, Linear, is_linear_start, layernorm_readers,
                                                   match_activation, match_layernorm, match_linear)
from edgevit.model.importers.onnx_trace import follow_layout, is_layout, layout_leaves, trace_back


@dataclass
class Embedding:
    """Patch embedding as conv weight [D, C, p, p] and bias [D], prefix tokens [P, D], positions [P + N, D]."""

    weight: np.ndarray
    bias: np.ndarray
    patch: int
    prefix: np.ndarray
    pos: np.ndarray
    output: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Block:
    """One matched pre-norm block and its output value."""

    norm1: LayerNorm
    attn: Attention
    norm2: LayerNorm
    fc1: Linear
    act: Activation
    fc2: Linear
    output: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)


def _fail(graph: OnnxGraph, node: onnx.NodeProto, expected: str) -> OnnxPatternError:
    return OnnxPatternError(f"{graph.source}: {describe(node)}: expected {expected}")


def match_embedding(graph: OnnxGraph) -> Embedding:
    """Patch embedding, class/distillation tokens and position embeddings, from the image input."""
    image = graph.input_name
    readers = graph.data_consumers(image)
    if len(readers) != 1:
        raise _fail(graph, readers[1] if readers else graph.nodes[0],
                    f"the image {image!r} to be read by the patch embedding only (a Conv, or Reshape/Transpose into patches)")
    if readers[0].op_type == "Conv":
        emb = _conv_patches(graph, readers[0])
    elif is_layout(readers[0]):
        emb = _linear_patches(graph)
    else:
        raise _fail(graph, readers[0], "the patch embedding: a Conv with stride = kernel, or Reshape/Transpose into patches")
    _prefix_and_positions(graph, emb)
    return emb


def _conv_patches(graph: OnnxGraph, conv: onnx.NodeProto) -> Embedding:
    weight = graph.const(conv.input[1])
    if weight is None or weight.ndim != 4:
        raise _fail(graph, conv, "a patch-embedding Conv with a constant 4-D weight")
    kernel = list(weight.shape[2:])
    pads, dilations = attribute(conv, "pads", [0] * 4), attribute(conv, "dilations", [1, 1])
    if (kernel[0] != kernel[1] or list(attribute(conv, "strides", [1, 1])) != kernel or any(pads)
            or list(dilations) != [1, 1] or attribute(conv, "group", 1) != 1
            or attribute(conv, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")):
        raise _fail(graph, conv, f"a patch-embedding Conv with a square kernel, stride = kernel, no padding, "
                                 f"dilation or groups (kernel {kernel}, strides {attribute(conv, 'strides')}, pads {pads})")
    channels, patch = weight.shape[0], kernel[0]
    notes = []
    bias = graph.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if bias is None:
        bias = np.zeros(channels, np.float32)
        notes.append("patch embedding has no bias; zero bias used")
    out = conv.output[0]
    tokens = follow_layout(graph, out)
    trace = trace_back(graph, tokens, out)
    b, d, g, _ = graph.shape(out)
    n = np.arange(g * g)
    expected = ((np.arange(b)[:, None, None] * d + np.arange(d)[None, None, :]) * g + (n // g)[None, :, None]) * g \
        + (n % g)[None, :, None]
    if trace.index.shape != expected.shape or not np.array_equal(trace.index, expected):
        node = trace.nodes[-1] if trace.nodes else conv
        raise _fail(graph, node, f"the Conv output flattened to [batch, patches, {d}] in row-major patch order "
                                 f"(got {list(trace.index.shape)})")
    return Embedding(weight.astype(np.float32), bias.reshape(-1).astype(np.float32), patch, np.zeros((0, d), np.float32),
                     np.zeros((0, d), np.float32), tokens, [conv] + trace.nodes, notes)


def _linear_patches(graph: OnnxGraph) -> Embedding:
    image = graph.input_name
    leaves = layout_leaves(graph, image)
    if len(leaves) != 1 or len(leaves[0][1]) != 1 or not is_linear_start(graph, leaves[0][1][0], leaves[0][0]):
        node = next((n for _, ns in leaves for n in ns), graph.data_consumers(image)[0])
        raise _fail(graph, node, "the image moved into patches [batch, patches, C*p*p] read by one linear layer")
    patches, (reader,) = leaves[0]
    trace = trace_back(graph, patches, image)
    lin = match_linear(graph, reader, patches, "patch embedding")
    batch, channels, height, width = graph.input_shape
    if trace.index.ndim != 3:
        raise _fail(graph, reader, f"patches shaped [batch, patches, C*p*p] (got {list(trace.index.shape)})")
    _, count, k = trace.index.shape
    grid = int(round(count**0.5))
    patch = height // grid if grid else 0
    if grid * grid != count or grid * patch != height or k != channels * patch * patch:
        raise _fail(graph, reader, f"{count} patches of {k} values to tile the {height} x {width} image")
    b, c, y, x = np.unravel_index(trace.index, graph.input_shape)
    n = np.arange(count)[None, :, None]
    ok = (np.all(b == np.arange(batch)[:, None, None]) and np.all(y // patch == n // grid)
          and np.all(x // patch == n % grid))
    where = (c * patch + y % patch) * patch + x % patch
    if not ok or not np.all(where == where[:1, :1]) or sorted(where[0, 0].tolist()) != list(range(k)):
        raise _fail(graph, reader, "each patch vector to hold exactly the pixels of its own patch")
    dense = lin.dense()
    weight = np.zeros((dense.shape[0], k), np.float32)
    weight[:, where[0, 0]] = dense
    return Embedding(weight.reshape(-1, channels, patch, patch), lin.bias_or_zeros(), patch,
                     np.zeros((0, dense.shape[0]), np.float32), np.zeros((0, dense.shape[0]), np.float32),
                     lin.output, trace.nodes + lin.nodes,
                     ["patch embedding given as patches + MatMul; imported as the equivalent Conv"])


def _batch_constant(graph: OnnxGraph, name: str, node: onnx.NodeProto, what: str) -> np.ndarray:
    """A constant [1 or B, T, D] that is the same for every image, as [T, D]."""
    value = graph.const(name)
    if value is not None and value.ndim == 2:
        value = value[None]
    if value is None or value.ndim != 3 or not np.all(value == value[:1]):
        raise _fail(graph, node, f"{what}: a constant [1, tokens, dim] tensor (the same for every image)")
    return value[0].astype(np.float32)


def _prefix_and_positions(graph: OnnxGraph, emb: Embedding) -> None:
    """Constant tokens concatenated in front and position embeddings added, in the order they come.

    Each position embedding covers the last tokens at the point it is added (the patches, or all
    tokens); several are summed (a note), one alone is copied bit for bit, uncovered tokens get zeros.
    """
    value, dim = emb.output, emb.weight.shape[0]
    prefix = np.zeros((0, dim), np.float32)
    added: list[np.ndarray] = []
    while (node := graph.only_consumer(value)) is not None:
        if node.op_type == "Concat":
            rank = len(graph.shape(value))
            if attribute(node, "axis") % rank != 1 or node.input[-1] != value or len(graph.data_inputs(node)) != 1:
                raise _fail(graph, node, "constant class/distillation tokens concatenated in front of the patches (axis 1)")
            tokens = [_batch_constant(graph, i, node, "class/distillation token") for i in node.input[:-1]]
            prefix = np.concatenate(tokens + [prefix])
        elif node.op_type == "Add" and graph.const(graph.other_input(node, value)) is not None:
            pos = _batch_constant(graph, graph.other_input(node, value), node, "position embedding")
            if pos.shape != graph.shape(value)[1:]:
                raise _fail(graph, node, f"a position embedding of shape {list(graph.shape(value)[1:])} (got {list(pos.shape)})")
            added.append(pos)
        else:
            break
        emb.nodes.append(node)
        value = node.output[0]
    pos = np.zeros((prefix.shape[0] + graph.shape(emb.output)[1], dim), np.float32)
    for part in added:
        pos[-part.shape[0]:] = part if len(added) == 1 else pos[-part.shape[0]:] + part
    if len(added) > 1:
        emb.notes.append(f"{len(added)} position embeddings added one after the other summed into one")
    if not added:
        emb.notes.append("no position embedding found; zero positions used")
    elif added[0].shape[0] < pos.shape[0] and len(added) == 1:
        emb.notes.append("position embedding on the patches only; the class/distillation tokens get zero positions (exact)")
    emb.prefix, emb.pos, emb.output = prefix, pos, value


def _residual(graph: OnnxGraph, x: str, branch: str, what: str) -> onnx.NodeProto:
    node = graph.only_consumer(branch)
    readers = graph.data_consumers(branch)
    if node is None or node.op_type != "Add" or set(node.input) != {x, branch}:
        bad = node or (readers[0] if readers else graph.producer[branch])
        raise _fail(graph, bad, f"the residual Add of {what}'s output and the block input {x!r}")
    return node


def _check_readers(graph: OnnxGraph, x: str, allowed: list[onnx.NodeProto], what: str) -> None:
    for node in graph.data_consumers(x):
        if all(node is not a for a in allowed):
            raise _fail(graph, node, f"only {what} (its LayerNorm and residual Add) to read {x!r}")


def is_block_start(graph: OnnxGraph, x: str) -> bool:
    """True when `x` is read by something besides a LayerNorm (the residual Add): a block begins.

    After the last block only the final norm or the pooling reads the tokens.
    """
    starts = layernorm_readers(graph, x)
    readers = graph.data_consumers(x)
    return len(readers) > len(starts) and (bool(starts) or len(readers) > 1)


def match_block(graph: OnnxGraph, x: str, index: int) -> Block:
    """Block `index` reading the token stream `x`: norm1, attention, residual, norm2, MLP, residual."""
    what = f"blocks[{index}]"
    norm1 = match_layernorm(graph, x, f"{what} norm1")
    attn = match_attention(graph, norm1.output, f"{what} attention")
    add1 = _residual(graph, x, attn.output, f"{what} attention")
    _check_readers(graph, x, norm1.nodes + [add1], what)
    mid = add1.output[0]
    norm2 = match_layernorm(graph, mid, f"{what} norm2")
    readers = graph.data_consumers(norm2.output)
    if len(readers) != 1:
        raise _fail(graph, readers[-1] if readers else graph.producer[norm2.output],
                    f"{what} MLP: one linear layer (fc1) reading norm2's output")
    fc1 = match_linear(graph, readers[0], norm2.output, f"{what} mlp fc1")
    act = match_activation(graph, fc1.output, f"{what} mlp")
    readers = graph.data_consumers(act.output)
    if len(readers) != 1:
        raise _fail(graph, readers[-1] if readers else act.nodes[-1], f"{what} MLP: one linear layer (fc2) after the GELU")
    fc2 = match_linear(graph, readers[0], act.output, f"{what} mlp fc2")
    add2 = _residual(graph, mid, fc2.output, f"{what} MLP")
    _check_readers(graph, mid, norm2.nodes + [add2], f"{what} (after attention)")
    nodes = norm1.nodes + attn.nodes + [add1] + norm2.nodes + fc1.nodes + act.nodes + fc2.nodes + [add2]
    return Block(norm1, attn, norm2, fc1, act, fc2, add2.output[0], nodes)
