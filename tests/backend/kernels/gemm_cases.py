"""Test helpers for the GEMM kernels (linear, patch_embed): random single-kernel cases built the way
lowering builds them, the reference interpreter's answer, and the generated C run on the host.

Integer cases follow `edgevit/lower/from_quantized.py`: int8 weights symmetric per output channel
in [-127, 127] (or [-7, 7] packed two per byte for 4-bit), an int32 bias with the input zero point
folded in, per-channel (multiplier, shift) from `quantize_multipliers` of real scales chosen so
that the outputs spread over the int8 range (and saturate a little), a GELU table from
`make_gelu_lut`. Everything is drawn from a NumPy Generator so hypothesis only draws seeds/shapes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgevit.lower.intlut import make_gelu_lut
from edgevit.lower.intmath import quantize_multipliers
from edgevit.lower.ops import get_op, kernel_dtype
from edgevit.lower.ops.intcommon import pack_int4, quant_attr
from edgevit.lower.program import Kernel, TensorInfo
from edgevit.backend.csrc import c_array, ctype_of
from edgevit.backend.kernels.base import KernelCode, KernelRequest
from edgevit.backend.kernels.harness import kernel_source, request_for, run_kernel
from edgevit.backend.kernels.tvmc import lower_to_c

FLOAT_RTOL = 1e-4
DSP_ISA = ("armv7e-m", "thumb2", "dsp")


@dataclass
class Case:
    """One kernel with its tensors (name -> TensorInfo), constants (role -> array) and one input."""

    kernel: Kernel
    tensors: dict
    consts: dict
    x: np.ndarray


def _validated(op: str, x: np.ndarray, consts: dict, attrs: dict, quant=None) -> Case:
    """A Case whose output TensorInfo is inferred (and the kernel validated) by the op."""
    info = TensorInfo("x", x.shape, str(x.dtype), quant)
    kernel = Kernel(op, f"k_{op}", ("x",), ("y",), consts={r: f"c_{r}" for r in consts}, attrs=attrs)
    (out,) = get_op(op).validate(kernel, [info], consts)
    return Case(kernel, {"x": info, "y": out}, consts, x)


def requant_consts(rng: np.random.Generator, m: int, k: int, extremes: bool = True) -> dict:
    """bias, multiplier, shift [m] for accumulators of a K-long int8 dot product: real scales around
    127 / (typical |acc|), spread over 16x both ways. With `extremes`, three random channels get a
    large scale (right shift 31 - shift < 32), a tiny one (> 46) and 0 (multiplier 0), the cases the
    fast requantize handles apart (its "wide" mode, requant.requant_mode)."""
    typical = 128.0 * 64.0 * np.sqrt(k)
    reals = 127.0 / typical * np.exp2(rng.uniform(-4.0, 4.0, m))
    if extremes:
        picks = rng.permutation(m)[:3]
        reals[picks] = [2.0 ** rng.uniform(-1.0, 3.0), 2.0 ** rng.uniform(-30.0, -16.0), 0.0][:len(picks)]
    mult, shift = quantize_multipliers(reals)
    bias = rng.integers(-int(typical), int(typical) + 1, m).astype(np.int32)
    return {"bias": bias, "multiplier": mult, "shift": shift}


def int8_weights(rng: np.random.Generator, m: int, k: int, bits: int = 8) -> np.ndarray:
    """Random symmetric weights [m, k] ([-127, 127]; 4-bit: [-7, 7] packed to [m, ceil(k/2)])."""
    lim = 127 if bits == 8 else 7
    w = rng.integers(-lim, lim + 1, (m, k))
    return w.astype(np.int8) if bits == 8 else pack_int4(w)


def linear_int8_case(rng: np.random.Generator, n: int, k: int, m: int, bits: int = 8,
                     gelu: bool = False, extremes: bool = True) -> Case:
    """A validated int8 linear [n, k] -> [n, m] with random data and requantize constants (with
    `extremes`, see `requant_consts`: the fast schedule's "wide" requantize; without: "hi")."""
    zp = int(rng.integers(-128, 128))
    consts = {"weight": int8_weights(rng, m, k, bits), **requant_consts(rng, m, k, extremes)}
    attrs = {"out_quant": quant_attr(0.05, int(rng.integers(-20, 21)), "int8")}
    if bits == 4:
        attrs["weight_bits"] = 4
    if gelu:
        attrs.update(activation="gelu", act_in_quant=quant_attr(0.04, zp, "int8"))
        consts["act_lut"] = make_gelu_lut(0.04, zp, 0.05, attrs["out_quant"]["zero_point"])
    else:
        attrs["out_quant"]["zero_point"] = zp
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    return _validated("linear", x, consts, attrs)


def requant_sweep_case(rng: np.random.Generator, hi: bool, rows: int = 6) -> Case:
    """An int8 linear (K = 4) whose columns sweep the requantize constants: every shift (hi: only
    right shifts n = 31 - shift >= 33, zero point 0, the fast schedule's "hi" mode; else all of
    [-31, 30] and a random zero point: "wide"), multipliers 2^30, 2^31 - 1 and a random one, and
    per constant pair biases that put the accumulators around 0, around +-2^(n-2) (where "wide"
    clamps) and near the int32 limits; plus multiplier-0 columns."""
    k, span = 4, 4 * 128 * 127                      # |x . w| <= span
    mults, shifts, biases = [], [], []
    for shift in range(-31, -1 if hi else 31):
        n = 31 - shift
        edge = min(1 << max(n - 2, 0), (1 << 31) - 1 - span)
        for mult in (1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))):
            for bias in (0, edge - span // 2, -edge + span // 2, (1 << 31) - 1 - span, -(1 << 31) + span):
                mults.append(mult), shifts.append(shift), biases.append(bias)
    for bias in (0, 12345, -(1 << 30)):
        mults.append(0), shifts.append(0), biases.append(bias)
    consts = {"weight": int8_weights(rng, len(mults), k), "bias": np.array(biases, dtype=np.int32),
              "multiplier": np.array(mults, dtype=np.int32), "shift": np.array(shifts, dtype=np.int32)}
    zp = 0 if hi else int(rng.integers(-128, 128))
    x = rng.integers(-128, 128, (rows, k)).astype(np.int8)
    return _validated("linear", x, consts, {"out_quant": quant_attr(0.05, zp, "int8")})


def linear_float_case(rng: np.random.Generator, n: int, k: int, m: int, bias: bool = True,
                      gelu: bool = False) -> Case:
    """A validated float32 linear [n, k] -> [n, m] (weights ~ N(0, 1/k), inputs ~ N(0, 1))."""
    consts = {"weight": (rng.standard_normal((m, k)) / np.sqrt(k)).astype(np.float32)}
    if bias:
        consts["bias"] = rng.standard_normal(m).astype(np.float32)
    attrs = {"activation": "gelu"} if gelu else {}
    x = rng.standard_normal((n, k)).astype(np.float32)
    return _validated("linear", x, consts, attrs)


def patch_embed_int8_case(rng: np.random.Generator, c: int, grid: tuple[int, int], patch: int, d: int,
                          out_dtype: str = "int8", extremes: bool = True) -> Case:
    """A validated int8 patch_embed of a [c, gh*p, gw*p] image -> [gh*gw, d] (int8 or int16 tokens;
    `extremes` as in `requant_consts`)."""
    k = c * patch * patch
    consts = {"weight": int8_weights(rng, d, k), **requant_consts(rng, d, k, extremes)}
    if out_dtype == "int16":
        consts["multiplier"], consts["shift"] = quantize_multipliers(
            np.exp2(rng.uniform(4.0, 8.0, d)) * 127.0 / (128.0 * 64.0 * np.sqrt(k)))
    lo, hi = (-128, 128) if out_dtype == "int8" else (-2000, 2000)
    attrs = {"patch": patch, "out_quant": quant_attr(0.05, int(rng.integers(lo, hi)), out_dtype)}
    x = rng.integers(-128, 128, (c, grid[0] * patch, grid[1] * patch)).astype(np.int8)
    return _validated("patch_embed", x, consts, attrs)


def patch_embed_float_case(rng: np.random.Generator, c: int, grid: tuple[int, int], patch: int, d: int) -> Case:
    """A validated float32 patch_embed of a [c, gh*p, gw*p] image -> [gh*gw, d]."""
    k = c * patch * patch
    consts = {"weight": (rng.standard_normal((d, k)) / np.sqrt(k)).astype(np.float32),
              "bias": rng.standard_normal(d).astype(np.float32)}
    x = rng.standard_normal((c, grid[0] * patch, grid[1] * patch)).astype(np.float32)
    return _validated("patch_embed", x, consts, {"patch": patch})


def reference(case: Case) -> np.ndarray:
    """The reference interpreter's output for the case's one input (op's run_int8 / run_float)."""
    infos = [case.tensors["x"]]
    run = get_op(case.kernel.op).runner(kernel_dtype(case.kernel, infos), case.kernel)
    (y,) = run(case.kernel, [case.x[None]], case.consts)
    return y[0]


def request(case: Case, schedule: str = "fast", dsp: bool = False, rows: int | None = None) -> KernelRequest:
    """The KernelRequest of the case (ISA with or without "dsp")."""
    isa = DSP_ISA if dsp else ("armv7e-m", "thumb2")
    return request_for(case.kernel, case.tensors, case.consts, rows=rows, schedule=schedule, isa=isa)


def run_generated(case: Case, code: KernelCode, req: KernelRequest, overrides: str | None = None) -> np.ndarray:
    """Output of the generated C (host gcc, sanitizers on) for the case's input; `overrides`: the
    kernel package `code` comes from, if not the generic one."""
    (y,) = run_kernel(code, req, [case.x], overrides=overrides)
    return y


def assert_float_close(got: np.ndarray, want: np.ndarray) -> None:
    """float32 outputs equal within FLOAT_RTOL relative to the output's magnitude."""
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale)


