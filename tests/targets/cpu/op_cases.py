"""Random single-kernel cases of every op the generic kernels support, for the cpu backend's tests.

`CASES` names (op, variant); `make_case(name, seed)` draws a small random shape and data from the
seed with the builders of tests/backend/kernels (gemm_cases, elementwise_cases: constants drawn
the way lowering draws them) and returns a `Case` (kernel, tensors, constants, one image's inputs).
`reference_outputs` runs the op's reference (run_int8 / run_float) on it; `request` makes the
KernelRequest the generic generator takes.
"""

from __future__ import annotations

import numpy as np

from edgevit.backend.kernels.base import KernelRequest
from edgevit.backend.kernels.harness import request_for
from edgevit.lower.ops import get_op, kernel_dtype
from edgevit.lower.program import Kernel, TensorInfo
from tests.backend.kernels import gemm_cases as gemm
from tests.backend.kernels.elementwise_cases import (Case, add_case, attention_case, cls_concat_case, gelu_case,
                                                     layernorm_case, pool_case, random_int)

FLOAT_RTOL = 1e-4


def from_gemm_case(case: gemm.Case) -> Case:
    """A GEMM case (one input `x`) as an elementwise-style Case."""
    return Case(case.kernel, case.tensors, case.consts, [case.x])


def merge_case(rng: np.random.Generator, dtype: str, sized: bool) -> Case:
    """A random token_merge case: tokens [N, D] (dtype), qkv [N, 3*H*hd] int8 (or float32), sizes
    optional (int32, float32 for a float kernel); r and protect legal for N."""
    n, d = int(rng.integers(3, 10)), int(rng.integers(1, 9))
    heads, hd = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    protect = int(rng.integers(0, 2))
    r = int(rng.integers(1, (n - protect) // 2 + 1))
    w = 3 * heads * hd
    is_float = dtype == "float32"
    x = rng.standard_normal((n, d)).astype(np.float32) if is_float else random_int(rng, dtype, (n, d))
    qkv = rng.standard_normal((n, w)).astype(np.float32) if is_float else random_int(rng, "int8", (n, w))
    arrays = [x, qkv]
    if sized:
        arrays.append(rng.integers(1, 9, n).astype(np.float32 if is_float else np.int32))
    quants = [None, None, None] if is_float else [{"scale": 0.05, "zero_point": 3}, {"scale": 0.1, "zero_point": 0},
                                                  None]
    infos = [TensorInfo(name, a.shape, str(a.dtype), q) for name, a, q in zip(("x", "qkv", "s"), arrays, quants)]
    kernel = Kernel("token_merge", "blocks.0.merge", tuple(i.name for i in infos), ("y", "ys"),
                    attrs={"r": r, "heads": heads, "head_dim": hd, "protect": protect})
    outs = get_op("token_merge").validate(kernel, infos, {})
    return Case(kernel, {i.name: i for i in [*infos, *outs]}, {}, arrays)


def _attention(rng: np.random.Generator, dtype: str, sized: bool) -> Case:
    n, heads, hd = int(rng.integers(1, 12)), int(rng.integers(1, 4)), int(rng.integers(1, 9))
    if not sized:
        return attention_case(rng, n, heads, hd, dtype)
    max_size = int(rng.integers(1, 8))
    sizes = rng.integers(1, max_size + 1, n)
    return attention_case(rng, n, heads, hd, dtype, sizes=sizes, max_size=max_size)


def _dims(rng: np.random.Generator, n_max: int = 7, d_max: int = 21) -> tuple[int, int]:
    return int(rng.integers(1, n_max + 1)), int(rng.integers(1, d_max + 1))


BUILDERS = {
    "linear-int8": lambda r: from_gemm_case(gemm.linear_int8_case(
        r, *_dims(r), int(r.integers(1, 10)), int(r.choice([8, 4])), bool(r.integers(2)), bool(r.integers(2)))),
    "linear-float32": lambda r: from_gemm_case(gemm.linear_float_case(
        r, *_dims(r), int(r.integers(1, 10)), bool(r.integers(2)), bool(r.integers(2)))),
    "patch_embed-int8": lambda r: from_gemm_case(gemm.patch_embed_int8_case(
        r, int(r.choice([1, 3])), (int(r.integers(1, 4)), int(r.integers(1, 4))), int(r.choice([1, 2, 4])),
        int(r.integers(1, 9)), str(r.choice(["int8", "int16"])))),
    "patch_embed-float32": lambda r: from_gemm_case(gemm.patch_embed_float_case(
        r, int(r.choice([1, 3])), (int(r.integers(1, 4)), int(r.integers(1, 4))), int(r.choice([1, 2, 4])),
        int(r.integers(1, 9)))),
    "add-int8": lambda r: add_case(r, _dims(r), "int8", "int8", "int8"),
    "add-int16": lambda r: add_case(r, _dims(r), "int16", "int8", "int16"),
    "add-float32": lambda r: add_case(r, _dims(r), "float32"),
    "add_pos-int8": lambda r: add_case(r, _dims(r), "int8", "int8", "int8", op="add_pos"),
    "add_pos-int16": lambda r: add_case(r, _dims(r), "int16", "int16", "int16", op="add_pos"),
    "add_pos-float32": lambda r: add_case(r, _dims(r), "float32", op="add_pos"),
    "layernorm-int8": lambda r: layernorm_case(r, *_dims(r), "int8"),
    "layernorm-int16": lambda r: layernorm_case(r, *_dims(r), "int16"),
    "layernorm-float32": lambda r: layernorm_case(r, *_dims(r), "float32"),
    "gelu-int8": lambda r: gelu_case(r, _dims(r), "int8"),
    "gelu-float32": lambda r: gelu_case(r, _dims(r), "float32"),
    "cls_concat-int8": lambda r: cls_concat_case(r, *_dims(r), "int8"),
    "cls_concat-int16": lambda r: cls_concat_case(r, *_dims(r), "int16"),
    "cls_concat-float32": lambda r: cls_concat_case(r, *_dims(r), "float32"),
    "pool-int8": lambda r: pool_case(r, *_dims(r), "int8", str(r.choice(["mean", "cls"]))),
    "pool-int16": lambda r: pool_case(r, *_dims(r), "int16", "mean", str(r.choice(["int8", "int16"]))),
    "pool-float32": lambda r: pool_case(r, *_dims(r), "float32", str(r.choice(["mean", "cls"]))),
    "attention-int8": lambda r: _attention(r, "int8", False),
    "attention-int8-sized": lambda r: _attention(r, "int8", True),
    "attention-float32": lambda r: _attention(r, "float32", bool(r.integers(2))),
    "token_merge-int8": lambda r: merge_case(r, "int8", bool(r.integers(2))),
    "token_merge-int16": lambda r: merge_case(r, "int16", bool(r.integers(2))),
    "token_merge-float32": lambda r: merge_case(r, "float32", bool(r.integers(2))),
}
CASES = tuple(BUILDERS)


def make_case(name: str, seed: int) -> Case:
    """The random case `name` (one of CASES) drawn from `seed`."""
    return BUILDERS[name](np.random.default_rng(seed))


def request(case: Case, schedule: str = "fast", isa: tuple[str, ...] = ()) -> KernelRequest:
    """The KernelRequest of the case (all rows; `isa`: the cpu kernels' ISA facts, kernels.kernel_isa)."""
    return request_for(case.kernel, case.tensors, case.consts, schedule=schedule, isa=isa)


def reference_outputs(case: Case) -> list[np.ndarray]:
    """Every output of the op's reference interpreter for the case's one image."""
    infos = [case.tensors[t] for t in case.kernel.inputs]
    run = get_op(case.kernel.op).runner(kernel_dtype(case.kernel, infos), case.kernel)
    return [o[0] for o in run(case.kernel, [a[None] for a in case.inputs], case.consts)]


def assert_matches(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    """Integers bit-exact; float32 within FLOAT_RTOL relative to each output's magnitude."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        if w.dtype == np.float32:
            scale = max(1.0, float(np.abs(w).max(initial=0.0)))
            np.testing.assert_allclose(g, w, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale)
        else:
            np.testing.assert_array_equal(g, w)
