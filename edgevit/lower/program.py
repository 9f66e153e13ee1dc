"""The Program IR: kernels in execution order over named, statically shaped tensors.

A Program is what every backend compiles and what the reference interpreter
(`edgevit.lower.reference`) runs. It holds

- `tensors`: name -> TensorInfo (per-image shape, no batch dim; dtype; optional quant
  parameters, documentation only for int tensors),
- `consts`: name -> np.ndarray (weights; kept separate from tensors; integer programs use
  int8/int16/int32 constants and int64 for LayerNorm biases; packed 4-bit weights are int8),
- `kernels`: Kernel list in execution order. A kernel names its op (registered in
  `edgevit.lower.ops`), input and output tensors, constants by role and JSON-able attrs.

Invariants (`Program.validate`): every tensor is defined exactly once (a program input
or one kernel output) before any use; every declared tensor is defined; every op's
own validator accepts the kernel and infers exactly the declared output infos; every
constant named by a kernel exists and every constant is used.

`to_json` names constants by SHA-256 of their bytes (never values), so it is a compact,
deterministic description; `fingerprint` is the SHA-256 of that text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from edgevit.errors import EdgevitError

DTYPES = ("float32", "int8", "int16", "int32", "int64")
FORMAT = "edgevit-program"
VERSION = 1


class ProgramError(EdgevitError):
    """A malformed Program or a kernel its op rejects; the message names the kernel and tensor."""


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's per-image `shape` (tuple of ints >= 1, no batch dim), `dtype` and optional `quant`.

    `quant` documents int tensors, e.g. {"scale": 0.02, "zero_point": 0}; None for float.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    quant: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.dtype not in DTYPES:
            raise ProgramError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")
        if any(s < 1 for s in self.shape):
            raise ProgramError(f"tensor {self.name!r}: shape {self.shape} has a dimension < 1")

    @property
    def size(self) -> int:
        """Number of elements per image."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes per image."""
        return self.size * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        """{"shape": [...], "dtype": ..., "quant"?: {...}} for JSON."""
        d: dict[str, Any] = {"shape": list(self.shape), "dtype": self.dtype}
        if self.quant is not None:
            d["quant"] = dict(self.quant)
        return d


@dataclass(frozen=True)
class Kernel:
    """One fused unit of work: `op` applied to `inputs` (tensor names) giving `outputs`.

    `consts` maps a role (e.g. "weight") to a constant name; `attrs` is a JSON-able dict.
    """

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    consts: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "consts", dict(self.consts))
        object.__setattr__(self, "attrs", dict(self.attrs))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (attrs and const roles as given)."""
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs), "outputs": list(self.outputs),
                "consts": dict(self.consts), "attrs": dict(self.attrs)}


def const_sha256(value: np.ndarray) -> str:
    """SHA-256 (hex) of an array's C-order little-endian bytes (shape/dtype are recorded separately)."""
    a = np.ascontiguousarray(value)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(a.tobytes()).hexdigest()


