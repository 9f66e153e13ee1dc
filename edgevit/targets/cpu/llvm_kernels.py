"""The one module of the cpu backend that talks to TVM: kernels' PrimFuncs -> LLVM assembly for plain C.

`compile_kernels(codes, target)` builds every distinct kernel function (`KernelCode.prim_func`,
private, pointer and scalar parameters) in one `tvm.tirx.build` with an LLVM target
(`isa.llvm_target`) and returns `LlvmKernels`:

- `assembly`: the module as assembly text (`kernels.s`, deterministic for the same kernels and
  target), assembled by the profile's gcc with `assemble` (gas needs `--gdwarf-5` for the DWARF 5
  `.file` directives LLVM writes; TVM always emits debug information);
- `header`: one C prototype per kernel, `int32_t f(int8_t* x, ..., int32_t zp);` (0 = success;
  nonzero: a workspace allocation failed);
- `support`: the C the object needs instead of the TVM runtime: `runtime/tvm_backend.c` (the
  `__TVMBackend*` function pointers: workspace from a static arena, parallel loops run serially)
  and external definitions of the micro-kernel helpers the kernels call (`KernelCode.helpers`);
- `externals`: every function the assembly calls (libm, helpers), checked to name nothing of TVM;
- `workspace_bytes`: a bound on the TVM workspace one thread uses (`workspace_bound`), None when
  some allocation's size is not a compile-time constant.

Besides the kernels the assembly defines only TVM's weak fp16 conversions `__truncsfhf2` and
`__extendhfsf2` (section .text.tvm.fp16.conv), harmless next to libgcc's.

How the kernels become plain C functions: each PrimFunc gets a `global_symbol` and
`calling_conv` 1 (TVM's "already packed" convention), so `MakePackedAPI` leaves its signature
alone; a pass after the stock s_tir pipeline (`PIPELINE`) adds the `device_type`/`device_id`
attributes `LowerTVMBuiltin` needs for workspace calls and makes the function return int32 0
(the workspace failure path returns -1) and drops the entry mark TVM puts on a lone function.
"""

from __future__ import annotations

import importlib.resources
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from edgevit.backend.kernels import helper_header
from edgevit.backend.kernels.base import KernelCode
from edgevit.errors import EdgevitError
from edgevit.targets.cpu.kernels import KERNEL_PACKAGE

PIPELINE = "edgevit_cpu_llvm"
CALLING_CONV_PACKED = 1  # tvm::CallingConv::kCPackedFunc: MakePackedAPI keeps the signature
DL_CPU = 1               # kDLCPU, the device_type LowerTVMBuiltin's workspace calls name
ENTRY_ATTR = "tirx.is_entry_func"  # set on a lone function: LLVM codegen would add a weak __tvm_ffi_main
RUNTIME_SOURCE = "runtime/tvm_backend.c"
GAS_FLAGS = ("-Wa,--gdwarf-5",)
WORKSPACE_ALIGN = 64  # runtime/tvm_backend.c's EV_WORKSPACE_ALIGN
CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
          "uint32": "uint32_t", "uint64": "uint64_t", "float32": "float", "float64": "double"}
TVM_NAME = re.compile(r"^_*(tvm|TVM)")


class LlvmCodegenError(EdgevitError):
    """TVM's LLVM output cannot be linked without the TVM runtime (it calls a TVM function)."""


@dataclass(frozen=True)
class LlvmKernels:
    """Kernels compiled for one LLVM target: assembly text, C prototypes, support C, the functions
    (sorted) and the external functions the assembly calls."""

    target: dict
    functions: tuple[str, ...]
    assembly: str
    header: str
    support: str
    externals: tuple[str, ...]
    workspace_bytes: int | None = 0


def compile_kernels(codes: Iterable[KernelCode], target: dict) -> LlvmKernels:
    """Lower the kernels' PrimFuncs (one per distinct `func`) with the LLVM `target` dict into one
    assembly module; LlvmCodegenError if the code would need the TVM runtime."""
    import tvm
    import tvm.tirx as tirx

    codes = list(codes)
    funcs = {c.func: c.prim_func for c in codes}
    helpers = sorted({h for c in codes for h in c.helpers})
    _register_pipeline()
    mod = tvm.IRModule({name: f.with_attr({"global_symbol": name, "calling_conv": CALLING_CONV_PACKED})
                        for name, f in sorted(funcs.items())})
    with tvm.transform.PassContext(opt_level=3):
        lib = tirx.build(mod, target=tvm.target.Target(target), pipeline=PIPELINE)
    llvm_ir = lib.inspect_source("ll")
    externals = _externals(llvm_ir)
    bad = [e for e in externals if TVM_NAME.match(e)]
    if bad:
        raise LlvmCodegenError(f"TVM's LLVM code calls {bad}; the cpu backend links no TVM runtime")
    header = "".join(c_prototype(name, funcs[name]) + "\n" for name in sorted(funcs))
    return LlvmKernels(dict(target), tuple(sorted(funcs)), lib.inspect_source("asm"),
                       "#include <stdint.h>\n" + header, support_source(helpers), externals, workspace_bound(llvm_ir))