# ---------------------------------------------------------------- one kernel on the emulated Cortex-M7

needs_qemu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed")
PROFILE = "stm32f746-disco"
_STARTUP = """#include <stdint.h>
#include <stdlib.h>
extern uint32_t _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);
void Reset_Handler(void);
void Default_Handler(void) { for (;;) {} }
void _init(void) {}
void _fini(void) {}
typedef void (*vec_t)(void);
__attribute__((section(".vectors"), used)) const vec_t vectors[4] = {
  (vec_t)(uintptr_t)&_estack, Reset_Handler, Default_Handler, Default_Handler};
void Reset_Handler(void) {
  for (uint32_t *d = &_sbss; d < &_ebss; d++) *d = 0;
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);  /* FPU on */
  __asm__ volatile("dsb; isb" ::: "memory");
  initialise_monitor_handles();
  exit(main());
}
"""
_LINKER = """MEMORY { FLASH (rx) : ORIGIN = 0x0, LENGTH = 4M
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 4M }
ENTRY(Reset_Handler)
SECTIONS {
  .vectors : { KEEP(*(.vectors)) } > FLASH
  .text : ALIGN(8) { *(.text .text.*) *(.rodata .rodata.*) KEEP(*(.init)) KEEP(*(.fini)) } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .init_array : { __init_array_start = .; KEEP(*(.init_array*)) __init_array_end = .; } > FLASH
  .fini_array : { __fini_array_start = .; KEEP(*(.fini_array*)) __fini_array_end = .; } > FLASH
  .data : ALIGN(8) { *(.data .data.*) } > RAM
  .bss (NOLOAD) : ALIGN(8) { _sbss = .; *(.bss .bss.*) *(COMMON) . = ALIGN(8); _ebss = .; } > RAM
  end = .; _end = .; __end__ = .;
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"""


