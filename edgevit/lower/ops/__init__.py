"""Op registry: one op per file in this package; each registers an `OpDef`.

An op file defines
- `infer(kernel, in_infos, consts) -> list[TensorInfo]`: shape/dtype inference and
  validation. `in_infos` are the input TensorInfos (per-image shapes), `consts` maps a
  role to its np.ndarray. Raise ProgramError (use `fail`) naming the kernel and tensor.
- `run_float(kernel, inputs, consts) -> list[np.ndarray]`: inputs batched [B, *shape],
  float32; returns batched float32 outputs.
- `run_int8(kernel, inputs, consts)`: the integer kernel (same signature), registered under
  "int8" and, for ops that accept int16 inputs (the residual stream), "int16". Integer
  kernels take every run-time constant from Program constants and integer attrs
  (docs/integer-semantics.md, "Program kernels"); shared helpers are in `intcommon`.
- `OpDef(traits=PlanTraits(...))` (traits.py): in-place, alias, row-wise and scratch, what the
  memory planner needs to know about the op's kernels.

Dispatch: the interpreter runs `opdef.runner(kernel_dtype(kernel, in_infos))`, where the
kernel dtype is `kernel.attrs["dtype"]` if given, else the dtype of the first input.

Ops: patch_embed, cls_concat, add_pos, layernorm, linear, attention, gelu, add, pool,
reshape, token_merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from edgevit.lower.ops.traits import PlanTraits
from edgevit.lower.program import Kernel, ProgramError, TensorInfo

InferFn = Callable[[Kernel, list[TensorInfo], dict[str, np.ndarray]], list[TensorInfo]]
RunFn = Callable[[Kernel, list[np.ndarray], dict[str, np.ndarray]], list[np.ndarray]]
MacsFn = Callable[[Kernel, list[TensorInfo], list[TensorInfo]], int]


@dataclass(frozen=True)
class OpDef:
    """An op: its input names (required, then optional), constant roles, inference, runners,
    MAC count and planner traits.

    `run` maps a kernel dtype ("float32", "int8", "int16") to the run function.
    `macs(kernel, in_infos, out_infos)` counts GEMM-like multiply-accumulates per image (default 0).
    `traits`: how the memory planner may place the op's kernels (traits.py; default: none).
    """

    name: str
    infer: InferFn
    run: dict[str, RunFn]
    inputs: tuple[str, ...]
    optional_inputs: tuple[str, ...] = ()
    consts: tuple[str, ...] = ()
    optional_consts: tuple[str, ...] = ()
    macs: MacsFn | None = None
    num_outputs: int = 1
    traits: PlanTraits = PlanTraits()
    doc: str = field(default="", repr=False)

    def validate(self, kernel: Kernel, in_infos: list[TensorInfo], consts: dict[str, np.ndarray]) -> list[TensorInfo]:
        """Check input count and const roles, run `infer`, check the outputs; return output infos."""
        lo, hi = len(self.inputs), len(self.inputs) + len(self.optional_inputs)
        if not lo <= len(in_infos) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            fail(kernel, f"takes {want} input(s) {list(self.inputs + self.optional_inputs)}, "
                         f"got {len(in_infos)}: {list(kernel.inputs)}")
        missing = [r for r in self.consts if r not in consts]
        if missing:
            fail(kernel, f"missing constant role(s) {missing}; expected {list(self.consts)}")
        extra = sorted(set(consts) - set(self.consts) - set(self.optional_consts))
        if extra:
            fail(kernel, f"unknown constant role(s) {extra}; known {list(self.consts + self.optional_consts)}")
        if len(kernel.outputs) != self.num_outputs:
            fail(kernel, f"produces {self.num_outputs} output(s), but {len(kernel.outputs)} are named")
        infos = self.infer(kernel, in_infos, consts)
        return [TensorInfo(n, i.shape, i.dtype, i.quant) for n, i in zip(kernel.outputs, infos)]

    def runner(self, dtype: str, kernel: Kernel | None = None) -> RunFn:
        """The run function for kernels of `dtype`; ProgramError if this op has none yet."""
        if dtype not in self.run:
            where = f"kernel {kernel.name!r} ({self.name})" if kernel else f"op {self.name!r}"
            raise ProgramError(f"{where}: no {dtype} implementation (has: {sorted(self.run)})")
        return self.run[dtype]

    def count_macs(self, kernel: Kernel, in_infos: list[TensorInfo], out_infos: list[TensorInfo]) -> int:
        """MACs per image of `kernel` (0 for elementwise ops)."""
        return int(self.macs(kernel, in_infos, out_infos)) if self.macs else 0


OPS: dict[str, OpDef] = {}


def register_op(op: OpDef) -> OpDef:
    """Add `op` to OPS; ProgramError if the name is taken."""
    if op.name in OPS:
        raise ProgramError(f"op {op.name!r} is already registered")
    OPS[op.name] = op
    return op


def get_op(name: str, kernel: str | None = None) -> OpDef:
    """The registered OpDef called `name`; ProgramError (naming `kernel`) if unknown."""
    if name in OPS:
        return OPS[name]
    where = f"kernel {kernel!r}: " if kernel else ""
    raise ProgramError(f"{where}unknown op {name!r}; known ops: {sorted(OPS)}")


def kernel_dtype(kernel: Kernel, in_infos: Sequence[TensorInfo]) -> str:
    """The dtype that selects a kernel's runner: attrs["dtype"], else the first input's dtype."""
    return str(kernel.attrs.get("dtype", in_infos[0].dtype if in_infos else "float32"))


# ---- helpers for op files -------------------------------------------------------------
def fail(kernel: Kernel, msg: str) -> None:
    """Raise ProgramError prefixed with the kernel's name and op."""
    raise ProgramError(f"kernel {kernel.name!r} ({kernel.op}): {msg}")


