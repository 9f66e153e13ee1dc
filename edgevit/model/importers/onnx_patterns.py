"""Matchers for the small patterns of a ViT graph: linear layers, LayerNorm and the GELU.

Each matcher starts at a data value, checks the nodes that read it and returns what it found
(weights in torch layout, the output value, the nodes it claimed) or raises OnnxPatternError
naming the node that breaks the pattern and what was expected there. Weights are read from the
graph's constants (never from initializer names, which exporters choose freely).

- linear: `Gemm`, or `MatMul` by a constant [in, out] matrix with an optional `Add` of a constant
  bias; two constant MatMuls in a row are a low-rank factorisation (kept as such).
- LayerNorm over the last axis: the fused `LayerNormalization` (opset 17+) or the decomposition
  older opsets produce (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul gamma, Add beta).
- activation: the elementwise nodes between the MLP's two linears are evaluated as a function on a
  grid and compared with GELU: exact (erf) GELU in any arrangement (Div or Mul by sqrt 2, Erf, the
  factors 0.5 and x in any order, or the fused `Gelu` of opset 20) is accepted; the tanh
  approximation is accepted with a note (the onnxruntime check then decides); anything else
  (ReLU, quick-GELU, ...) is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from edgevit.model.importers.onnx_graph import OnnxGraph, OnnxPatternError, attribute, describe
from edgevit.model.importers.onnx_trace import first_compute


@dataclass
class Linear:
    """y = x @ weight.T + bias; weight [out, in] (torch layout), or `factor` [rank, in] then weight [out, rank]."""

    weight: np.ndarray
    bias: np.ndarray | None
    output: str
    nodes: list[onnx.NodeProto]
    factor: np.ndarray | None = None
    layer_scale: bool = False

    @property
    def out_features(self) -> int:
        """Output width."""
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        """Input width."""
        return (self.factor if self.factor is not None else self.weight).shape[1]

    def dense(self) -> np.ndarray:
        """The [out, in] matrix applied (weight @ factor for a factorised linear)."""
        return self.weight if self.factor is None else self.weight @ self.factor

    def bias_or_zeros(self) -> np.ndarray:
        """The bias, or zeros [out] when the linear has none."""
        return self.bias if self.bias is not None else np.zeros(self.out_features, dtype=np.float32)


@dataclass
class LayerNorm:
    """LayerNorm over the last axis: output value, gamma/beta [D], eps, claimed nodes."""

    output: str
    weight: np.ndarray
    bias: np.ndarray
    eps: float
    nodes: list[onnx.NodeProto] = field(default_factory=list)


def _fail(graph: OnnxGraph, node: onnx.NodeProto, expected: str) -> OnnxPatternError:
    return OnnxPatternError(f"{graph.source}: {describe(node)}: expected {expected}")


# ---- linear --------------------------------------------------------------------------------
def is_linear_start(graph: OnnxGraph, node: onnx.NodeProto, x: str) -> bool:
    """True if `node` reads `x` as the data operand of a MatMul/Gemm with a constant 2-D weight."""
    if node.op_type not in ("MatMul", "Gemm") or node.input[0] != x:
        return False
    weight = graph.const(node.input[1])
    return weight is not None and weight.ndim == 2


def match_linear(graph: OnnxGraph, node: onnx.NodeProto, x: str, what: str) -> Linear:
    """The linear layer starting at `node` (which reads `x`); `what` names it in errors."""
    if not is_linear_start(graph, node, x):
        raise _fail(graph, node, f"{what}: a MatMul or Gemm by a constant weight matrix")
    w = graph.const(node.input[1]).astype(np.float32)
    if node.op_type == "Gemm":  # y = alpha * x @ B(^T) + beta * C
        if attribute(node, "transA", 0):
            raise _fail(graph, node, f"{what}: a Gemm without transA")
        weight = (w if attribute(node, "transB", 0) else w.T) * np.float32(attribute(node, "alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = graph.const(node.input[2])
            if c is None or c.size != weight.shape[0]:
                raise _fail(graph, node, f"{what}: a Gemm bias of {weight.shape[0]} constants")
            bias = c.reshape(-1).astype(np.float32) * np.float32(attribute(node, "beta", 1.0))
        lin = Linear(np.ascontiguousarray(weight), bias, node.output[0], [node])
        nxt = graph.only_consumer(lin.output)
        if nxt is not None and nxt.op_type == "Mul":
            _fold_layer_scale(graph, lin, nxt)
        return lin
    nodes, out, factor, weight = [node], node.output[0], None, np.ascontiguousarray(w.T)
    nxt = graph.only_consumer(out)
    if nxt is not None and is_linear_start(graph, nxt, out) and nxt.op_type == "MatMul":
        factor, weight = weight, np.ascontiguousarray(graph.const(nxt.input[1]).astype(np.float32).T)
        nodes.append(nxt)
        out = nxt.output[0]
        nxt = graph.only_consumer(out)
    bias = None
    if nxt is not None and nxt.op_type == "Add":
        c = graph.const(graph.other_input(nxt, out))
        if c is not None and c.size == weight.shape[0] and c.shape[-1] == weight.shape[0]:
            bias = c.reshape(-1).astype(np.float32)
            nodes.append(nxt)
            out = nxt.output[0]
            nxt = graph.only_consumer(out)
    lin = Linear(weight, bias, out, nodes, factor)
    if nxt is not None and nxt.op_type == "Mul":
        _fold_layer_scale(graph, lin, nxt)
    return lin


def _fold_layer_scale(graph: OnnxGraph, lin: Linear, mul: onnx.NodeProto) -> None:
    """Fold a per-channel constant Mul after a linear (LayerScale) into its weight rows and bias."""
    gamma = graph.const(graph.other_input(mul, lin.output))
    width = lin.out_features
    if gamma is None or width < 2 or gamma.size != width or gamma.shape[-1] != width:
        return
    gamma = gamma.reshape(-1).astype(np.float32)
    lin.weight = lin.weight * gamma[:, None]
    lin.bias = lin.bias_or_zeros() * gamma
    lin.nodes.append(mul)
    lin.output = mul.output[0]
    lin.layer_scale = True


# ---- LayerNorm ------------------------------------------------------------------------------
def _reduces_last_axis(graph: OnnxGraph, node: onnx.NodeProto, rank: int) -> bool:
    if node.op_type != "ReduceMean" or not attribute(node, "keepdims", 1):
        return False
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = graph.const(node.input[1])
    return axes is not None and [int(a) % rank for a in np.atleast_1d(axes)] == [rank - 1]


def layernorm_readers(graph: OnnxGraph, x: str) -> list[onnx.NodeProto]:
    """The nodes reading `x` that begin a LayerNorm of it (fused, or ReduceMean + Sub)."""
    rank = len(graph.shape(x))
    readers = graph.data_consumers(x)
    fused = [n for n in readers if n.op_type == "LayerNormalization" and n.input[0] == x]
    if fused:
        return fused[:1]
    means = [n for n in readers if _reduces_last_axis(graph, n, rank)]
    for mean in means:
        subs = [n for n in readers if n.op_type == "Sub" and list(n.input) == [x, mean.output[0]]]
        if subs:
            return [mean, subs[0]]
    return []


def match_layernorm(graph: OnnxGraph, x: str, what: str) -> LayerNorm:
    """The LayerNorm over the last axis that reads `x`; OnnxPatternError if there is none."""
    starts = layernorm_readers(graph, x)
    width = graph.shape(x)[-1]
    if not starts:
        node = first_compute(graph, x) or graph.producer.get(x)
        raise _fail(graph, node, f"{what}: a LayerNormalization over the last axis (or ReduceMean/Sub/Pow/"
                                 f"Sqrt/Div, its decomposed form) reading {x!r}")
    if starts[0].op_type == "LayerNormalization":
        node = starts[0]
        axis = attribute(node, "axis", -1) % len(graph.shape(x))
        if axis != len(graph.shape(x)) - 1:
            raise _fail(graph, node, f"{what}: a LayerNorm over the last axis (axis is {axis})")
        gamma = graph.const(node.input[1])
        beta = graph.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(width, np.float32)
        if gamma is None or beta is None or gamma.size != width or beta.size != width:
            raise _fail(graph, node, f"{what}: constant scale and bias of {width} values")
        return LayerNorm(node.output[0], gamma.reshape(-1), beta.reshape(-1), float(attribute(node, "epsilon", 1e-5)),
                         [node])
    return _decomposed_layernorm(graph, x, starts, width, what)


def _decomposed_layernorm(graph: OnnxGraph, x: str, starts: list[onnx.NodeProto], width: int,
                          what: str) -> LayerNorm:
    mean, sub = starts
    nodes = list(starts)
    centred = sub.output[0]
    readers = graph.data_consumers(centred)
    square = next((n for n in readers if (n.op_type == "Pow" and graph.scalar(n.input[1]) == 2.0)
                   or (n.op_type == "Mul" and list(n.input) == [centred, centred])), None)
    if square is None:
        raise _fail(graph, readers[0] if readers else sub, f"{what}: the square (Pow 2) of the centred input")
    var = graph.only_consumer(square.output[0])
    if var is None or not _reduces_last_axis(graph, var, len(graph.shape(x))):
        raise _fail(graph, var or square, f"{what}: the mean of the squares (ReduceMean over the last axis)")
    add = graph.only_consumer(var.output[0])
    eps = graph.scalar(graph.other_input(add, var.output[0])) if add is not None and add.op_type == "Add" else None
    if eps is None:
        raise _fail(graph, add or var, f"{what}: the variance plus a constant epsilon (Add)")
    sqrt = graph.only_consumer(add.output[0])
    if sqrt is None or sqrt.op_type != "Sqrt":
        raise _fail(graph, sqrt or add, f"{what}: the square root of the variance (Sqrt)")
    nodes += [square, var, add, sqrt]
    norm = graph.only_consumer(sqrt.output[0])
    if norm is not None and norm.op_type == "Reciprocal":
        recip = norm
        norm = graph.only_consumer(recip.output[0])
        ok = norm is not None and norm.op_type == "Mul" and set(norm.input) == {centred, recip.output[0]}
        nodes.append(recip)
    else:
        ok = norm is not None and norm.op_type == "Div" and list(norm.input) == [centred, sqrt.output[0]]
    extra = [n for n in readers if n is not square and n is not norm]
    if not ok or extra:
        bad = extra[0] if extra else (norm or sqrt)
        raise _fail(graph, bad, f"{what}: the centred input divided by the standard deviation")
    nodes.append(norm)
    out, gamma, beta = norm.output[0], np.ones(width, np.float32), np.zeros(width, np.float32)
    for op, role in (("Mul", "gamma"), ("Add", "beta")):
        nxt = graph.only_consumer(out)
        if nxt is None or nxt.op_type != op:
            continue
        c = graph.const(graph.other_input(nxt, out))
        if c is None or c.size != width or c.shape[-1] != width:
            continue
        if role == "gamma":
            gamma = c.reshape(-1)
        else:
            beta = c.reshape(-1)
        nodes.append(nxt)
        out = nxt.output[0]
    return LayerNorm(out, gamma.astype(np.float32), beta.astype(np.float32), float(np.float32(eps)), nodes)


# ---- activation -------------------------------------------------------------------------------
_UNARY = {
    "Erf": np.vectorize(math.erf), "Tanh": np.tanh, "Sqrt": np.sqrt, "Neg": np.negative, "Abs": np.abs,
    "Exp": np.exp, "Log": np.log, "Reciprocal": lambda a: 1.0 / a, "Sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "Relu": lambda a: np.maximum(a, 0.0), "Identity": lambda a: a, "Cast": lambda a: a, "Softplus": lambda a: np.log1p(np.exp(a)),
}
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
           "Max": np.maximum, "Min": np.minimum}
ELEMENTWISE = set(_UNARY) | set(_BINARY) | {"Gelu", "LeakyRelu", "HardSigmoid", "Clip", "Elu"}


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Phi(x), in float64."""
    return 0.5 * x * (1.0 + _UNARY["Erf"](x / math.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """The tanh approximation of GELU, in float64."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


@dataclass
class Activation:
    """The elementwise function between two linears: output value, kind ("gelu", "gelu_tanh"), nodes."""

    output: str
    kind: str
    nodes: list[onnx.NodeProto]


def match_activation(graph: OnnxGraph, x: str, what: str) -> Activation:
    """The elementwise nodes reading `x` up to the next non-elementwise node; they must compute GELU."""
    region: list[onnx.NodeProto] = []
    values, exits = {x}, []
    for node in graph.nodes:  # graph order is topological
        if not any(i in values for i in node.input) or node.op_type in ("Shape", "Size"):
            continue
        if node.op_type in ELEMENTWISE:
            region.append(node)
            values.update(o for o in node.output if o)
        else:
            exits.append(node)
    ends = {i for n in exits for i in n.input if i in values}
    if not region:
        raise _fail(graph, exits[0] if exits else graph.producer[x], f"{what}: a GELU activation after the first linear")
    if len(ends) != 1 or x in ends:
        names = ", ".join(describe(n) for n in exits[:3])
        raise OnnxPatternError(f"{graph.source}: {what}: the activation after {describe(graph.producer[x])} "
                               f"does not end in one value read by the next linear (read by {names})")
    (out,) = ends
    for node in region:
        for i in node.input:
            if i and i not in values and graph.is_data(i):
                raise _fail(graph, node, f"{what}: an elementwise function of {x!r} alone (it also reads {i!r})")
    grid = np.linspace(-8.0, 8.0, 3201)
    try:
        got = _evaluate(graph, region, x, out, grid)
    except _NotScalar as e:
        raise _fail(graph, e.node, f"{what}: an elementwise GELU (this node uses per-channel constants)") from None
    ops = ", ".join(describe(n) for n in region)
    scale = 1e-5 * (1.0 + np.abs(grid))
    if np.all(np.abs(got - gelu(grid)) <= scale):
        return Activation(out, "gelu", region)
    if np.all(np.abs(got - gelu_tanh(grid)) <= scale):
        return Activation(out, "gelu_tanh", region)
    err = float(np.nanmax(np.abs(got - gelu(grid))))
    raise OnnxPatternError(f"{graph.source}: {what}: the activation computed by {ops} is not GELU "
                           f"(differs from the exact GELU by up to {err:.3g} on [-8, 8]); "
                           "edgevit's ViT uses the exact (erf) GELU in the MLP")


class _NotScalar(Exception):
    def __init__(self, node: onnx.NodeProto) -> None:
        self.node = node


def _evaluate(graph: OnnxGraph, region: list[onnx.NodeProto], x: str, out: str, grid: np.ndarray) -> np.ndarray:
    env = {x: grid}

    def operand(node: onnx.NodeProto, name: str) -> np.ndarray | float:
        if name in env:
            return env[name]
        value = graph.const(name)
        if value is None or value.size != 1:
            raise _NotScalar(node)
        return float(value.reshape(()))

    with np.errstate(all="ignore"):
        for node in region:
            args = [operand(node, i) for i in node.input if i]
            op = node.op_type
            if op in _UNARY:
                result = _UNARY[op](np.asarray(args[0], dtype=np.float64))
            elif op in _BINARY:
                result = _BINARY[op](args[0], args[1])
            elif op == "Gelu":
                result = (gelu_tanh if attribute(node, "approximate", "none") == "tanh" else gelu)(args[0])
            elif op == "LeakyRelu":
                result = np.where(args[0] >= 0, args[0], attribute(node, "alpha", 0.01) * args[0])
            elif op == "HardSigmoid":
                result = np.clip(attribute(node, "alpha", 0.2) * args[0] + attribute(node, "beta", 0.5), 0, 1)
            elif op == "Elu":
                result = np.where(args[0] >= 0, args[0], attribute(node, "alpha", 1.0) * np.expm1(args[0]))
            else:  # Clip
                low = args[1] if len(args) > 1 else attribute(node, "min", -np.inf)
                high = args[2] if len(args) > 2 else attribute(node, "max", np.inf)
                result = np.clip(args[0], low, high)
            env[node.output[0]] = np.broadcast_to(np.asarray(result, dtype=np.float64), grid.shape)
    return env[out]