def _firmware_main(case: Case, code: KernelCode, rows: int) -> str:
    """main(): the kernel call on the case's input (constants in flash), SysTick around it, then
    `TICKS <n>` and `OUT <hex bytes of y>` over semihosting."""
    decls, call = [], []
    for i, a in enumerate(code.args):
        if a.kind == "tensor":
            call.append(f"({a.ctype}){'x_in' if a.ref == 'x' else 'y_out'}")
        elif a.kind == "const":
            decls.append(c_array(f"c{i}", case.consts[a.ref], const=True, static=True))
            call.append(f"({a.ctype})c{i}")
        else:
            call.append(f"({a.ctype})({int(a.ref)})")
    y = case.tensors["y"]
    out_elems = rows * int(np.prod(y.shape[1:]))
    decls.append(c_array("x_in", case.x if case.kernel.op != "linear" else case.x[:rows], const=False, static=True))
    decls.append(f"static {ctype_of(y.dtype)} y_out[{out_elems}] __attribute__((aligned(8)));\n")
    syst = "(*(volatile uint32_t *)0xE000E0{:02X})"
    return ("#include <stdio.h>\n" + "".join(decls) + "int main(void) {\n"
            f"  {syst.format(0x14)} = 0xFFFFFF; {syst.format(0x18)} = 0; {syst.format(0x10)} = 5;\n"
            f"  uint32_t t0 = {syst.format(0x18)};\n  {code.func}({', '.join(call)});\n"
            f"  uint32_t t1 = {syst.format(0x18)};\n"
            '  printf("TICKS %lu\\nOUT ", (unsigned long)((t0 - t1) & 0xFFFFFF));\n'
            "  for (unsigned i = 0; i < sizeof(y_out); i++) printf(\"%02x\", (unsigned)((uint8_t *)y_out)[i]);\n"
            '  printf("\\n");\n  return 0;\n}\n')


