"""Test helpers for the generated non-GEMM kernels: random single-kernel cases, the reference
interpreter's answer (the op's run_int8 / run_float), and the TVM-generated C run by the host harness.

A `Case` is one Program kernel with its TensorInfos, constants (role -> array) and one image's
inputs. Builders draw quantization constants the way lowering does (`make_add_params`,
`make_layernorm_params`, `make_score_lut` / `score_index_params`, `make_gelu_lut`,
`quantize_multiplier`), from a NumPy Generator, so hypothesis only has to draw seeds and shapes.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field

import numpy as np

from edgevit.lower.intlut import make_gelu_lut, make_score_lut, score_index_params
from edgevit.lower.intmath import make_add_params, make_layernorm_params, quantize_multiplier, round_half_up_array
from edgevit.lower.ops import get_op, kernel_dtype
from edgevit.lower.ops.intcommon import add_attrs, quant_attr
from edgevit.lower.program import Kernel, TensorInfo
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.harness import request_for, run_kernel
from edgevit.backend.kernels.tvmc import lower_to_c

FLOAT_RTOL = 1e-4


@dataclass
class Case:
    """One kernel, its tensors (name -> TensorInfo), constants (role -> array) and one image's inputs."""

    kernel: Kernel
    tensors: dict[str, TensorInfo]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[np.ndarray] = field(default_factory=list)

    @property
    def out_info(self) -> TensorInfo:
        """TensorInfo of output 0."""
        return self.tensors[self.kernel.outputs[0]]


def make_case(op: str, inputs: list[np.ndarray], consts: dict | None = None, attrs: dict | None = None,
              quants: list | None = None) -> Case:
    """A validated single-kernel Case: inputs x0, x1, ... -> y (output info inferred by the op)."""
    consts = dict(consts or {})
    quants = quants or [None] * len(inputs)
    infos = [TensorInfo(f"x{i}", a.shape, str(a.dtype), q) for i, (a, q) in enumerate(zip(inputs, quants))]
    kernel = Kernel(op, f"k_{op}", tuple(i.name for i in infos), ("y",), consts={r: f"c_{r}" for r in consts},
                    attrs=dict(attrs or {}))
    (out,) = get_op(op).validate(kernel, infos, consts)
    tensors = {i.name: i for i in infos}
    tensors["y"] = out
    return Case(kernel, tensors, consts, list(inputs))


def kernel_def(op: str) -> KernelDef:
    """The KernelDef registered by kernels/<op>.py (imported directly, so these tests do not depend
    on the other kernel files importing cleanly)."""
    return importlib.import_module(f"edgevit.backend.kernels.{op}").KERNEL


def reference(case: Case) -> np.ndarray:
    """Output 0 of the reference interpreter's runner for the case (one image)."""
    infos = [case.tensors[t] for t in case.kernel.inputs]
    run = get_op(case.kernel.op).runner(kernel_dtype(case.kernel, infos), case.kernel)
    (y,) = run(case.kernel, [a[None] for a in case.inputs], case.consts)
    return y[0]


def request(case: Case, rows: int | None = None, schedule: str = "fast") -> KernelRequest:
    """The KernelRequest of the case."""
    return request_for(case.kernel, case.tensors, case.consts, rows=rows, schedule=schedule)


def generate(case: Case, rows: int | None = None, schedule: str = "fast") -> tuple[KernelCode, KernelRequest]:
    """(KernelCode, KernelRequest) from the registered generator of the case's op."""
    req = request(case, rows, schedule)
    kdef = kernel_def(case.kernel.op)
    assert req.dtype in kdef.dtypes
    return kdef.generate(req), req


def run_generated(case: Case, rows: int | None = None, schedule: str = "fast", inplace: int | None = None):
    """Output 0 of the TVM-generated C (host gcc, sanitizers on) for the case."""
    code, req = generate(case, rows, schedule)
    scratch = get_op(case.kernel.op).traits.scratch
    assert code.scratch_bytes == scratch(case.kernel, list(req.in_infos), list(req.out_infos), rows)
    return run_kernel(code, req, case.inputs, inplace=inplace)[0]


def check(case: Case, rows: int | None = None, schedule: str = "fast", inplace: int | None = None,
          atol: float = 0.0) -> None:
    """Assert the generated kernel equals the reference: bit-exact for integers, FLOAT_RTOL for float32
    (plus `atol`, for outputs near zero). Row-wise kernels with `rows` are compared on those rows."""
    want = reference(case)
    got = run_generated(case, rows, schedule, inplace)
    if rows is not None:
        want = want[:rows]
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=FLOAT_RTOL, atol=atol)
    else:
        np.testing.assert_array_equal(got, want)


