"""The naive (TensorFlow-Lite-Micro-style) plan of a Program: the baseline `naive_bytes` reports.

Every operator reads and writes whole tensors, nothing is chunked, fused, aliased or written in
place, and the offsets come from the same allocator (`allocate.allocate`) as the real plan, so
the ratio arena / naive measures what streaming, chains and in-place reuse save. `naive_ops`
unfuses the kernels a plain interpreter would run as several operators (attention, linear+GELU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgevit.backend.allocate import ALIGN, allocate, live_timeline

if TYPE_CHECKING:  # the planner imports this module
    from edgevit.backend.planner import Facts

NaiveOp = tuple[int, list[str], list[tuple[str, int]]]  # (kernel index, input names, [(output, bytes)])


def _attention_ops(f: "Facts", i: int) -> list[NaiveOp]:
    """The unfused attention of kernel i: split qkv [N, 3*H*hd] -> q, k, v; q k^T (+ token sizes)
    -> [H, N, N] int32 (float: float32) scores; softmax -> [H, N, N] int8 (float32) probabilities;
    probs v -> the kernel's output [N, H*hd]."""
    k, ins, outs = f.program.kernels[i], f.in_infos[i], f.out_infos[i]
    (n, _), h = ins[0].shape, int(k.attrs["heads"])
    item = 4 if ins[0].dtype == "float32" else 1
    q, kk, v, sc, pr = (f"{k.name}.{x}" for x in ("q", "k", "v", "scores", "probs"))
    third = ins[0].nbytes // 3
    return [(i, [k.inputs[0]], [(q, third), (kk, third), (v, third)]),
            (i, [q, kk, *k.inputs[1:]], [(sc, 4 * h * n * n)]),
            (i, [sc], [(pr, item * h * n * n)]),
            (i, [pr, v], [(k.outputs[0], outs[0].nbytes)])]


def naive_ops(f: "Facts") -> list[NaiveOp]:
    """The naive plan's operators, in order: (kernel index, input names, [(output name, bytes)]).

    Every kernel reads and writes whole tensors; an `attention` kernel is the unfused subgraph of
    `_attention_ops`; a linear with activation "gelu" is a linear writing the full pre-activation
    [N, M] then a GELU; a reshape is a copy; other kernels (token_merge included) are one operator
    and keep their scratch (traits, all rows) as a `<kernel>.scratch` output that dies at once.
    """
    ops: list[NaiveOp] = []
    for i, k in enumerate(f.program.kernels):
        outs = f.out_infos[i]
        if k.op == "attention":
            ops += _attention_ops(f, i)
        elif k.op == "linear" and k.attrs.get("activation", "none") == "gelu":
            pre = f"{k.name}.pre"
            ops += [(i, list(k.inputs), [(pre, outs[0].nbytes)]), (i, [pre], [(k.outputs[0], outs[0].nbytes)])]
        else:
            extra = [(f"{k.name}.scratch", f.scratch(i, None))] if f.scratch(i, None) > 0 else []
            ops.append((i, list(k.inputs), [(t.name, t.nbytes) for t in outs] + extra))
    return ops


def naive_plan(f: "Facts", alignment: int = ALIGN) -> tuple[int, list[int]]:
    """(arena bytes, live bytes per Program kernel) of the naive plan (`naive_ops`): every tensor
    whole from its operator to its last reader (program inputs from the first operator, outputs to
    the last), no chunking, no in-place, no aliasing, placed by `allocate` at `alignment`."""
    ops = naive_ops(f)
    first, last, size = {x: 0 for x in f.program.inputs}, {}, {x: f.nbytes[x] for x in f.program.inputs}
    for j, (_, ins, outs) in enumerate(ops):
        for x in ins:
            last[x] = j
        for x, nb in outs:
            first[x], size[x] = j, nb
    end = len(ops) - 1
    for x in f.program.outputs:
        last[x] = end
    items = [(x, size[x], first[x], max(first[x], last.get(x, first[x]))) for x in first]
    per_op = live_timeline([it[1:] for it in items], len(ops))
    arena = allocate(items, lower=max(per_op, default=0), alignment=alignment)[1]
    per_kernel = [0] * f.K
    for (i, _, _), live in zip(ops, per_op):
        per_kernel[i] = max(per_kernel[i], live)
    return arena, per_kernel
