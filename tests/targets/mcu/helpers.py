"""Test helpers for the MCU emitter: small Programs, their vectors, building and running artifacts.

`build_host` / `build_firmware` use the artifact's own Makefiles with `-Werror` added, so the
generated C is checked with -Wall -Wextra -Werror by host gcc and by arm-none-eabi-gcc.
`run_host` parses the `EV` lines of the host build and returns the outputs as an array.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevit.lower.intmath import make_add_params
from edgevit.lower.program import ProgramBuilder
from edgevit.lower.reference import run_program
from edgevit.backend.vectors import Vectors
from edgevit.backend.planner import Buffer, MemoryPlan, Step

WERROR = "-Werror"
SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=all -g"
needs_arm = pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
needs_qemu = pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed")


def add_attrs(rng: np.random.Generator, out_dtype: str = "int8") -> dict:
    """Random valid attrs of an integer `add` kernel (make_add_params)."""
    p = make_add_params(float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.02, 0.2)),
                        int(rng.integers(-20, 20)), int(rng.integers(-20, 20)), int(rng.integers(-20, 20)),
                        out_dtype=np.dtype(out_dtype))
    return {"ka": p["ka"], "kb": p["kb"], "bias": p["bias"], "shift": p["shift"],
            "out_quant": {"scale": 0.05, "zero_point": p["out_zp"], "dtype": out_dtype}}


def add_chain_program(dtype: str, rows: int, dim: int, depth: int, seed: int = 0, name: str = "adds"):
    """A Program of `depth` residual-style adds on x [rows, dim]: y_i = add(y_{i-1}, x) (y_0 = x),
    output `out` = the last y. int8 or float32."""
    rng = np.random.default_rng(seed)
    b = ProgramBuilder(name)
    quant = {"scale": 0.05, "zero_point": 0} if dtype != "float32" else None
    b.add_input("x", (rows, dim), dtype, quant)
    prev = "x"
    for i in range(depth):
        attrs = add_attrs(rng) if dtype != "float32" else {}
        (prev,) = b.add_kernel("add", [prev, "x"], attrs=attrs, name=f"add{i}",
                               outputs=["out"] if i == depth - 1 else None)
    b.add_output(prev)
    return b.build()


def chain_plan(program, chunk: int, rows: int) -> MemoryPlan:
    """A hand-made plan for add_chain_program(depth=3): one chain of the three adds, `chunk` rows at a
    time, intermediates add0/add1 as chunk buffers, x and out whole (distinct buffers)."""
    x, out = program.tensors["x"], program.tensors["out"]
    row = x.nbytes // rows
    c = -(-chunk * row // 8) * 8
    xb = -(-x.nbytes // 8) * 8
    bufs = {"x": Buffer("x", 0, x.nbytes, 0, 0), "add0": Buffer("add0", xb, chunk * row, 0, 0, "chunk"),
            "add1": Buffer("add1", xb + c, chunk * row, 0, 0, "chunk"), "out": Buffer("out", xb + 2 * c, out.nbytes, 0, 0)}
    arena = xb + 2 * c + out.nbytes
    return MemoryPlan(steps=[Step((0, 1, 2), chunk, rows)], buffers=bufs, tensor_buffer={t: t for t in bufs},
                      scratch_buffer={}, arena_bytes=arena, lower_bound_bytes=arena, naive_bytes=arena + 64,
                      timeline=[arena], naive_timeline=[arena, arena, arena])


def random_inputs(program, n: int, seed: int = 0) -> np.ndarray:
    """n random inputs [n, *shape] of the program's input dtype (int8: full range; float: N(0, 1))."""
    info = program.tensors[program.inputs[0]]
    rng = np.random.default_rng(seed)
    if info.dtype == "float32":
        return rng.standard_normal((n, *info.shape)).astype(np.float32)
    return rng.integers(-128, 128, (n, *info.shape)).astype(info.dtype)


def vectors_for(program, n: int = 3, seed: int = 0) -> Vectors:
    """Vectors of random inputs and the reference interpreter's outputs (labels -1)."""
    x = random_inputs(program, n, seed)
    expected = run_program(program, {program.inputs[0]: x})[program.outputs[0]]
    return Vectors(x, expected, np.full(n, -1, dtype=np.int64), f"random (seed {seed})")


def make(directory: Path, *variables: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run make in `directory` with VAR=value arguments; AssertionError with the output on failure."""
    r = subprocess.run(["make", "-s", "-C", str(directory), *variables], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"make in {directory} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def parse_ev(text: str, dtype: str, shape: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    """(outputs [n, *shape], ticks) from EV lines; asserts the protocol (indices, EV-END count)."""
    outs, ticks, end = [], [], None
    for line in text.splitlines():
        w = line.split()
        if w and w[0] == "EV":
            assert int(w[1]) == len(outs), line
            ticks.append(int(w[2]))
            outs.append(np.frombuffer(bytes.fromhex(w[3]), dtype=dtype).reshape(shape))
        elif w and w[0] == "EV-END":
            end = int(w[1])
    assert end == len(outs), f"EV-END {end} after {len(outs)} EV lines:\n{text[-2000:]}"
    return np.stack(outs) if outs else np.zeros((0, *shape), dtype), ticks


def run_host(artifact: Path, count: int | None = None, cflags: str = WERROR) -> tuple[np.ndarray, list[int]]:
    """Build host/model_host (with `cflags`) and run it; (outputs, ticks) parsed from its EV lines."""
    import json

    manifest = json.loads((artifact / "manifest.json").read_text())
    out = manifest["program"]["output"]
    args = [f"EXTRA_CFLAGS={cflags}"] + ([f"EDGEVIT_COUNT={count}"] if count else [])
    make(artifact / "host", *args)
    r = subprocess.run([str(artifact / "host" / "model_host")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return parse_ev(r.stdout, out["dtype"], tuple(out["shape"]))


def build_firmware(artifact: Path, count: int | None = None, cflags: str = WERROR) -> Path:
    """Build firmware/firmware.elf with the profile's cross compiler (and `cflags`); its path."""
    args = [f"EXTRA_CFLAGS={cflags}"] + ([f"EDGEVIT_COUNT={count}"] if count else [])
    make(artifact / "firmware", *args)
    return artifact / "firmware" / "firmware.elf"


def run_qemu(artifact: Path, machine: str, count: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Build the firmware and run it on qemu-system-arm -M `machine`; (outputs, ticks)."""
    import json

    elf = build_firmware(artifact, count)
    out = json.loads((artifact / "manifest.json").read_text())["program"]["output"]
    r = subprocess.run(["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none", "-semihosting",
                        "-icount", "shift=0", "-kernel", str(elf)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return parse_ev(r.stdout, out["dtype"], tuple(out["shape"]))


def assert_outputs_match(got: np.ndarray, expected: np.ndarray) -> None:
    """Bit-exact for integer outputs; float32 within 1e-4 relative (and 1e-5 absolute)."""
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if expected.dtype == np.float32:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, expected)
