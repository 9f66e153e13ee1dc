"""A read-only view of an ONNX graph for the importer: who produces and reads each value, which
values carry image data, and the concrete value and shape of every tensor at one probe input.

The probe is the "light constant folding" the matchers need: instead of re-implementing shape
inference for every op (exporters compute reshape targets from `Shape` of activations), the
graph is run once in onnxruntime on a seeded random image with every intermediate value exposed
as an output. That gives each value's shape at that input, the value of every constant (weights
behind `Identity`/`Transpose`, `Constant` nodes, class tokens broadcast by `Expand`) and lets the
layout tracer check its own work against the real tensors.

A value "carries data" when it depends on the image's values (not only on its shape): the image
itself and the outputs of any node, other than `Shape`/`Size`, that reads a data value. Every
other value is a constant of the graph at the probe's input shape.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgevit.errors import CheckpointError

OPSETS = range(13, 22)  # 13..21 of the default ONNX domain
SHAPE_OPS = ("Shape", "Size")  # read a data value but output only its shape
PROBE_BATCH = 2  # probe batch when the batch size is dynamic: 2 catches ops that mix images
PROBE_SEED = 1234


class OnnxPatternError(CheckpointError):
    """The graph does not match what edgevit's ViT computes; the message names the node."""


def describe(node: onnx.NodeProto) -> str:
    """"node 'NAME' (op TYPE)" for messages (the first output stands in for a missing name)."""
    name = node.name or f"<unnamed, output {node.output[0]!r}>"
    return f"node {name!r} (op {node.op_type})"


def attribute(node: onnx.NodeProto, name: str, default=None):
    """The Python value of attribute `name` of `node` (strings decoded), or `default`."""
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file (with external data beside it); CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path))
        _read_every_name(model)
    except Exception as e:  # protobuf raises DecodeError, onnx raises several types
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    return model


def _read_every_name(model: onnx.ModelProto) -> None:
    """Check every name and op type is text: protobuf hands a string field that is not valid UTF-8
    back as bytes, which would fail later, deep inside the matcher or onnxruntime."""
    graph = model.graph
    names = [v.name for v in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]]
    for node in graph.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output, *(a.name for a in node.attribute)]
    names += [text for p in model.metadata_props for text in (p.key, p.value)]
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ValueError(f"{len(bad)} names are not valid UTF-8, e.g. {bad[0]!r}: the file is damaged")


def default_opset(model: onnx.ModelProto, source: str) -> int:
    """The default-domain opset of `model`; CheckpointError unless it is in 13..21."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise CheckpointError(f"{source}: the model imports no default ONNX opset")
    opset = versions[0]
    if opset not in OPSETS:
        raise CheckpointError(f"{source}: opset {opset} is not supported; re-export with an opset "
                              f"between {OPSETS.start} and {OPSETS.stop - 1} (torch.onnx.export(..., opset_version=17))")
    return opset


def ort_session(model: onnx.ModelProto, source: str, optimize: bool = True):
    """An onnxruntime CPU session for `model`; CheckpointError naming the cause if it cannot load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise CheckpointError(f"{source}: onnxruntime cannot load the model ({type(e).__name__}: {e})") from None


