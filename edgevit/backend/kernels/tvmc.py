"""The one module that talks to TVM's C code generator: private PrimFuncs -> plain C functions.

`lower_to_c({name: prim_func})` builds all functions in one `tvm.tirx.build` for target
`{"kind": "c"}` (vectorisation off: the C backend cannot print vector types) and cuts each
function's definition out of the generated file. The functions must be
`T.prim_func(private=True)` with pointer parameters (`T.handle("int8")` + `T.decl_buffer`)
and scalar parameters; TVM then prints them as ordinary C functions, which we make `static`.
The packed-API entry and the TVM headers TVM adds around them are dropped, and the result is
checked to reference nothing from TVM (no runtime calls, no workspace allocations).
"""

from __future__ import annotations

import re
from typing import Any

from edgevit.errors import EdgevitError

FORBIDDEN = re.compile(r"\bTVM\w*|\b__tvm\w*|\btvm\w*")


class KernelCodegenError(EdgevitError):
    """TVM produced code the firmware cannot use (runtime calls, workspace allocations)."""


def _entry():
    from tvm.script import tirx as T

    @T.prim_func
    def entry():
        T.evaluate(0)

    return entry


def lower_to_c(funcs: dict[str, Any]) -> dict[str, str]:
    """Lower private PrimFuncs to C: {C name: PrimFunc} -> {C name: "static ... name(...) {...}"}.

    Names must be valid C identifiers. Raises KernelCodegenError if a function's code refers to
    TVM (e.g. TVMBackendAllocWorkspace for an unscheduled intermediate buffer).
    """
    import tvm
    import tvm.tirx as tirx

    if not funcs:
        return {}
    mod = tvm.IRModule({**{name: f for name, f in sorted(funcs.items())}, "__edgevit_entry": _entry()})
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_vectorize": True}):
        lib = tirx.build(mod, target=tvm.target.Target({"kind": "c"}))
    source = lib.inspect_source()
    return {name: _definition(source, name) for name in sorted(funcs)}


def _definition(source: str, name: str) -> str:
    """Cut the definition of C function `name` out of TVM's source file; make it static."""
    m = re.search(r"TVM_DLL\s+(\w+)\s+" + re.escape(name) + r"\(([^;{]*)\)\s*\{", source)
    if m is None:
        raise KernelCodegenError(f"TVM's C output has no definition of kernel {name!r}")
    depth, i = 0, m.end() - 1
    while True:
        if source[i] == "{":
            depth += 1
        elif source[i] == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    body = source[m.end() - 1:i + 1]
    text = f"static {m.group(1)} {name}({m.group(2)}) {body}\n"
    bad = sorted(set(FORBIDDEN.findall(text)))
    if bad:
        raise KernelCodegenError(f"kernel {name!r}: TVM's code calls {bad}; firmware has no TVM runtime. "
                                 "Schedule intermediates into registers or pass them as arena scratch.")
    return text
