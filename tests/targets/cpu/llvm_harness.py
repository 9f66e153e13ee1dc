"""Run generated kernels compiled by TVM's LLVM code generation (edgevit/targets/cpu/llvm_kernels.py),
linked with plain C and no TVM runtime, on the host or under qemu-aarch64.

    outs = run_llvm_kernel(code, req, inputs, target)       # inputs: one image's arrays, one per input

The kernels' assembly is assembled by the toolchain's gcc; a C main (sanitizers on for host runs)
holds the inputs and constants as static arrays, calls the kernel, checks it returned 0 and writes
the outputs to out.bin.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.csrc import c_array, ctype_of
from edgevit.backend.kernels.base import KernelCode, KernelRequest
from edgevit.backend.kernels.harness import call_arguments
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import host_isa, llvm_target
from edgevit.targets.cpu.llvm_kernels import LlvmKernels, assemble, compile_kernels

SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")
WARN = ("-Wall", "-Wextra", "-Werror")


@dataclass(frozen=True)
class Toolchain:
    """How to build and run: compiler driver, its flags, link flags and the command prefix that runs
    the program (e.g. qemu-aarch64 -cpu max)."""

    cc: str = "gcc"
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    runner: tuple[str, ...] = ()
    sanitize: bool = True


HOST = Toolchain()
AVX2_TARGET = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3", "mattr": ["+avx2", "+fma"]}


def native_targets() -> list[dict]:
    """LLVM targets this host runs: the host profile's (AVX-512 + VNNI where present) and AVX2 only."""
    if host_isa().arch != "x86_64":
        return []
    host = llvm_target(load_profile("host"))
    return [host] + ([AVX2_TARGET] if host["mattr"] != AVX2_TARGET["mattr"] else [])


def aarch64_toolchain(profile_name: str) -> Toolchain:
    """Cross gcc with the profile's flags (static), run by qemu-aarch64 with the profile's -cpu."""
    profile = load_profile(profile_name)
    return Toolchain(profile.toolchain.cc, tuple(profile.toolchain.cflags), tuple(profile.toolchain.ldflags),
                     (profile.emulator.binary, "-cpu", profile.emulator.cpu), sanitize=False)


NATIVE = native_targets()
needs_x86 = pytest.mark.skipif(not NATIVE, reason="needs an x86-64 host")
needs_aarch64 = pytest.mark.skipif(not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")),
                                   reason="aarch64-linux-gnu-gcc / qemu-aarch64 not installed")


def main_source(code: KernelCode, req: KernelRequest, inputs: list[np.ndarray]) -> str:
    """main.c: the inputs (first `req.rows` rows for row-wise kernels), constants and scratch as
    static arrays, one kernel call (exit 3 if it returns nonzero), the outputs written to out.bin."""
    ins = [t.name for t in req.in_infos]
    outs = [t.name for t in req.out_infos]
    decls, call = call_arguments(code, req, lambda name: f"in_{ins.index(name)}" if name in ins
                                 else f"out_{outs.index(name)}")
    for j, (info, arr) in enumerate(zip(req.in_infos, inputs)):
        decls.append(c_array(f"in_{j}", _rows(arr, info.shape, info.dtype, req.rows), const=False, static=True))
    for j, info in enumerate(req.out_infos):
        size = _rows(np.zeros(info.shape, info.dtype), info.shape, info.dtype, req.rows).size
        decls.append(f"static {ctype_of(info.dtype)} out_{j}[{max(size, 1)}] __attribute__((aligned(64)));\n")
    writes = "".join(f"  fwrite(out_{j}, 1, sizeof(out_{j}), f);\n" for j in range(len(outs)))
    return ('#include <stdio.h>\n#include <stdint.h>\n#include "kernels.h"\n' + "".join(decls)
            + f"int main(void) {{\n  if ({code.func}({', '.join(call)}) != 0) return 3;\n"
            + '  FILE *f = fopen("out.bin", "wb");\n  if (!f) return 4;\n' + writes + "  fclose(f);\n  return 0;\n}\n")


def _rows(arr: np.ndarray, shape, dtype: str, rows: int | None) -> np.ndarray:
    a = np.asarray(arr, dtype=dtype).reshape(shape)
    return a if rows is None else a[:rows]


def build_and_run(kernels: LlvmKernels, main_c: str, tc: Toolchain, workdir: Path) -> bytes:
    """Write kernels.s / kernels.h / support.c / main.c into `workdir`, assemble and link them with
    `tc`, run the program there and return the bytes of out.bin."""
    (workdir / "kernels.s").write_text(kernels.assembly)
    (workdir / "kernels.h").write_text(kernels.header)
    (workdir / "support.c").write_text(kernels.support)
    (workdir / "main.c").write_text(main_c)
    assemble(workdir / "kernels.s", workdir / "kernels.o", tc.cc, tc.cflags)
    flags = [*tc.cflags, "-std=c11", "-O1", "-g", *WARN, *(SANITIZE if tc.sanitize else ())]
    _run([tc.cc, *flags, "main.c", "support.c", "kernels.o", "-o", "k", *tc.ldflags, "-lm"], workdir)
    _run([*tc.runner, "./k"], workdir, timeout=300)
    return (workdir / "out.bin").read_bytes()


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode} in {cwd}:\n{done.stderr}\n{done.stdout}")


def run_llvm_kernel(code: KernelCode, req: KernelRequest, inputs: list[np.ndarray], target: dict,
                    tc: Toolchain = HOST, keep: Path | None = None) -> list[np.ndarray]:
    """Outputs of `code` compiled for LLVM `target` and run with `tc` on `inputs` (one image's
    arrays, one per kernel input; row-wise kernels with `req.rows` use the first rows)."""
    kernels = compile_kernels([code], target)
    tmp = Path(tempfile.mkdtemp(prefix="ev-llvm-kernel-"))
    try:
        raw = build_and_run(kernels, main_source(code, req, inputs), tc, tmp)
    finally:
        if keep is not None:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    outs, pos = [], 0
    for info in req.out_infos:
        shape = info.shape if req.rows is None else (req.rows, *info.shape[1:])
        n = int(np.prod(shape)) * np.dtype(info.dtype).itemsize
        outs.append(np.frombuffer(raw[pos:pos + n], dtype=info.dtype).reshape(shape))
        pos += n
    return outs
