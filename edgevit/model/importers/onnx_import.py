"""Import an ONNX vision transformer: match the graph to a ViTSpec and weights, then check it.

`import_onnx(path)` loads the file (default opset 13..21), probes it (`onnx_graph`), matches the
patch embedding, prefix tokens and positions, the pre-norm blocks (`onnx_blocks`, with the
attention of `onnx_attention` and the small patterns of `onnx_patterns`), the final norm,
pooling and head (`onnx_head`), checks that every node carrying data was understood, builds the
edgevit model and runs the original file in onnxruntime against it (`onnx_oracle`). The graph
is matched by structure, never by initializer names; refusals name the node and its op type.

edgevit's own exports (`model/onnx_export.py`) carry `edgevit.spec` and `edgevit.preprocess`
metadata: the preprocessing is taken from there, and the matched spec must equal the stored one.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError, EdgevitError
from edgevit.model.checkpoint import model_from_state_dict
from edgevit.model.importers import ImportResult
from edgevit.model.importers.onnx_blocks import Block, Embedding, is_block_start, match_block, match_embedding
from edgevit.model.importers.onnx_graph import OnnxGraph, OnnxPatternError, describe, load_onnx
from edgevit.model.importers.onnx_head import Head, match_head
from edgevit.model.importers.onnx_oracle import compare_with_onnxruntime
from edgevit.model.importers.onnx_patterns import Linear
from edgevit.model.importers.onnx_trace import first_compute
from edgevit.model.spec import BlockSpec, ViTSpec

PREPROCESS_SOURCE = "onnx metadata"


def import_onnx(path: str | Path, *, check_inputs: int = 100, rtol: float = 1e-4,
                image_size: int | None = None) -> ImportResult:
    """Import the ONNX ViT at `path` as an eval-mode float32 VisionTransformer.

    `image_size` is needed only when the graph's input height/width are dynamic. The imported
    model is run against onnxruntime on `check_inputs` seeded random images (0 skips the check,
    for tests of the matcher only); ImportMismatchError (exit 2) unless they agree within `rtol`.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    source = str(path)
    proto = load_onnx(path)
    graph = OnnxGraph(proto, source, image_size)
    emb = match_embedding(graph)
    blocks: list[Block] = []
    x = emb.output
    while is_block_start(graph, x):
        blocks.append(match_block(graph, x, len(blocks)))
        x = blocks[-1].output
    if not blocks:
        node = first_compute(graph, x) or graph.producer[x]
        raise OnnxPatternError(f"{source}: {describe(node)}: expected a transformer block (a LayerNorm and a "
                               f"residual Add reading the embedded tokens {x!r})")
    head = match_head(graph, x)
    _check_everything_matched(graph, emb.nodes + [n for b in blocks for n in b.nodes] + head.nodes)
    spec, state, notes = _spec_and_state(graph, emb, blocks, head)
    metadata = {p.key: p.value for p in proto.metadata_props}
    spec = _cross_check_metadata(spec, metadata, source, Path(path).stem)
    preprocess, preprocess_source = _preprocess(metadata, spec, source)
    model = model_from_state_dict(spec, state, preprocess, source)
    matched = time.perf_counter()
    report = {"format": "onnx", "opset": graph.opset, "input": {"name": graph.input_name, "shape": graph.input_dims},
              "output": graph.output_name, "nodes": len(graph.nodes), "spec": spec.to_dict(),
              "patterns": _patterns(blocks, head, emb)}
    names, image_shape = (graph.input_name, graph.output_name), graph.input_shape[1:]
    batch, activation_bytes = graph.static_batch, graph.largest_activation_bytes()
    del graph, emb, blocks, head, state  # the probe tensors are not needed any more
    if check_inputs > 0:
        hint = "; ".join(n for n in notes if "tanh" in n or "folded" in n)
        agreement = compare_with_onnxruntime(proto, model, *names, image_shape, inputs=check_inputs, batch=batch,
                                             rtol=rtol, source=source, bytes_per_image=activation_bytes,
                                             hint=f"What the import approximated: {hint}." if hint else "")
        report["agreement"] = agreement.to_dict()
        notes.append(f"onnxruntime agrees on {agreement.inputs} random inputs: max abs difference "
                     f"{agreement.max_abs:.3g}, max relative {agreement.max_rel:.3g}")
    report["seconds"] = {"match": round(matched - started, 3), "total": round(time.perf_counter() - started, 3),
                         "cpu": round(time.process_time() - cpu_started, 3)}
    return ImportResult(model=model, source=source, format="onnx", preprocess_source=preprocess_source,
                        notes=notes, report=report)