class OnnxGraph:
    """Producers, consumers, data/constant values and probe tensors of one ONNX model.

    `input_shape` is the probe's [B, C, H, W] (B: the file's static batch, else 2; H, W: the
    file's static size, else `image_size`); `input_dims` the input's declared dims (names for
    dynamic ones), `static_batch` its fixed batch size or None. `values[name]` is every tensor at
    the probe input.
    """

    def __init__(self, model: onnx.ModelProto, source: str, image_size: int | None = None) -> None:
        self.model, self.source = model, source
        self.opset = default_opset(model, source)
        graph = model.graph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp and node not in self.consumers[inp]:
                    self.consumers[inp].append(node)
        initializers = {t.name for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initializers]
        if len(inputs) != 1:
            raise CheckpointError(f"{source}: expected one image input, found {len(inputs)} "
                                  f"({', '.join(repr(i.name) for i in inputs)})")
        self.input_name = inputs[0].name
        self.input_shape = self._probe_shape(inputs[0], image_size)
        self.output_name = self._pick_output()
        self.data = self._data_values()
        self.values = self._probe(initializers)

    # ---- set-up -------------------------------------------------------------------------
    def _probe_shape(self, value: onnx.ValueInfoProto, image_size: int | None) -> tuple[int, ...]:
        t = value.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT:
            raise CheckpointError(f"{self.source}: input {value.name!r} must be float32 "
                                  f"(it is {onnx.TensorProto.DataType.Name(t.elem_type)})")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        self.input_dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        self.static_batch = dims[0] if dims else None
        if len(dims) != 4:
            raise CheckpointError(f"{self.source}: input {value.name!r} must be an image batch [B, C, H, W] "
                                  f"(it has {len(dims)} dimensions)")
        batch, channels, height, width = dims
        if channels is None:
            raise CheckpointError(f"{self.source}: input {value.name!r} has a dynamic channel count; "
                                  "export it with a fixed number of channels")
        if height is None or width is None:
            if image_size is None:
                raise CheckpointError(f"{self.source}: input {value.name!r} has a dynamic height/width; "
                                      "pass image_size=N (CLI: --image-size N) to import it at N x N")
            height = height or image_size
            width = width or image_size
        if height != width:
            raise CheckpointError(f"{self.source}: input {value.name!r} is {height} x {width}; "
                                  "edgevit models take square images")
        if image_size is not None and image_size != height:
            raise CheckpointError(f"{self.source}: image_size={image_size} was given but input "
                                  f"{value.name!r} is fixed at {height} x {width}")
        return (batch or PROBE_BATCH, channels, height, width)

    def _pick_output(self) -> str:
        names = [o.name for o in self.model.graph.output]
        if not names:
            raise CheckpointError(f"{self.source}: the graph has no output")
        return "logits" if "logits" in names else names[0]

    def _data_values(self) -> set[str]:
        data = {self.input_name}
        for node in self.nodes:  # ONNX graphs are topologically sorted
            if node.op_type not in SHAPE_OPS and any(i in data for i in node.input if i):
                data.update(o for o in node.output if o)
        return data

    def _probe(self, initializers: set[str]) -> dict[str, np.ndarray]:
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        known = {o.name for o in model.graph.output}
        names = [o for node in self.nodes for o in node.output if o and o not in initializers]
        for name in names:
            if name not in known:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
        session = ort_session(model, self.source, optimize=False)
        image = np.random.default_rng(PROBE_SEED).standard_normal(self.input_shape).astype(np.float32)
        try:
            outputs = session.run(None, {self.input_name: image})
        except Exception as e:  # onnxruntime's own exception types
            raise CheckpointError(f"{self.source}: onnxruntime could not run the model on a "
                                  f"{list(self.input_shape)} input ({type(e).__name__}: {e})") from None
        values = {t.name: numpy_helper.to_array(t) for t in self.model.graph.initializer}
        values[self.input_name] = image
        values.update(zip([o.name for o in model.graph.output], outputs))
        return values

    # ---- queries ------------------------------------------------------------------------
    def is_data(self, name: str) -> bool:
        """True if `name` depends on the image's values."""
        return name in self.data

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of value `name` at the probe input."""
        return tuple(self.values[name].shape)

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant (not data) `name` at the probe input; None for data or a missing input."""
        if not name or name in self.data:
            return None
        return self.values.get(name)

    def scalar(self, name: str) -> float | None:
        """A constant holding one number (any shape of size 1) as a float, else None."""
        value = self.const(name)
        if value is None or value.size != 1:
            return None
        return float(value.reshape(()))

    def data_consumers(self, name: str) -> list[onnx.NodeProto]:
        """Nodes reading value `name` whose outputs carry data (Shape/Size readers excluded)."""
        return [n for n in self.consumers.get(name, []) if n.op_type not in SHAPE_OPS]

    def data_inputs(self, node: onnx.NodeProto) -> list[str]:
        """The inputs of `node` that carry data, in order."""
        return [i for i in node.input if i in self.data]

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The one data consumer of `name`, or None if there are none or several."""
        readers = self.data_consumers(name)
        return readers[0] if len(readers) == 1 else None

    def other_input(self, node: onnx.NodeProto, name: str) -> str:
        """For a two-input node, the input that is not `name`."""
        a, b = node.input[0], node.input[1]
        return b if a == name else a

    def largest_activation_bytes(self) -> int:
        """Bytes of the largest data value per image at the probe input (sizes the oracle's batches)."""
        sizes = [self.values[n].nbytes for n in self.data if n in self.values]
        return max(sizes, default=0) // self.input_shape[0]

    def data_nodes(self) -> list[onnx.NodeProto]:
        """Every node whose outputs carry data, in graph order."""
        return [n for n in self.nodes if any(o in self.data for o in n.output)]
