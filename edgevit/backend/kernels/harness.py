"""Run one generated kernel on the host: C from TVM, compiled with gcc (sanitizers on), fed arrays.

Used by the kernel tests to compare TVM-generated C against the reference interpreter:

    req = request_for(kernel, program_tensors, consts, rows=None, schedule="fast")
    code = get_kernel(kernel.op).generate(req)
    outs = run_kernel(code, req, inputs)          # inputs: per-image arrays, one per kernel input

`inplace=i` passes input i's buffer as output 0 (to test an `inplace` trait). For a target's
kernel override pass its kernel package as `overrides` (the micro headers are looked up there first).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from edgevit.lower.program import Kernel, TensorInfo
from edgevit.backend.csrc import c_array, ctype_of
from edgevit.backend.kernels import helper_header
from edgevit.backend.kernels.base import KernelCode, KernelRequest

SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
WARN = ["-Wall", "-Wextra", "-Werror"]


def request_for(kernel: Kernel, tensors: dict[str, TensorInfo], consts: dict, rows: int | None = None,
                schedule: str = "fast", isa: tuple[str, ...] = ()) -> KernelRequest:
    """A KernelRequest for `kernel` from a Program's tensors and its (role -> array) constants."""
    return KernelRequest(kernel=kernel, in_infos=tuple(tensors[t] for t in kernel.inputs),
                         out_infos=tuple(tensors[t] for t in kernel.outputs), consts=dict(consts), rows=rows,
                         schedule=schedule, isa=tuple(isa))


def kernel_source(codes: list[KernelCode], definitions: dict[str, str], overrides: str | None = None) -> str:
    """kernels.c text: standard headers, the micro-kernel headers used (`helper_header`: the
    `overrides` kernel package's first), then each function once."""
    helpers = sorted({h for c in codes for h in c.helpers})
    parts = ["#include <stdint.h>\n#include <string.h>\n#include <math.h>\n#include <stdbool.h>\n"]
    parts += [helper_header(h, overrides) for h in helpers]
    parts += [definitions[name] for name in sorted({c.func for c in codes})]
    return "\n".join(parts)


def call_arguments(code: KernelCode, req: KernelRequest, tensor: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """(C declarations, call arguments) of a test program calling `code`: constants and packed
    constants as static arrays `c<i>`, the scratch as a static array, integers as literals, tensor
    arguments as `tensor(name)` (a C expression naming its buffer); every argument cast to its C type."""
    decls, call = [], []
    for i, a in enumerate(code.args):
        if a.kind == "tensor":
            call.append(f"({a.ctype}){tensor(a.ref)}")
        elif a.kind in ("const", "packed"):
            value = req.consts[a.ref] if a.kind == "const" else code.packed[a.ref]
            decls.append(c_array(f"c{i}", value, const=False, static=True))
            call.append(f"({a.ctype})c{i}")
        elif a.kind == "scratch":
            decls.append(f"static int64_t scratch[{max(1, (code.scratch_bytes + 7) // 8)}];\n")
            call.append(f"({a.ctype})scratch")
        else:
            call.append(f"({a.ctype})({int(a.ref)}{'LL' if abs(int(a.ref)) >= 1 << 31 else ''})")
    return decls, call


def _main_source(code: KernelCode, req: KernelRequest, inputs: list[np.ndarray], inplace: int | None) -> str:
    rows = req.rows
    decls, call = call_arguments(code, req, lambda name: f"buf_{_tensor_index(req, name, inplace)}")
    for j, (info, arr) in enumerate(zip(req.in_infos, inputs)):
        decls.append(c_array(f"buf_{j}", _rows(arr, info, rows), const=False, static=True))
    for j, info in enumerate(req.out_infos):
        if j == 0 and inplace is not None:
            continue
        n = len(req.in_infos) + j
        size = _rows(np.zeros(info.shape, info.dtype), info, rows).size
        decls.append(f"static {ctype_of(info.dtype)} buf_{n}[{size}] __attribute__((aligned(8)));\n")
    outs = [(len(req.in_infos) + j if not (j == 0 and inplace is not None) else inplace, info)
            for j, info in enumerate(req.out_infos)]
    writes = "".join(f'  fwrite(buf_{n}, 1, sizeof(buf_{n}), f);\n' for n, _ in outs)
    return ("#include <stdio.h>\n#include <stdint.h>\n" + "".join(decls)
            + f"void kernel_entry(void) {{ {code.func}({', '.join(call)}); }}\n"
            + 'int main(void) {\n  kernel_entry();\n  FILE *f = fopen("out.bin", "wb");\n' + writes
            + "  fclose(f);\n  return 0;\n}\n")


def _tensor_index(req: KernelRequest, name: str, inplace: int | None) -> int:
    ins = [t.name for t in req.in_infos]
    outs = [t.name for t in req.out_infos]
    if name in ins:
        return ins.index(name)
    j = outs.index(name)
    return inplace if (j == 0 and inplace is not None) else len(ins) + j


def _rows(arr: np.ndarray, info: TensorInfo, rows: int | None) -> np.ndarray:
    a = np.asarray(arr, dtype=info.dtype).reshape(info.shape)
    return a if rows is None else a[:rows]


def run_kernel(code: KernelCode, req: KernelRequest, inputs: list[np.ndarray], *, inplace: int | None = None,
               cc: str = "gcc", sanitize: bool = True, keep: Path | None = None,
               overrides: str | None = None) -> list[np.ndarray]:
    """Compile `code` (lowered by TVM) with a main that feeds `inputs` (per-image arrays, one per
    kernel input; row-wise kernels with `req.rows` use the first rows) and return the outputs;
    `overrides`: the kernel package `code` comes from, if not the generic one."""
    from edgevit.backend.kernels.tvmc import lower_to_c

    defs = lower_to_c({code.func: code.prim_func})
    src = kernel_source([code], defs, overrides)
    tmp = Path(tempfile.mkdtemp(prefix="ev-kernel-"))
    try:
        (tmp / "kernels.c").write_text(src + _main_source(code, req, inputs, inplace))
        flags = ["-std=c99", "-O1", "-g", *WARN, "-Wno-unused-function"] + (SANITIZE if sanitize else [])
        subprocess.run([cc, *flags, "kernels.c", "-o", "k", "-lm"], cwd=tmp, check=True, capture_output=True,
                       text=True)
        subprocess.run(["./k"], cwd=tmp, check=True, capture_output=True, text=True, timeout=120)
        raw = (tmp / "out.bin").read_bytes()
        return _split_outputs(raw, req, inplace)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{e.cmd[0]} failed ({e.returncode}) in {tmp}:\n{e.stderr}\n{e.stdout}") from e
    finally:
        if keep is not None:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _split_outputs(raw: bytes, req: KernelRequest, inplace: int | None) -> list[np.ndarray]:
    outs, pos = [], 0
    for j, info in enumerate(req.out_infos):
        shape = info.shape if req.rows is None else (req.rows, *info.shape[1:])
        dtype = info.dtype
        if j == 0 and inplace is not None:
            dtype = req.in_infos[inplace].dtype
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        outs.append(np.frombuffer(raw[pos:pos + n], dtype=dtype).reshape(shape).astype(info.dtype))
        pos += n
    return outs