def _check_everything_matched(graph: OnnxGraph, claimed: list[onnx.NodeProto]) -> None:
    """Refuse a graph with any data-carrying node outside the matched patterns."""
    seen = {id(n) for n in claimed}
    for node in graph.data_nodes():
        if id(node) not in seen:
            reads = ", ".join(repr(i) for i in graph.data_inputs(node))
            raise OnnxPatternError(f"{graph.source}: {describe(node)} (reading {reads}) is not part of any pattern "
                                   "of edgevit's ViT (patch embedding, pre-norm blocks, final norm, pooling, head)")


def _nice_eps(eps: float) -> float:
    """A float32 epsilon as the shortest decimal that rounds to it (9.99999997e-07 -> 1e-06)."""
    return float(np.format_float_scientific(np.float32(eps), unique=True))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True, order="C"))


def _put_linear(state: dict, key: str, lin: Linear) -> int | None:
    """Store a linear under `key` (low-rank as key.a / key.b); its rank, or None if dense."""
    if lin.factor is None:
        state[f"{key}.weight"], state[f"{key}.bias"] = _tensor(lin.weight), _tensor(lin.bias_or_zeros())
        return None
    state[f"{key}.a.weight"], state[f"{key}.b.weight"] = _tensor(lin.factor), _tensor(lin.weight)
    state[f"{key}.b.bias"] = _tensor(lin.bias_or_zeros())
    return lin.factor.shape[0]


def _pool(graph: OnnxGraph, head: Head, prefix: int) -> tuple[str, bool, list[int]]:
    """(pool, distill_token, order of head linears as [head, head_dist]) from the pooled tokens."""
    tokens = head.tokens
    node = head.linears[0].nodes[0]
    if tokens == [None]:
        if prefix:
            raise OnnxPatternError(f"{graph.source}: {describe(node)}: mean pooling with {prefix} class/distillation "
                                   "token(s) in the sequence; edgevit's mean pooling has no class token")
        return "mean", False, [0]
    if prefix == 0:
        raise OnnxPatternError(f"{graph.source}: {describe(node)}: the head reads token {tokens[0]} but the model "
                               "has no class token; expected mean pooling")
    if len(tokens) == 1 and tokens[0] == 0 and prefix in (1, 2):
        return "cls", prefix == 2, [0]
    if sorted(tokens) == [0, 1] and prefix == 2:
        return "cls_dist", True, [tokens.index(0), tokens.index(1)]
    raise OnnxPatternError(f"{graph.source}: {describe(node)}: heads on tokens {tokens} with {prefix} prefix "
                           "token(s); expected the class token (and, for DeiT, the distillation token)")


def _spec_and_state(graph: OnnxGraph, emb: Embedding, blocks: list[Block], head: Head) -> tuple:
    """The ViTSpec, the edgevit state_dict and the notes from the matched parts."""
    prefix = emb.prefix.shape[0]
    if prefix > 2:
        raise OnnxPatternError(f"{graph.source}: {describe(emb.nodes[-1])}: {prefix} tokens in front of the patches; "
                               "edgevit supports a class token and a distillation token (no register tokens)")
    pool, distill, order = _pool(graph, head, prefix)
    norms = [(b.norm1, f"blocks[{i}].norm1") for i, b in enumerate(blocks)]
    norms += [(b.norm2, f"blocks[{i}].norm2") for i, b in enumerate(blocks)] + [(head.norm, "norm")]
    eps = _nice_eps(norms[0][0].eps)
    for norm, where in norms:
        if _nice_eps(norm.eps) != eps:
            raise OnnxPatternError(f"{graph.source}: {describe(norm.nodes[0])}: {where} has epsilon {_nice_eps(norm.eps)} "
                                   f"but the first LayerNorm has {eps}; edgevit uses one epsilon for every LayerNorm")
    state = {"patch_embed.proj.weight": _tensor(emb.weight), "patch_embed.proj.bias": _tensor(emb.bias),
             "pos_embed": _tensor(emb.pos[None])}
    if prefix >= 1:
        state["cls_token"] = _tensor(emb.prefix[None, :1])
    if prefix == 2:
        state["dist_token"] = _tensor(emb.prefix[None, 1:2])
    block_specs = []
    for i, b in enumerate(blocks):
        key = f"blocks.{i}"
        for name, norm in (("norm1", b.norm1), ("norm2", b.norm2)):
            state[f"{key}.{name}.weight"], state[f"{key}.{name}.bias"] = _tensor(norm.weight), _tensor(norm.bias)
        ranks = {}
        for name, lin in (("attn.qkv", b.attn.qkv), ("attn.proj", b.attn.proj), ("mlp.fc1", b.fc1), ("mlp.fc2", b.fc2)):
            rank = _put_linear(state, f"{key}.{name}", lin)
            if rank is not None:
                ranks[name.split(".")[1]] = rank
        block_specs.append(BlockSpec(heads=b.attn.heads, head_dim=b.attn.head_dim, mlp_hidden=b.fc1.out_features,
                                     ranks=ranks))
    state["norm.weight"], state["norm.bias"] = _tensor(head.norm.weight), _tensor(head.norm.bias)
    notes = list(emb.notes)
    for key, index in zip(("head", "head_dist"), order):
        lin = head.linears[index]
        if lin.factor is not None:
            notes.append(f"{key}: low-rank classifier multiplied out into one dense linear")
        state[f"{key}.weight"], state[f"{key}.bias"] = _tensor(lin.dense()), _tensor(lin.bias_or_zeros())
    kw = {"distill_token": True} if distill else {}
    spec = ViTSpec(image_size=graph.input_shape[2], in_channels=graph.input_shape[1], patch_size=emb.patch,
                   embed_dim=emb.weight.shape[0], num_classes=head.linears[0].out_features, blocks=tuple(block_specs),
                   pool=pool, norm_eps=eps, **kw)
    notes += _block_notes(blocks)
    if pool == "cls_dist":
        notes.append("DeiT distilled inference: class and distillation heads averaged (pool cls_dist)")
    return spec, state, notes


