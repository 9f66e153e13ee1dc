"""NAS cost estimation: the exact memory of the firmware a spec would become, ~100+ specs per second.

`skeleton_program(spec)` builds, without torch, calibration or quantization, the int8 Program
that `lower_int8(quant(model of spec))` would give: the same kernels (names, ops, order), tensors
(names, shapes, dtypes), code-relevant attrs and constant shapes/dtypes, with placeholder values
(zero weights, unit quantizations, the real shared score LUT). The MCU planner only reads those,
so `McuTarget().estimate(skeleton_program(spec), profile)` equals the estimate of the real Program
(arena, lower bound, naive plan, stack, weights, code, flash, MACs; tests/nas/test_nas_estimate.py).

It mirrors `edgevit/lower/from_quantized.py` (kernel for kernel) and the quant pass's defaults
(`edgevit/passes/quantize.py`: w=8 or w=4 with the head kept at 8 bits, a=8, residual int8, GELU
fused into fc1). When the lowering changes, the drift test fails.

`Estimator(profile)(spec) -> SpecCosts`: the planner's figures through
`get_target(profile).estimate(...)` (the numbers `edgevit compile` emits), parameters from
`edgevit.model.counts.count_params`, and a latency from the profile's `LatencyModel`
(`edgevit/targets/mcu/latency.py`; None when its core is not calibrated). Results are cached by spec
(the spec's name is not part of the key: it changes nothing that is costed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevit.errors import UserInputError
from edgevit.lower.program import Kernel, Program, TensorInfo
from edgevit.model.spec import ViTSpec

SCORE_LUT = "softmax.score_lut"  # from_quantized.SCORE_LUT (not imported: that module imports torch)
UNIT_QUANT = {"scale": 1.0, "zero_point": 0}  # placeholder TensorInfo.quant of every int8 activation
GELU_LUT_SIZE = 256


# ---------------------------------------------------------------- skeleton Program

def _out_quant(dtype: str = "int8") -> dict[str, Any]:
    """A valid placeholder `out_quant` attr (scale 1, zero point 0)."""
    return {"scale": 1.0, "zero_point": 0, "dtype": dtype}


_ADD_ATTRS = {"ka": 0, "kb": 0, "bias": 0, "shift": 16}
_LN_ATTRS = {"frac_bits": 0, "eps_fixed": 1, "out_shift": 40}
_ATTN_ATTRS = {"score_multiplier": 0, "score_shift": 0, "out_multiplier": 0, "out_shift": 0}


_ZEROS: dict[tuple, np.ndarray] = {}
_ZEROS_MAX = 20000


def _zeros(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A read-only zero array (a broadcast view of one scalar: no memory, `nbytes` as a real array),
    shared per (shape, dtype)."""
    key = (shape, dtype)
    a = _ZEROS.get(key)
    if a is None:
        if len(_ZEROS) >= _ZEROS_MAX:
            _ZEROS.clear()
        a = _ZEROS[key] = np.broadcast_to(np.zeros((), dtype), shape)
    return a