def c_source(case: Case, rows: int | None = None, schedule: str = "fast") -> str:
    """The plain C definition TVM generated for the case."""
    code, _ = generate(case, rows, schedule)
    return lower_to_c({code.func: code.prim_func})[code.func]


def assert_no_tvm(source: str) -> None:
    """The generated C must not mention TVM (no runtime, no workspace calls, no headers)."""
    assert not re.search(r"tvm|TVM", source), source


# ---------------------------------------------------------------- random data and quantization

def random_int(rng: np.random.Generator, dtype: str, shape) -> np.ndarray:
    """Uniform integers over the whole range of `dtype`."""
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


def random_zp(rng: np.random.Generator, dtype: str) -> int:
    """A zero point: anywhere in int8, moderate in int16."""
    return int(rng.integers(-128, 128)) if dtype == "int8" else int(rng.integers(-300, 301))


def add_case(rng, shape, a_dtype="int8", b_dtype="int8", out_dtype="int8", op="add") -> Case:
    """A random `add` (or `add_pos`: b becomes the constant pos, dtype b_dtype) case."""
    if a_dtype == "float32":
        a = rng.normal(0, 2, shape).astype(np.float32)
        b = rng.normal(0, 2, shape).astype(np.float32)
        return make_case(op, [a, b]) if op == "add" else make_case(op, [a], {"pos": b})
    sa, sb = [float(rng.uniform(0.004, 0.05)) / (1 if t == "int8" else 256) for t in (a_dtype, b_dtype)]
    so = float(rng.uniform(0.01, 0.06)) / (1 if out_dtype == "int8" else 256)
    za = random_zp(rng, a_dtype)
    zb = 0 if op == "add_pos" else random_zp(rng, b_dtype)
    p = make_add_params(sa, sb, so, za, zb, random_zp(rng, out_dtype), np.dtype(out_dtype))
    attrs = add_attrs(p, so)
    a, b = random_int(rng, a_dtype, shape), random_int(rng, b_dtype, shape)
    qa = {"scale": sa, "zero_point": za}
    if op == "add":
        return make_case("add", [a, b], {}, attrs, [qa, {"scale": sb, "zero_point": zb}])
    return make_case("add_pos", [a], {"pos": b}, attrs, [qa])


def layernorm_case(rng, n: int, d: int, dtype: str = "int8", x: np.ndarray | None = None) -> Case:
    """A random `layernorm` case (int8/int16 input; float32 with gamma, beta); `x` overrides the data."""
    if dtype == "float32":
        x = rng.normal(0.5, 2, (n, d)).astype(np.float32) if x is None else x
        consts = {"gamma": rng.normal(1, 0.3, d).astype(np.float32), "beta": rng.normal(0, 0.3, d).astype(np.float32)}
        return make_case("layernorm", [x], consts, {"eps": float(rng.choice([1e-5, 1e-6, 0.0123]))})
    s_in = float(rng.uniform(0.005, 0.05)) / (1 if dtype == "int8" else 256)
    s_out = float(rng.uniform(0.01, 0.05))
    p = make_layernorm_params(s_in, rng.normal(1, 0.3, d), rng.normal(0, 0.3, d), s_out,
                              float(rng.choice([1e-5, 1e-6])), random_zp(rng, "int8"), np.dtype(dtype))
    attrs = {"frac_bits": p["frac_bits"], "eps_fixed": p["eps_fixed"], "out_shift": p["out_shift"],
             "out_quant": quant_attr(s_out, p["out_zp"], "int8")}
    x = random_int(rng, dtype, (n, d)) if x is None else x
    return make_case("layernorm", [x], {"gain": p["gain"], "bias": p["bias"]}, attrs,
                     [{"scale": s_in, "zero_point": random_zp(rng, dtype)}])


def gelu_case(rng, shape, dtype: str = "int8") -> Case:
    """A random `gelu` case: int8 with a GELU table, or float32 normal data."""
    if dtype == "float32":
        return make_case("gelu", [rng.normal(0, 3, shape).astype(np.float32)])
    s_in, z_in = float(rng.uniform(0.01, 0.1)), random_zp(rng, "int8")
    s_out, z_out = float(rng.uniform(0.01, 0.05)), int(rng.integers(-128, -60))
    return make_case("gelu", [random_int(rng, "int8", shape)], {"lut": make_gelu_lut(s_in, z_in, s_out, z_out)},
                     {"out_quant": quant_attr(s_out, z_out, "int8")}, [{"scale": s_in, "zero_point": z_in}])


