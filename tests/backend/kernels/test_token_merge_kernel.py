"""The generated `token_merge` kernel (ToMe bipartite matching, two outputs) against the reference
interpreter: integer programs bit-exact (tokens and sizes), float32 within 1e-4 (in practice exact)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgevit.lower.ops import get_op, kernel_dtype
from edgevit.lower.program import Kernel, TensorInfo
from edgevit.backend.csrc import c_array, ctype_of
from edgevit.backend.kernels.harness import kernel_source, request_for, run_kernel
from edgevit.backend.kernels.tvmc import lower_to_c
from edgevit.lower.ops.token_merge import scratch_layout
from elementwise_cases import FLOAT_RTOL, assert_no_tvm, kernel_def, random_int

SCHEDULES = ["fast", "reference"]
needs_qemu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed")


@dataclass
class MergeCase:
    """One token_merge kernel, its tensors and one image's inputs (tokens, qkv[, size])."""

    kernel: Kernel
    tensors: dict[str, TensorInfo]
    inputs: list[np.ndarray]


def merge_case(tokens: np.ndarray, qkv: np.ndarray, sizes: np.ndarray | None, r: int, heads: int, hd: int,
               protect: int) -> MergeCase:
    """A validated case: inputs x, qkv (, s) -> outputs y, ys (infos inferred by the op)."""
    is_int = tokens.dtype != np.float32
    quants = [{"scale": 0.05, "zero_point": 3} if is_int else None, {"scale": 0.1, "zero_point": 0} if is_int else None]
    arrays = [tokens, qkv] + ([sizes] if sizes is not None else [])
    infos = [TensorInfo(name, a.shape, str(a.dtype), q) for name, a, q in zip(("x", "qkv", "s"), arrays,
                                                                             quants + [None])]
    kernel = Kernel("token_merge", "blocks.0.merge", tuple(i.name for i in infos), ("y", "ys"),
                    attrs={"r": r, "heads": heads, "head_dim": hd, "protect": protect})
    outs = get_op("token_merge").validate(kernel, infos, {})
    return MergeCase(kernel, {i.name: i for i in [*infos, *outs]}, arrays)