class _Skeleton:
    """Appends kernels whose output TensorInfos are given directly (no op inference: the drift test
    validates whole skeletons), with placeholder constants."""

    def __init__(self) -> None:
        self.tensors: dict[str, TensorInfo] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.kernels: list[Kernel] = []

    def tensor(self, name: str, shape: tuple[int, ...], dtype: str = "int8") -> str:
        """Declare tensor `name` (int8/int16 with the unit quantization; int32 sizes without)."""
        self.tensors[name] = TensorInfo(name, shape, dtype, None if dtype == "int32" else dict(UNIT_QUANT))
        return name

    def const(self, name: str, shape: tuple[int, ...], dtype: str) -> str:
        """A zero constant of `shape` and `dtype` (`_zeros`)."""
        self.consts[name] = _zeros(shape, dtype)
        return name

    def kernel(self, op: str, name: str, inputs: list[str], outputs: list[str], attrs: dict | None = None,
               consts: dict[str, str] | None = None) -> None:
        """Append a kernel (outputs already declared with `tensor`)."""
        self.kernels.append(Kernel(op, name, tuple(inputs), tuple(outputs), dict(consts or {}), dict(attrs or {})))

    def gemm_consts(self, prefix: str, m: int, k: int, bits: int) -> dict[str, str]:
        """weight int8 [m, k] (4-bit: [m, ceil(k/2)] packed), bias / multiplier / shift int32 [m]."""
        return {"weight": self.const(f"{prefix}.weight", (m, k if bits == 8 else (k + 1) // 2), "int8"),
                "bias": self.const(f"{prefix}.bias", (m,), "int32"),
                "multiplier": self.const(f"{prefix}.multiplier", (m,), "int32"),
                "shift": self.const(f"{prefix}.shift", (m,), "int32")}


def _linear(s: _Skeleton, prefix: str, x: str, out: str, m: int, rank: int | None, bits: int,
            gelu_out: str | None = None) -> str:
    """from_quantized.lower_linear_int: x [N, K] -> out [N, m] (low rank: `prefix.a` -> `out.a`, then
    `prefix.b`); with `gelu_out` the GELU is fused and the output is named `gelu_out`."""
    n, k = s.tensors[x].shape
    if rank is not None:
        mid = _linear(s, f"{prefix}.a", x, f"{out}.a", rank, None, bits)
        return _linear(s, f"{prefix}.b", mid, out, m, None, bits, gelu_out)
    consts = s.gemm_consts(prefix, m, k, bits)
    attrs: dict[str, Any] = {"out_quant": _out_quant()}
    if bits == 4:
        attrs["weight_bits"] = 4
    name = out
    if gelu_out is not None:
        consts["act_lut"] = s.const(f"{prefix}.act_lut", (GELU_LUT_SIZE,), "int8")
        attrs.update(activation="gelu", act_in_quant=_out_quant())
        name = gelu_out
    s.kernel("linear", prefix, [x], [s.tensor(name, (n, m))], attrs, consts)
    return name


def _layernorm(s: _Skeleton, prefix: str, x: str, out: str) -> str:
    """from_quantized.lower_layernorm_int: x [N, D] -> int8 out [N, D]; gain int32, bias int64 [D]."""
    shape = s.tensors[x].shape
    consts = {"gain": s.const(f"{prefix}.gain", shape[-1:], "int32"),
              "bias": s.const(f"{prefix}.bias", shape[-1:], "int64")}
    s.kernel("layernorm", prefix, [x], [s.tensor(out, shape)], {**_LN_ATTRS, "out_quant": _out_quant()}, consts)
    return out


def _add(s: _Skeleton, name: str, x: str, h: str, out: str) -> str:
    """from_quantized.lower_add_int (residual int8)."""
    s.kernel("add", name, [x, h], [s.tensor(out, s.tensors[x].shape)], {**_ADD_ATTRS, "out_quant": _out_quant()})
    return out


def _embed(s: _Skeleton, spec: ViTSpec, image: str) -> str:
    """from_quantized.lower_embed_int: image [C, H, W] -> embed [N, D]."""
    d, c, p = spec.embed_dim, spec.in_channels, spec.patch_size
    consts = s.gemm_consts("patch_embed.proj", d, c * p * p, 8)
    t = s.tensor("patches", (spec.num_patches, d))
    s.kernel("patch_embed", "patch_embed", [image], [t], {"patch": p, "out_quant": _out_quant()}, consts)
    if spec.pool == "cls":
        cls = s.const("cls_token", (d,), "int8")
        t0, t = t, s.tensor("tokens", (spec.num_patches + 1, d))
        s.kernel("cls_concat", "cls_concat", [t0], [t], consts={"cls": cls})
    pos = s.const("pos_embed", s.tensors[t].shape, "int8")
    s.kernel("add_pos", "pos_embed", [t], [s.tensor("embed", s.tensors[t].shape)],
             {**_ADD_ATTRS, "out_quant": _out_quant()}, {"pos": pos})
    return "embed"


def _attention(s: _Skeleton, spec: ViTSpec, i: int, qkv: str, size: str | None, n_all: int) -> str:
    """from_quantized.lower_attention_int: qkv [N, 3A] (+ int32 sizes) -> t{i}.attn [N, A]."""
    blk, n = spec.blocks[i], s.tensors[qkv].shape[0]
    if SCORE_LUT not in s.consts:
        s.consts[SCORE_LUT] = _score_lut()
    prefix = f"blocks.{i}.attn.core"
    consts = {"score_lut": SCORE_LUT}
    if size is not None:
        consts["log_size"] = s.const(f"{prefix}.log_size", (n_all - n + 1,), "int32")
    attrs = {"heads": blk.heads, "head_dim": blk.head_dim, **_ATTN_ATTRS, "out_quant": _out_quant()}
    out = s.tensor(f"t{i}.attn", (n, blk.attn_dim))
    s.kernel("attention", prefix, [qkv] + ([size] if size else []), [out], attrs, consts)
    return out


def _block(s: _Skeleton, spec: ViTSpec, i: int, x: str, size: str | None, bits: int) -> tuple[str, str | None]:
    """from_quantized.lower_block_int (GELU fused): x [N, D] -> (t{i}.out [N - r, D], sizes)."""
    blk, p, t, d = spec.blocks[i], f"blocks.{i}", f"t{i}", spec.embed_dim
    n_all = spec.num_patches + spec.num_prefix
    h = _layernorm(s, f"{p}.norm1", x, f"{t}.ln1")
    qkv = _linear(s, f"{p}.attn.qkv", h, f"{t}.qkv", 3 * blk.attn_dim, blk.rank("qkv"), bits)
    h = _attention(s, spec, i, qkv, size, n_all)
    h = _linear(s, f"{p}.attn.proj", h, f"{t}.proj", d, blk.rank("proj"), bits)
    x = _add(s, f"{p}.add1", x, h, f"{t}.res1")
    if blk.merge_r:
        n = s.tensors[x].shape[0] - blk.merge_r
        outs = [s.tensor(f"{t}.merged", (n, d)), s.tensor(f"{t}.size", (n,), "int32")]
        attrs = {"r": blk.merge_r, "heads": blk.heads, "head_dim": blk.head_dim, "protect": spec.num_prefix}
        s.kernel("token_merge", f"{p}.merge", [x, qkv] + ([size] if size else []), outs, attrs)
        x, size = outs
    h = _layernorm(s, f"{p}.norm2", x, f"{t}.ln2")
    h = _linear(s, f"{p}.mlp.fc1", h, f"{t}.fc1", blk.mlp_hidden, blk.rank("fc1"), bits, gelu_out=f"{t}.gelu")
    h = _linear(s, f"{p}.mlp.fc2", h, f"{t}.fc2", d, blk.rank("fc2"), bits)
    return _add(s, f"{p}.add2", x, h, f"{t}.out"), size


def _head(s: _Skeleton, spec: ViTSpec, x: str) -> str:
    """from_quantized.lower_head_int: tokens [N, D] -> pooled -> normed -> head [1, K] -> logits [K]."""
    attrs: dict[str, Any] = {"mode": spec.pool}
    if spec.pool == "mean":
        attrs.update(in_zero_point=0, multiplier=0, shift=0, out_quant=_out_quant())
    s.kernel("pool", "pool", [x], [s.tensor("pooled", (1, spec.embed_dim))], attrs)
    h = _layernorm(s, "norm", "pooled", "normed")
    h = _linear(s, "head", h, "head", spec.num_classes, None, 8)  # w=4 keeps the head at 8 bits (quantize.W4_KEEP_8BIT)
    s.kernel("reshape", "flatten", [h], [s.tensor("logits", (spec.num_classes,))], {"shape": [spec.num_classes]})
    return "logits"


def _score_lut() -> np.ndarray:
    """The model-wide attention score LUT (intlut.make_score_lut defaults, as lowering uses), cached."""
    global _SCORE_LUT_TABLE
    if _SCORE_LUT_TABLE is None:
        from edgevit.lower.intlut import make_score_lut

        _SCORE_LUT_TABLE = make_score_lut()["table"]
        _SCORE_LUT_TABLE.setflags(write=False)
    return _SCORE_LUT_TABLE


_SCORE_LUT_TABLE: np.ndarray | None = None


def skeleton_program(spec: ViTSpec, weight_bits: int = 8) -> Program:
    """The int8 Program `lower_int8` gives for a quantized model of `spec` (quant pass w=`weight_bits`
    (8 or 4: then every block linear is 4-bit, the head 8-bit), a=8, residual int8), with placeholder
    constants; `image` int8 [C, H, W] -> `logits` int8 [K]. Not validated (call `.validate()`)."""
    if weight_bits not in (4, 8):
        raise UserInputError(f"weight_bits must be 8 or 4 (got {weight_bits!r})")
    s = _Skeleton()
    image = s.tensor("image", (spec.in_channels, spec.image_size, spec.image_size))
    x, size = _embed(s, spec, image), None
    for i in range(spec.depth):
        x, size = _block(s, spec, i, x, size, weight_bits)
    logits = _head(s, spec, x)
    meta = {"lowering": "int8", "skeleton": True, "weight_bits": weight_bits}
    return Program(name=spec.name or "vit", inputs=[image], outputs=[logits], tensors=s.tensors, consts=s.consts,
                   kernels=s.kernels, meta=meta)


# ---------------------------------------------------------------- the estimator

@dataclass(frozen=True)
class SpecCosts:
    """What a spec costs on a profile: the planner's int8 memory figures (bytes), MACs and
    parameters, the latency model's instructions and ms (None when the core is not calibrated),
    the profile's budgets and whether both fit (sram_bytes = arena + stack <= sram_budget and
    flash_bytes = weights + code <= flash_budget)."""

    arena_bytes: int
    stack_bytes: int
    sram_bytes: int
    flash_bytes: int
    weight_bytes: int
    code_bytes: int
    macs: int
    params: int
    latency_ms: float | None
    instructions: int | None
    sram_budget: int
    flash_budget: int
    fits: bool

    @property
    def fits_sram(self) -> bool:
        """True when arena + stack fit the profile's SRAM."""
        return self.sram_bytes <= self.sram_budget

    @property
    def fits_flash(self) -> bool:
        """True when weights + code fit the profile's flash."""
        return self.flash_bytes <= self.flash_budget

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)


def _load_profile(profile):
    """A Profile from a Profile, a shipped name or a YAML path."""
    if isinstance(profile, (str, Path)):
        from edgevit.profiles.profile import load_profile

        return load_profile(profile)
    return profile


def _spec_key(spec: ViTSpec) -> tuple:
    """What the costs depend on: every field of the spec but its name."""
    return (spec.image_size, spec.in_channels, spec.patch_size, spec.embed_dim, spec.num_classes, spec.blocks,
            spec.pool, spec.norm_eps)


class Estimator:
    """SpecCosts of ViTSpecs on one profile: `Estimator(profile)(spec)`; cached by spec (name ignored).

    Memory comes from `get_target(profile).estimate(skeleton_program(spec, weight_bits), profile)`:
    the real planner, i.e. the figures `edgevit compile` emits for that spec quantized with
    `quant(w=weight_bits)`. Latency from `LatencyModel.load(profile)` on the plan's steps.
    UserInputError for profiles without a target that plans memory (cpu / fpga today).
    """

    def __init__(self, profile, weight_bits: int = 8) -> None:
        from edgevit.targets.mcu.latency import LatencyModel
        from edgevit.backend.target import get_target

        self.profile = _load_profile(profile)
        if weight_bits not in (4, 8):
            raise UserInputError(f"weight_bits must be 8 or 4 (got {weight_bits!r})")
        self.weight_bits = weight_bits
        try:
            self.target = get_target(self.profile)
        except UserInputError as e:
            raise UserInputError(f"NAS cost estimation needs an MCU profile today: {e}") from None
        self.latency = LatencyModel.load(self.profile)
        self._cache: dict[tuple, SpecCosts] = {}

    def __call__(self, spec: ViTSpec) -> SpecCosts:
        """The costs of `spec` (computed once per distinct spec)."""
        key = _spec_key(spec)
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = self.compute(spec)
        return got

    def __len__(self) -> int:
        """Number of cached specs."""
        return len(self._cache)

    def compute(self, spec: ViTSpec) -> SpecCosts:
        """The costs of `spec`, uncached."""
        from edgevit.model.counts import count_params

        program = skeleton_program(spec, self.weight_bits)
        costs = self.target.estimate(program, self.profile)
        steps = costs.plan.steps if costs.plan is not None else None
        instructions = self.latency.predict(program, steps) if self.latency.available else None
        instructions = None if instructions is None else int(round(instructions))
        return SpecCosts(arena_bytes=costs.arena_bytes, stack_bytes=costs.stack_bytes, sram_bytes=costs.sram_bytes,
                         flash_bytes=costs.flash_bytes, weight_bytes=costs.weight_bytes, code_bytes=costs.code_bytes,
                         macs=costs.macs, params=count_params(spec), latency_ms=self.latency.latency_ms(instructions),
                         instructions=instructions, sram_budget=costs.sram_budget,
                         flash_budget=costs.flash_budget, fits=costs.fits)