def cls_concat_case(rng, p: int, d: int, dtype: str = "int8") -> Case:
    """A random `cls_concat` case of `dtype`."""
    if dtype == "float32":
        x, cls = rng.normal(0, 1, (p, d)).astype(np.float32), rng.normal(0, 1, d).astype(np.float32)
    else:
        x, cls = random_int(rng, dtype, (p, d)), random_int(rng, dtype, d)
    return make_case("cls_concat", [x], {"cls": cls})


def pool_case(rng, n: int, d: int, dtype: str = "int8", mode: str = "mean", out_dtype: str = "int8") -> Case:
    """A random `pool` case (mode cls or mean; integer mean requantizes to out_dtype)."""
    if dtype == "float32":
        return make_case("pool", [rng.normal(0, 1, (n, d)).astype(np.float32)], {}, {"mode": mode})
    x = random_int(rng, dtype, (n, d))
    if mode == "cls":
        return make_case("pool", [x], {}, {"mode": "cls"}, [{"scale": 0.1, "zero_point": 3}])
    s_in, zp = float(rng.uniform(0.01, 0.1)) / (1 if dtype == "int8" else 256), random_zp(rng, dtype)
    rescale = 1 if out_dtype == dtype else (256 if out_dtype == "int8" else 1 / 256)
    s_out = float(rng.uniform(0.2, 1.0)) * s_in * rescale
    m, s = quantize_multiplier(s_in / (n * s_out))
    attrs = {"mode": "mean", "in_zero_point": zp, "multiplier": m, "shift": s,
             "out_quant": quant_attr(s_out, random_zp(rng, out_dtype), out_dtype)}
    return make_case("pool", [x], {}, attrs, [{"scale": s_in, "zero_point": zp}])


def log_size_table(score_scale: float, s: int) -> np.ndarray:
    """int32 [S]: log(k) in score-accumulator units, min(round_half_up(log(k) / score_scale), 2^30)."""
    return np.minimum(round_half_up_array(np.log(np.arange(1, s + 1)) / score_scale), 1 << 30).astype(np.int32)


def attention_case(rng, n: int, heads: int, hd: int, dtype: str = "int8", qscale: float | None = None,
                   qkv: np.ndarray | None = None, sizes: np.ndarray | None = None, max_size: int = 0) -> Case:
    """A random `attention` case; int8 with the shared score LUT and lowering's multipliers. With
    `sizes` ([N], token sizes after merging) the proportional-attention variant: a `size` input
    (int32, or float32 for a float kernel) and, int8, the `log_size` table of max_size entries."""
    if dtype == "float32":
        qkv = rng.normal(0, 1, (n, 3 * heads * hd)).astype(np.float32) if qkv is None else qkv
        inputs = [qkv] if sizes is None else [qkv, sizes.astype(np.float32)]
        return make_case("attention", inputs, {}, {"heads": heads, "head_dim": hd, "scale": 1 / math.sqrt(hd)})
    qscale = float(rng.uniform(0.01, 0.3)) if qscale is None else qscale
    s_out = float(rng.uniform(0.005, 0.05))
    lut = make_score_lut()
    score_scale = qscale * qscale / math.sqrt(hd)
    sm, ss = score_index_params(score_scale, lut)
    om, osh = quantize_multiplier(qscale / (255 * s_out))
    attrs = {"heads": heads, "head_dim": hd, "score_multiplier": sm, "score_shift": ss, "out_multiplier": om,
             "out_shift": osh, "out_quant": quant_attr(s_out, random_zp(rng, "int8"), "int8")}
    qkv = random_int(rng, "int8", (n, 3 * heads * hd)) if qkv is None else qkv
    consts, inputs, quants = {"score_lut": lut["table"]}, [qkv], [{"scale": qscale, "zero_point": 0}]
    if sizes is not None:
        consts["log_size"] = log_size_table(score_scale, max_size or int(sizes.max()))
        inputs, quants = [qkv, sizes.astype(np.int32)], quants + [None]
    return make_case("attention", inputs, consts, attrs, quants)