def random_case(rng: np.random.Generator, n: int, d: int, heads: int, hd: int, r: int, protect: int, dtype: str,
                sized: bool, ties: str = "none") -> MergeCase:
    """Random tokens/keys/sizes; `ties`: "keys" (groups of identical keys), "zero" (some all-zero keys),
    "basis" (keys along coordinate axes: exact float ties), "none"."""
    w = 3 * heads * hd
    if dtype == "float32":
        x = rng.standard_normal((n, d)).astype(np.float32)
        qkv = rng.standard_normal((n, w)).astype(np.float32)
    else:
        x, qkv = random_int(rng, dtype, (n, d)), random_int(rng, "int8", (n, w))
    keys = qkv[:, heads * hd:2 * heads * hd]
    if ties == "keys":
        keys[: n // 2 + 1] = keys[0]                  # equal A and B keys: best-match and rank ties
        keys[n - 2:] = keys[n - 1]
    elif ties == "zero":
        keys[rng.permutation(n)[: max(1, n // 3)]] = 0  # u = 0: similarity 0 with everything
    elif ties == "basis":
        keys[:] = 0
        keys[np.arange(n), rng.integers(0, heads * hd, n)] = rng.choice([-3, 2, 5], n)
    sizes = None
    if sized:
        sizes = rng.integers(1, 9, n).astype(np.int32 if dtype != "float32" else np.float32)
    return merge_case(x, qkv, sizes, r, heads, hd, protect)


def reference(case: MergeCase) -> list[np.ndarray]:
    """Both outputs of the reference interpreter's runner (one image)."""
    infos = [case.tensors[t] for t in case.kernel.inputs]
    run = get_op("token_merge").runner(kernel_dtype(case.kernel, infos), case.kernel)
    return [o[0] for o in run(case.kernel, [a[None] for a in case.inputs], {})]


def generate(case: MergeCase, schedule: str = "fast"):
    """(KernelCode, KernelRequest) of the registered generator."""
    req = request_for(case.kernel, case.tensors, {}, schedule=schedule)
    return kernel_def("token_merge").generate(req), req


def check(case: MergeCase, schedule: str = "fast") -> None:
    """Generated C (host gcc, sanitizers on) == reference: tokens and sizes, dtypes and shapes."""
    code, req = generate(case, schedule)
    scratch = get_op("token_merge").traits.scratch
    assert code.scratch_bytes == scratch(case.kernel, list(req.in_infos), list(req.out_infos), None)
    got = run_kernel(code, req, case.inputs)
    for g, want in zip(got, reference(case), strict=True):
        assert g.dtype == want.dtype and g.shape == want.shape
        if want.dtype == np.float32:
            np.testing.assert_allclose(g, want, rtol=FLOAT_RTOL, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, want)


def draw_r(data, n: int, protect: int) -> int:
    """A legal r for N tokens: 1..(N - protect) // 2."""
    return data.draw(st.integers(1, (n - protect) // 2), label="r")


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(2, 15), d=st.integers(1, 9), heads=st.integers(1, 3),
       hd=st.integers(1, 7), protect=st.integers(0, 2), dtype=st.sampled_from(["int8", "int16"]), sized=st.booleans(),
       ties=st.sampled_from(["none", "keys", "zero"]), schedule=st.sampled_from(SCHEDULES), data=st.data())
def test_int_token_merge_is_bit_exact(seed, n, d, heads, hd, protect, dtype, sized, ties, schedule, data) -> None:
    assume((n - protect) // 2 >= 1)
    r = draw_r(data, n, protect)
    check(random_case(np.random.default_rng(seed), n, d, heads, hd, r, protect, dtype, sized, ties), schedule)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(2, 15), d=st.integers(1, 9), heads=st.integers(1, 3),
       hd=st.integers(1, 7), protect=st.integers(0, 2), sized=st.booleans(), ties=st.sampled_from(["none", "basis"]),
       schedule=st.sampled_from(SCHEDULES), data=st.data())
def test_float_token_merge(seed, n, d, heads, hd, protect, sized, ties, schedule, data) -> None:
    assume((n - protect) // 2 >= 1)
    r = draw_r(data, n, protect)
    check(random_case(np.random.default_rng(seed), n, d, heads, hd, r, protect, "float32", sized, ties), schedule)


@pytest.mark.parametrize("n, d, heads, hd, r, dtype, schedule", [
    (50, 64, 4, 16, 2, "int8", "fast"),        # fmnist-tiny's first block
    (197, 48, 3, 64, 16, "int8", "fast"),      # ViT-Tiny-like token count, wide heads
    (197, 24, 2, 65, 8, "int16", "reference"),  # head_dim above the unroll limit
    (64, 32, 2, 8, 31, "float32", "fast"),     # the largest r for N = 64 with a class token
])
def test_token_merge_model_sizes(n, d, heads, hd, r, dtype, schedule) -> None:
    rng = np.random.default_rng(n + r)
    check(random_case(rng, n, d, heads, hd, r, 1, dtype, sized=True), schedule)


@pytest.mark.parametrize("n, r, dtype, schedule", [
    (198, 16, "int8", "fast"),       # DeiT-distilled token count: class + distillation + 196 patches
    (66, 32, "int16", "reference"),  # the largest r for N = 66 with two protected tokens
    (18, 8, "float32", "fast"),
])
def test_token_merge_protects_class_and_distillation_tokens(n, r, dtype, schedule) -> None:
    """protect = 2: rows 0 and 1 come out unchanged, with their sizes, whatever the keys."""
    rng = np.random.default_rng(n)
    case = random_case(rng, n, 24, 2, 8, r, 2, dtype, sized=True, ties="keys")
    check(case, schedule)
    y, ys = reference(case)
    np.testing.assert_array_equal(y[:2], case.inputs[0][:2])
    np.testing.assert_array_equal(ys[:2], case.inputs[2][:2])


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_int_token_merge_extremes(schedule) -> None:
    """int16 codes at both ends, sizes summing to 2^14 (2 num + den close to 2^32), saturated keys."""
    n, d, heads, hd = 8, 6, 2, 3
    x = np.where(np.arange(n * d).reshape(n, d) % 3 == 0, 32767, -32768).astype(np.int16)
    x[1] = 32767
    qkv = np.full((n, 3 * heads * hd), -128, np.int8)  # every key equal and saturated: all ties
    sizes = np.array([1, 16384 - 7 - 1, 1, 1, 1, 1, 1, 1], np.int32)
    for protect in (0, 1, 2):
        check(merge_case(x, qkv, sizes, 3, heads, hd, protect), schedule)
    qkv[:, heads * hd:2 * heads * hd] = 0  # all-zero keys: u = 0 everywhere
    check(merge_case(x, qkv, sizes, 4, heads, hd, 0), schedule)


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_scratch_is_linear_in_tokens_and_code_is_shared(dtype) -> None:
    rng = np.random.default_rng(1)
    case = random_case(rng, 197, 64, 3, 64, 8, 1, dtype, sized=True)
    code, req = generate(case)
    traits = get_op("token_merge").traits
    assert not traits.row_wise and traits.inplace == () and not traits.alias
    layout, total = scratch_layout(197, 64, 8, dtype == "float32")
    item = 8 if dtype == "float32" else 2
    trait = traits.scratch(case.kernel, list(req.in_infos), list(req.out_infos), None)
    assert code.scratch_bytes == total == trait
    assert total < (98 + 1) * 64 * item + 99 * 16 + 64  # the B tokens' unit keys + one row + O(N) indices
    assert total < (8 if dtype == "float32" else 4) * 99 * 98  # below the Na x Nb similarity matrix
    assert scratch_layout(2 * 197, 64, 8, dtype == "float32")[1] <= 2 * total + 64  # linear in N
    assert [a.kind for a in code.args] == ["tensor", "tensor", "tensor", "tensor", "tensor", "scratch"]
    assert [a.ref for a in code.args[:5]] == ["x", "qkv", "s", "y", "ys"]
    other = random_case(rng, 197, 64, 3, 64, 8, 1, dtype, sized=True)  # another layer, same shapes
    assert generate(other)[0].func == code.func
    assert generate(random_case(rng, 197, 64, 3, 64, 8, 0, dtype, sized=True))[0].func != code.func  # protect
    assert generate(random_case(rng, 197, 64, 1, 192, 8, 1, dtype, sized=True))[0].func != code.func  # heads
    assert generate(case, "reference")[0].func != code.func
    for schedule in SCHEDULES:
        c, _ = generate(case, schedule)
        src = lower_to_c({c.func: c.prim_func})[c.func]
        assert_no_tvm(src)
        assert str(99 * 98) not in src  # never an Na x Nb buffer


def test_size_output_dtypes_and_optional_size() -> None:
    rng = np.random.default_rng(2)
    for dtype, size_dt in (("int8", np.int32), ("int16", np.int32), ("float32", np.float32)):
        case = random_case(rng, 9, 4, 2, 3, 2, 1, dtype, sized=False)
        code, req = generate(case)
        assert [a.ref for a in code.args if a.kind == "tensor"] == ["x", "qkv", "y", "ys"]
        assert req.out_infos[1].dtype == np.dtype(size_dt).name
        check(case)


def test_kernel_scratch_is_the_op_trait() -> None:
    """The planner reads the op's scratch trait; the kernel sizes its scratch with the same function."""
    from edgevit.backend.kernels import token_merge

    assert get_op("token_merge").traits.scratch is token_merge.scratch_bytes


# ---------------------------------------------------------------- on the emulated Cortex-M7 (DSP path)

def _firmware_main(case: MergeCase, code, req) -> str:
    """main(): the kernel on the case's inputs, SysTick around it, then `TICKS <n>` and `OUT <hex>` (both
    outputs' bytes) over semihosting."""
    decls, call = [], []
    for j, arr in enumerate(case.inputs):
        decls.append(c_array(f"in_{j}", arr, const=False, static=True))
    for j, info in enumerate(req.out_infos):
        decls.append(f"static {ctype_of(info.dtype)} out_{j}[{info.size}] __attribute__((aligned(8)));\n")
    decls.append(f"static int64_t scratch[{max(1, -(-code.scratch_bytes // 8))}];\n")
    names = {**{i.name: f"in_{j}" for j, i in enumerate(req.in_infos)},
             **{o.name: f"out_{j}" for j, o in enumerate(req.out_infos)}}
    for a in code.args:
        call.append(f"({a.ctype}){names[a.ref] if a.kind == 'tensor' else 'scratch'}")
    syst = "(*(volatile uint32_t *)0xE000E0{:02X})"
    dump = "".join(f"  for (unsigned i = 0; i < sizeof(out_{j}); i++)\n"
                   f"    printf(\"%02x\", (unsigned)((uint8_t *)out_{j})[i]);\n" for j in range(len(req.out_infos)))
    return ("#include <stdio.h>\n" + "".join(decls) + "int main(void) {\n"
            f"  {syst.format(0x14)} = 0xFFFFFF; {syst.format(0x18)} = 0; {syst.format(0x10)} = 5;\n"
            f"  uint32_t t0 = {syst.format(0x18)};\n  {code.func}({', '.join(call)});\n"
            f"  uint32_t t1 = {syst.format(0x18)};\n"
            '  printf("TICKS %lu\\nOUT ", (unsigned long)((t0 - t1) & 0xFFFFFF));\n' + dump
            + '  printf("\\n");\n  return 0;\n}\n')


def run_on_qemu(case: MergeCase, workdir) -> tuple[list[np.ndarray], int]:
    """The fast int kernel built with the Cortex-M7 profile's flags (SMLAD path of micro/token_merge.h) and
    run on qemu-system-arm -icount shift=0: (outputs, SysTick ticks = instructions / 40)."""
    from gemm_cases import build_and_run_firmware

    code, req = generate(case)
    source = kernel_source([code], lower_to_c({code.func: code.prim_func})) + _firmware_main(case, code, req)
    hex_out, ticks = build_and_run_firmware(source, workdir)
    raw, outs, pos = bytes.fromhex(hex_out), [], 0
    for info in req.out_infos:
        outs.append(np.frombuffer(raw[pos:pos + info.nbytes], dtype=info.dtype).reshape(info.shape))
        pos += info.nbytes
    return outs, ticks


@needs_qemu
@pytest.mark.parametrize("n, heads, hd, ties", [(50, 4, 16, "keys"), (23, 3, 7, "none")])
def test_int8_token_merge_on_cortex_m7(tmp_path, n, heads, hd, ties) -> None:
    """The SMLAD dot products (even and odd head_dim) on the emulated M7 equal the reference; fmnist-tiny's
    first merge (N = 50, hd = 16, D = 64, r = 2) costs ~120k instructions (unit keys ~60%, isqrt ~25%)."""
    case = random_case(np.random.default_rng(n), n, 64, heads, hd, 2, 1, "int8", sized=True, ties=ties)
    got, ticks = run_on_qemu(case, tmp_path)
    for g, want in zip(got, reference(case), strict=True):
        np.testing.assert_array_equal(g, want)
    assert 0 < ticks * 40 < 200_000