def _block_notes(blocks: list[Block]) -> list[str]:
    notes = []
    if any(len(b.norm1.nodes) > 1 for b in blocks):
        notes.append("decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div) recognised")
    if any(b.act.kind == "gelu_tanh" for b in blocks):
        notes.append("tanh-approximated GELU imported as edgevit's exact (erf) GELU")
    for b in blocks:
        for note in b.attn.notes:
            if note.split(": ", 1)[1] not in " ".join(notes):
                notes.append(note)
    if any(b.attn.proj.layer_scale or b.fc2.layer_scale for b in blocks):
        notes.append("LayerScale (a per-channel Mul after attn.proj / mlp.fc2) folded into those linears")
    if any(b.attn.qkv.factor is not None or b.attn.proj.factor is not None or b.fc1.factor is not None
           or b.fc2.factor is not None for b in blocks):
        notes.append("low-rank linears (two MatMuls in a row) kept as factorised linears (spec ranks)")
    return notes


def _patterns(blocks: list[Block], head: Head, emb: Embedding) -> dict:
    return {"layernorm": "decomposed" if len(blocks[0].norm1.nodes) > 1 else "fused",
            "gelu": sorted({b.act.kind for b in blocks}),
            "patch_embedding": emb.nodes[0].op_type,
            "head_tokens": ["mean" if t is None else t for t in head.tokens]}


def _cross_check_metadata(spec: ViTSpec, metadata: dict[str, str], source: str, stem: str) -> ViTSpec:
    """Name the spec; if the file carries `edgevit.spec`, the matched spec must equal it."""
    if "edgevit.spec" not in metadata:
        return replace(spec, name=stem)
    stored = ViTSpec.from_yaml(metadata["edgevit.spec"], source=f"{source} (metadata edgevit.spec)")
    spec = replace(spec, name=stored.name)
    if spec != stored:
        mine, theirs = spec.to_dict(), stored.to_dict()
        fields = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise CheckpointError(f"{source}: the graph matches a different spec than its edgevit.spec metadata "
                              f"(fields {', '.join(fields)}: graph {[mine.get(k) for k in fields]}, "
                              f"metadata {[theirs.get(k) for k in fields]}); the file was edited after export")
    return spec


def _preprocess(metadata: dict[str, str], spec: ViTSpec, source: str) -> tuple[Normalization | None, str | None]:
    if "edgevit.preprocess" not in metadata:
        return None, None
    try:
        norm = Normalization.from_dict(json.loads(metadata["edgevit.preprocess"]))
    except (json.JSONDecodeError, EdgevitError, TypeError) as e:
        raise CheckpointError(f"{source}: bad edgevit.preprocess metadata ({e})") from None
    if norm.channels != spec.in_channels:
        raise CheckpointError(f"{source}: edgevit.preprocess metadata is for {norm.channels} channel(s), "
                              f"the graph takes {spec.in_channels}")
    return norm, PREPROCESS_SOURCE