def c_prototype(name: str, prim_func) -> str:
    """The C prototype of a compiled kernel: `int32_t name(int8_t* x, ..., int32_t zp);`."""
    import tvm

    params = []
    for p in prim_func.params:
        if isinstance(p.ty, tvm.ir.PointerType):
            params.append(f"{CTYPES[str(p.ty.element_type.dtype)]}* {p.name}")
        else:
            params.append(f"{CTYPES[str(p.ty.dtype)]} {p.name}")
    return f"int32_t {name}({', '.join(params) or 'void'});"


def support_source(helpers: Iterable[str] = ()) -> str:
    """C source the kernels link with: the TVM backend hooks (runtime/tvm_backend.c) and external
    definitions of the micro-kernel helpers named (the headers' `static inline` functions)."""
    runtime = importlib.resources.files("edgevit.targets.cpu").joinpath(RUNTIME_SOURCE).read_text()
    parts = [runtime, "\n/* micro-kernel helpers, external so the LLVM kernels can call them */\n",
             "#include <string.h>\n"]
    parts += [re.sub(r"\bstatic\s+inline\s+", "", helper_header(h, KERNEL_PACKAGE)) for h in helpers]
    return "".join(parts)


def assemble(asm: Path, obj: Path, cc: str, cflags: Iterable[str] = ()) -> None:
    """Assemble `asm` (kernels.s) into the object `obj` with the compiler driver `cc` (host gcc,
    aarch64-linux-gnu-gcc) and the profile's flags; LlvmCodegenError with the assembler's message."""
    cmd = [cc, *cflags, *GAS_FLAGS, "-c", str(asm), "-o", str(obj)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise LlvmCodegenError(f"{' '.join(cmd)} failed:\n{done.stderr}")


def workspace_bound(llvm_ir: str, align: int = WORKSPACE_ALIGN) -> int | None:
    """Bytes of TVM workspace one thread needs at most, from the module's LLVM IR: every
    `__TVMBackendAllocWorkspace` call's size rounded up to `align` (runtime/tvm_backend.c's), summed
    per function (allocations are freed in reverse order, so one function holds at most all of its
    own at once), then the largest kernel function's sum plus the largest parallel lambda's (task 0
    of a parallel loop runs on the calling thread, inside its kernel; the other tasks use their own
    thread's workspace). None when an allocation's size is not a constant."""
    sums: dict[str, int] = {}
    func, pointers = None, set()
    for line in llvm_ir.splitlines():
        head = re.match(r"^define [^@]*@([\w.$]+)\(", line)
        if head:
            func, pointers = head.group(1), set()
            sums[func] = 0
            continue
        if func is None:
            continue
        load = re.search(r"(%[\w.]+) = load ptr, ptr @__TVMBackendAllocWorkspace\b", line)
        if load:
            pointers.add(load.group(1))
            continue
        call = re.search(r"call ptr (%[\w.]+)\(([^)]*)\)", line)
        if call and call.group(1) in pointers:
            size = re.match(r"\s*i32 [^,]+, i32 [^,]+, i64 (\d+),", call.group(2))
            if size is None:
                return None
            sums[func] += -(-int(size.group(1)) // align) * align
    lambdas = [v for name, v in sums.items() if name.startswith("__tvm_parallel_lambda")]
    kernels = [v for name, v in sums.items() if not name.startswith("__tvm_parallel_lambda")]
    return max(kernels, default=0) + max(lambdas, default=0)


def _externals(llvm_ir: str) -> tuple[str, ...]:
    """Functions an LLVM module declares but does not define (LLVM intrinsics excluded)."""
    declared = re.findall(r"^declare [^@]*@([\w.$]+)\(", llvm_ir, flags=re.M)
    return tuple(sorted(n for n in set(declared) if not n.startswith("llvm.")))


def _bind_cpu(func, _mod, _ctx):
    """A kernel as TVM's LowerTVMBuiltin expects and plain C calls it: the body under
    device_type/device_id attributes, returning int32 0 at the end, not marked as the module's
    entry (which would add a `__tvm_ffi_main` alias)."""
    import tvm
    import tvm.tirx as tirx

    if int(func.attrs.get("calling_conv", 0)) != CALLING_CONV_PACKED:
        return func
    zero = tirx.const(0, "int32")
    body = tirx.AttrStmt(zero, "device_id", zero, func.body)
    body = tirx.AttrStmt(zero, "device_type", tirx.const(DL_CPU, "int32"), body)
    body = tirx.SeqStmt([body, tirx.Return(zero)])
    func = func.without_attr(ENTRY_ATTR)
    return tirx.PrimFunc(func.params, body, tvm.ir.PrimType("int32"), func.attrs)


def _pipeline_factory():
    """The stock s_tir pipeline, then `_bind_cpu` on every kernel (host finalization unchanged)."""
    import tvm
    from tvm.tirx import compilation_pipeline, transform

    stock, finalize_host, finalize_device = compilation_pipeline.get_tir_pipeline("s_tir")
    bind = transform.prim_func_pass(_bind_cpu, opt_level=0, name="EdgevitBindCpu")
    return tvm.transform.Sequential([stock, bind]), finalize_host, finalize_device


def _register_pipeline() -> None:
    """Register PIPELINE with TVM (idempotent)."""
    from tvm.tirx import compilation_pipeline

    compilation_pipeline.register_tir_pipeline(PIPELINE, _pipeline_factory)