def check_attrs(kernel: Kernel) -> None:
    """ProgramError unless the kernel's attrs are JSON-able (finite numbers, strings, lists, dicts)."""
    try:
        json.dumps(kernel.attrs, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ProgramError(f"kernel {kernel.name!r} ({kernel.op}): attrs are not JSON-able ({e})") from None


def resolve_consts(kernel: Kernel, consts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """role -> array for `kernel` from a name -> array table; ProgramError if a name is missing."""
    out = {}
    for role, cname in kernel.consts.items():
        if cname not in consts:
            raise ProgramError(f"kernel {kernel.name!r} ({kernel.op}): constant {cname!r} "
                               f"(role {role!r}) does not exist in the program")
        out[role] = consts[cname]
    return out


@dataclass
class Program:
    """A whole model as kernels over named tensors; see the module docstring for invariants."""

    name: str
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, TensorInfo]
    consts: dict[str, np.ndarray]
    kernels: list[Kernel]
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- queries ------------------------------------------------------------
    def kernel_consts(self, kernel: Kernel) -> dict[str, np.ndarray]:
        """role -> array for `kernel`; ProgramError naming the kernel if a constant is missing."""
        return resolve_consts(kernel, self.consts)

    def last_uses(self) -> dict[str, int]:
        """tensor name -> index of the last kernel reading it (program outputs: len(kernels))."""
        last = {}
        for i, k in enumerate(self.kernels):
            for t in k.inputs:
                last[t] = i
        for t in self.outputs:
            last[t] = len(self.kernels)
        return last

    def macs(self) -> int:
        """Multiply-accumulates per image (GEMM-like work, as counted by each op)."""
        from edgevit.lower.ops import get_op

        total = 0
        for k in self.kernels:
            ins, outs = [self.tensors[t] for t in k.inputs], [self.tensors[t] for t in k.outputs]
            total += get_op(k.op).count_macs(k, ins, outs)
        return total

    def const_params(self) -> int:
        """Total number of constant elements."""
        return int(sum(v.size for v in self.consts.values()))

    def weight_bytes(self) -> int:
        """Bytes of all constants as stored (dtype itemsize x elements; packed 4-bit weights are
        int8 arrays of half the length, so they count half; a shared constant counts once)."""
        return int(sum(v.nbytes for v in self.consts.values()))

    # ---- validation -----------------------------------------------------------
    def validate(self, kernel_checks: bool = True) -> None:
        """Check the invariants of the module docstring; raise ProgramError on the first violation.
        `kernel_checks=False` skips what ProgramBuilder.add_kernel checks of each kernel as it adds it
        (JSON-able attrs, the op's validator); the graph-wide invariants are always checked."""
        defined = self._validate_inputs()
        kernel_names: set[str] = set()
        for k in self.kernels:
            if k.name in kernel_names:
                raise ProgramError(f"kernel {k.name!r} ({k.op}): kernel name used twice")
            kernel_names.add(k.name)
            self._validate_kernel(k, defined, kernel_checks)
        for t in self.outputs:
            if t not in defined:
                raise ProgramError(f"program output {t!r} is never produced by a kernel or input")
        undefined = sorted(set(self.tensors) - defined)
        if undefined:
            raise ProgramError(f"tensor(s) {undefined} declared but never produced by any kernel")
        used = {c for k in self.kernels for c in k.consts.values()}
        unused = sorted(set(self.consts) - used)
        if unused:
            raise ProgramError(f"constant(s) {unused} are not used by any kernel")

    def _validate_inputs(self) -> set[str]:
        if len(set(self.inputs)) != len(self.inputs):
            raise ProgramError(f"program inputs {self.inputs} contain a duplicate")
        for t in self.inputs:
            if t not in self.tensors:
                raise ProgramError(f"program input {t!r} has no TensorInfo in `tensors`")
        clash = sorted(set(self.tensors) & set(self.consts))
        if clash:
            raise ProgramError(f"name(s) {clash} are both a tensor and a constant")
        return set(self.inputs)

    def _validate_kernel(self, k: Kernel, defined: set[str], kernel_checks: bool = True) -> None:
        from edgevit.lower.ops import get_op

        opdef = get_op(k.op, kernel=k.name)
        for t in k.inputs:
            if t not in defined:
                raise ProgramError(f"kernel {k.name!r} ({k.op}): input {t!r} is used before it is defined")
        for t in k.outputs:
            if t in defined:
                raise ProgramError(f"kernel {k.name!r} ({k.op}): output {t!r} is already defined "
                                   "(a tensor is defined exactly once)")
            if t not in self.tensors:
                raise ProgramError(f"kernel {k.name!r} ({k.op}): output {t!r} has no TensorInfo in `tensors`")
        infos = []
        if kernel_checks:
            check_attrs(k)
            infos = opdef.validate(k, [self.tensors[t] for t in k.inputs], self.kernel_consts(k))
        for t, got in zip(k.outputs, infos):
            if self.tensors[t] != got:
                raise ProgramError(f"kernel {k.name!r} ({k.op}): output {t!r} is declared as "
                                   f"{self.tensors[t]} but the op infers {got}")
        defined.update(k.outputs)

    # ---- serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict: tensors, kernels, and constants as {shape, dtype, sha256} (no values)."""
        return {
            "format": FORMAT, "version": VERSION, "name": self.name,
            "inputs": list(self.inputs), "outputs": list(self.outputs),
            "tensors": {n: t.to_dict() for n, t in self.tensors.items()},
            "consts": {n: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": const_sha256(v)}
                       for n, v in self.consts.items()},
            "kernels": [k.to_dict() for k in self.kernels],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], consts: dict[str, np.ndarray]) -> "Program":
        """The Program `to_dict` described, with the constant values `consts` (name -> array, as
        `self.consts`); each array must have the shape, dtype and SHA-256 the dict records. Validated
        (ProgramError naming the field or constant otherwise), so `from_dict(p.to_dict(),
        p.consts).fingerprint() == p.fingerprint()`."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise ProgramError(f"not a serialised Program: format is {got!r}, expected {FORMAT!r}")
        if d.get("version") != VERSION:
            raise ProgramError(f"serialised Program version {d.get('version')!r}; this edgevit reads version {VERSION}")
        try:
            tensors = {n: TensorInfo(n, tuple(t["shape"]), t["dtype"], t.get("quant"))
                       for n, t in d["tensors"].items()}
            kernels = [Kernel(k["op"], k["name"], k["inputs"], k["outputs"], k["consts"], k["attrs"])
                       for k in d["kernels"]]
            declared = d["consts"]
            name, inputs, outputs, meta = d["name"], list(d["inputs"]), list(d["outputs"]), dict(d["meta"])
        except (KeyError, TypeError, AttributeError) as e:
            raise ProgramError(f"serialised Program: missing or malformed field ({type(e).__name__}: {e})") from None
        missing = sorted(set(declared) - set(consts))
        extra = sorted(set(consts) - set(declared))
        if missing or extra:
            raise ProgramError(f"serialised Program {name!r}: constant values missing for {missing[:5]}"
                               f"{', not declared: ' + str(extra[:5]) if extra else ''}")
        values = {}
        for cname, info in declared.items():
            a = np.array(consts[cname], copy=True, order="C")
            if list(a.shape) != list(info["shape"]) or str(a.dtype) != info["dtype"]:
                raise ProgramError(f"serialised Program {name!r}: constant {cname!r} is {list(a.shape)} {a.dtype} "
                                   f"but the program records {info['shape']} {info['dtype']}")
            if const_sha256(a) != info["sha256"]:
                raise ProgramError(f"serialised Program {name!r}: constant {cname!r} has other values than the "
                                   "program records (SHA-256 differs)")
            a.setflags(write=False)
            values[cname] = a
        program = cls(name=name, inputs=inputs, outputs=outputs, tensors=tensors, consts=values, kernels=kernels,
                      meta=meta)
        program.validate()
        return program

    def to_json(self, indent: int | None = 1) -> str:
        """Deterministic JSON text of `to_dict` (sorted keys; kernel order kept)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, allow_nan=False)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the compact JSON: changes with any tensor, kernel, constant value or meta."""
        return hashlib.sha256(self.to_json(indent=None).encode()).hexdigest()

    def summary(self) -> str:
        """Human-readable table: one line per kernel (op, inputs -> output shape/dtype), then totals."""
        lines = [f"Program {self.name!r}: {len(self.kernels)} kernels, {len(self.tensors)} tensors, "
                 f"{len(self.consts)} constants ({self.const_params():,} values)"]
        for t in self.inputs:
            lines.append(f"  input  {t}: {list(self.tensors[t].shape)} {self.tensors[t].dtype}")
        width = max((len(k.name) for k in self.kernels), default=0)
        for k in self.kernels:
            outs = ", ".join(f"{t} {list(self.tensors[t].shape)} {self.tensors[t].dtype}" for t in k.outputs)
            attrs = " ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in sorted(k.attrs.items()))
            lines.append(f"  {k.name:<{width}}  {k.op:<12} {', '.join(k.inputs)} -> {outs}"
                         + (f"  ({attrs})" if attrs else ""))
        lines.append(f"  outputs: {', '.join(self.outputs)}; MACs/image: {self.macs():,}")
        return "\n".join(lines)


class ProgramBuilder:
    """Builds a Program kernel by kernel; each `add_kernel` runs the op's validator at once."""

    def __init__(self, name: str, meta: dict[str, Any] | None = None) -> None:
        self.name = name
        self.meta = dict(meta or {})
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.tensors: dict[str, TensorInfo] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.kernels: list[Kernel] = []
        self._kernel_names: set[str] = set()

    def add_input(self, name: str, shape: Sequence[int], dtype: str = "float32",
                  quant: dict[str, Any] | None = None) -> str:
        """Declare a program input of per-image `shape`; returns its name."""
        self._check_new_tensor(name, "program input")
        self.tensors[name] = TensorInfo(name, tuple(shape), dtype, quant)
        self.inputs.append(name)
        return name

    def add_const(self, name: str, value: np.ndarray) -> str:
        """Store a constant (a read-only C-contiguous copy of `value`); returns its name."""
        if name in self.consts or name in self.tensors:
            raise ProgramError(f"constant {name!r}: name already used")
        a = np.array(value, copy=True, order="C")
        if a.dtype not in DTYPES:  # (dtype == "int8" compares by name; str(dtype) is slow in NumPy 2)
            raise ProgramError(f"constant {name!r}: dtype {a.dtype} is not one of {DTYPES}")
        a.setflags(write=False)
        self.consts[name] = a
        return name

    def add_kernel(self, op: str, inputs: Iterable[str], attrs: dict[str, Any] | None = None,
                   consts: dict[str, str] | None = None, name: str | None = None,
                   outputs: Sequence[str] | None = None) -> list[str]:
        """Append a kernel of `op`; validate it and infer its outputs; return the output names.

        `name` defaults to "<op>_<index>"; `outputs` default to the kernel name (one
        output) or "<name>.<i>".
        """
        from edgevit.lower.ops import get_op

        name = name or f"{op}_{len(self.kernels)}"
        opdef = get_op(op, kernel=name)
        if outputs is None:
            outputs = [name] if opdef.num_outputs == 1 else [f"{name}.{i}" for i in range(opdef.num_outputs)]
        k = Kernel(op=op, name=name, inputs=tuple(inputs), outputs=tuple(outputs),
                   consts=dict(consts or {}), attrs=dict(attrs or {}))
        if name in self._kernel_names:
            raise ProgramError(f"kernel {name!r} ({op}): kernel name used twice")
        for t in k.inputs:
            if t not in self.tensors:
                raise ProgramError(f"kernel {name!r} ({op}): input {t!r} is used before it is defined")
        for t in k.outputs:
            self._check_new_tensor(t, f"kernel {name!r} ({op}): output")
        check_attrs(k)
        infos = opdef.validate(k, [self.tensors[t] for t in k.inputs], resolve_consts(k, self.consts))
        for info in infos:
            self.tensors[info.name] = info
        self.kernels.append(k)
        self._kernel_names.add(name)
        return list(k.outputs)

    def add_output(self, name: str) -> None:
        """Mark an already-defined tensor as a program output."""
        if name not in self.tensors:
            raise ProgramError(f"program output {name!r} is not a defined tensor")
        self.outputs.append(name)

    def build(self) -> Program:
        """The validated Program (each kernel was checked in `add_kernel` with the inputs and constants
        it has now, which cannot be redefined, so only the graph-wide invariants are checked again)."""
        p = Program(name=self.name, inputs=list(self.inputs), outputs=list(self.outputs),
                    tensors=dict(self.tensors), consts=dict(self.consts), kernels=list(self.kernels),
                    meta=dict(self.meta))
        p.validate(kernel_checks=False)
        return p

    def _check_new_tensor(self, name: str, what: str) -> None:
        if name in self.tensors:
            raise ProgramError(f"{what} {name!r} is already defined (a tensor is defined exactly once)")
        if name in self.consts:
            raise ProgramError(f"{what} {name!r} clashes with a constant of the same name")