def expect_dtype(kernel: Kernel, info: TensorInfo, allowed: Sequence[str], what: str = "input") -> None:
    """Fail unless `info.dtype` is in `allowed`."""
    if info.dtype not in allowed:
        fail(kernel, f"{what} {info.name!r} has dtype {info.dtype}; this op supports {list(allowed)}")


def expect_rank(kernel: Kernel, info: TensorInfo, rank: int, layout: str, what: str = "input") -> None:
    """Fail unless `info.shape` has `rank` dims; `layout` names them for the message, e.g. "[N, D]"."""
    if len(info.shape) != rank:
        fail(kernel, f"{what} {info.name!r} has shape {list(info.shape)}; expected {layout}")


def expect_const(kernel: Kernel, consts: dict[str, np.ndarray], role: str, shape: Sequence[int],
                 dtypes: Sequence[str] = ("float32",)) -> np.ndarray:
    """The constant for `role`, after checking its shape and dtype (fail names the constant)."""
    a = consts[role]
    cname = kernel.consts.get(role, role)
    if tuple(a.shape) != tuple(shape):
        fail(kernel, f"constant {cname!r} ({role}) has shape {list(a.shape)}; expected {list(shape)}")
    if a.dtype not in dtypes:  # (dtype == "int8" compares by name; str(dtype) is slow in NumPy 2)
        fail(kernel, f"constant {cname!r} ({role}) has dtype {a.dtype}; expected one of {list(dtypes)}")
    return a


def attr_int(kernel: Kernel, key: str, minimum: int = 1) -> int:
    """Required integer attr >= `minimum`."""
    v = kernel.attrs.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        fail(kernel, f"attr {key!r} must be an integer >= {minimum} (got {v!r})")
    return v


def attr_float(kernel: Kernel, key: str, positive: bool = True) -> float:
    """Required finite float attr (> 0 if `positive`)."""
    v = kernel.attrs.get(key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and (v > 0 or not positive)
    if not ok:
        fail(kernel, f"attr {key!r} must be a finite{' positive' if positive else ''} number (got {v!r})")
    return float(v)


def attr_choice(kernel: Kernel, key: str, choices: Sequence[str], default: str | None = None) -> str:
    """String attr among `choices` (`default` if absent and a default is given)."""
    v = kernel.attrs.get(key, default)
    if v not in choices:
        fail(kernel, f"attr {key!r} must be one of {list(choices)} (got {v!r})")
    return str(v)


def expect_attrs(kernel: Kernel, known: Sequence[str]) -> None:
    """Fail on attrs outside `known` (catches typos such as 'head' for 'heads')."""
    extra = sorted(set(kernel.attrs) - set(known) - {"dtype"})
    if extra:
        fail(kernel, f"unknown attr(s) {extra}; known {sorted(known)}")


def out(kernel: Kernel, shape: Sequence[int], dtype: str = "float32", quant: dict[str, Any] | None = None,
        index: int = 0) -> TensorInfo:
    """TensorInfo for output `index` of `kernel`."""
    return TensorInfo(kernel.outputs[index], tuple(shape), dtype, quant)


# Importing the op modules registers them (they import the helpers above).
from edgevit.lower.ops import (  # noqa: E402,F401
    add, add_pos, attention, cls_concat, gelu, layernorm, linear, patch_embed, pool, reshape, token_merge,
)