def build_and_run_firmware(source: str, workdir: Path) -> tuple[str, int]:
    """Link `source` (kernel + a main printing `TICKS <n>` and `OUT <hex>`) into a bare Cortex-M7
    firmware with the profile's arm-none-eabi-gcc flags (-O2), run it on qemu-system-arm -icount
    shift=0 and return (the OUT hex string, SysTick ticks = instructions / 40)."""
    from edgevit.profiles.profile import load_profile

    profile = load_profile(PROFILE)
    for name, text in (("kernel.c", source), ("startup.c", _STARTUP), ("link.ld", _LINKER)):
        (workdir / name).write_text(text)
    subprocess.run([profile.toolchain.cc, "-O2", *profile.toolchain.cflags, "-Wall", "-Werror", "--specs=rdimon.specs",
                    "-nostartfiles", "-T", "link.ld", "startup.c", "kernel.c", "-o", "fw.elf", "-lrdimon", "-lm"],
                   cwd=workdir, check=True, capture_output=True, text=True)
    run = subprocess.run(["qemu-system-arm", "-M", profile.emulator.machine, "-display", "none", "-monitor", "none",
                          "-semihosting", "-icount", "shift=0", "-kernel", "fw.elf"], cwd=workdir, check=True,
                         capture_output=True, text=True, timeout=600)
    return re.search(r"OUT ([0-9a-f]*)", run.stdout).group(1), int(re.search(r"TICKS (\d+)", run.stdout).group(1))


def run_on_qemu(case: Case, code: KernelCode, req: KernelRequest, workdir: Path,
                overrides: str | None = None) -> tuple[np.ndarray, int]:
    """Build the kernel (from the `overrides` kernel package, if not a generic one) into a bare
    firmware and run it on QEMU (build_and_run_firmware); returns (output, SysTick ticks =
    instructions / 40)."""
    rows = req.rows or case.tensors["y"].shape[0]
    source = kernel_source([code], lower_to_c({code.func: code.prim_func}), overrides)
    source += _firmware_main(case, code, rows)
    hex_out, ticks = build_and_run_firmware(source, workdir)
    y = case.tensors["y"]
    return np.frombuffer(bytes.fromhex(hex_out), dtype=y.dtype).reshape((rows, *y.shape[1:])), ticks
