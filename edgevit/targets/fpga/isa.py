"""The overlay's instruction set: opcodes, field layouts, encoding and decoding (docs/fpga-isa.md).

One source of truth for the compiler (which encodes), the functional simulator and the hardware's
decoder (which decode): every instruction is INSN_BYTES = 32 bytes, four little-endian uint64 words,
its fields packed from bit 0 upwards in the order of `LAYOUTS[op]`, after the common header
(`op` 4 bits, then the dependency flags pop_prev, pop_next, push_prev, push_next, one bit each).

    insn = Insn("GEMM", reset=1, wgt=0, acc=0, acc_stride=1, inp=64, inp_stride=16, count=49)
    blob = encode_stream([insn, Insn("FINISH", pop_next=1)])   # bytes, 32 per instruction
    decode_stream(blob) == [insn, Insn("FINISH", pop_next=1)]

Every field is an unsigned integer; `encode` refuses a value that does not fit its width (IsaError
naming the instruction and field), so a stream never silently wraps an address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from edgevit.errors import EdgevitError

INSN_BYTES = 32
INSN_BITS = INSN_BYTES * 8
HEADER = (("op", 4), ("pop_prev", 1), ("pop_next", 1), ("push_prev", 1), ("push_next", 1))
DEP_FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")

OPCODES = {"LOAD": 1, "STORE": 2, "GEMM": 3, "TILE": 4, "REQUANT": 5, "ADD": 6, "LAYERNORM": 7, "SOFTMAX": 8,
           "COPY": 9, "MEANPOOL": 10, "MERGE": 11, "LUT": 12, "FINISH": 15}
OP_NAMES = {code: name for name, code in OPCODES.items()}

# Which module executes each instruction; modules run in the order load -> compute -> store.
MODULES = ("load", "compute", "store")
MODULE_OF = {"LOAD": "load", "STORE": "store", **{op: "compute" for op in OPCODES if op not in ("LOAD", "STORE")}}

# Memory spaces of LOAD's `mem` field, element types of the vector instructions' dtype fields.
MEM_CODES = {"act": 0, "wgt": 1, "param": 2}
DTYPE_CODES = {"int8": 0, "int16": 1, "int32": 2, "uint8": 3}
DTYPE_NAMES = {code: name for name, code in DTYPE_CODES.items()}

_DMA = (("mem", 2), ("sram", 24), ("dram", 32), ("rows", 16), ("row_bytes", 16), ("dram_stride", 32),
        ("sram_stride", 24))
LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    "LOAD": _DMA,
    "STORE": _DMA,
    "GEMM": (("reset", 1), ("unsigned", 1), ("wgt", 16), ("acc", 16), ("acc_stride", 16), ("inp", 24),
             ("inp_stride", 24), ("count", 16)),
    "TILE": (("transpose", 1), ("wgt", 16), ("src", 24), ("stride", 24), ("rows", 8), ("cols", 8)),
    "REQUANT": (("gelu", 1), ("dtype", 2), ("acc", 16), ("dst", 24), ("dst_stride", 24), ("rows", 16),
                ("cols", 16), ("param", 24), ("chan", 24)),
    "ADD": (("a", 24), ("b", 24), ("dst", 24), ("a_stride", 24), ("b_stride", 24), ("dst_stride", 24),
            ("a_dtype", 2), ("b_dtype", 2), ("dtype", 2), ("rows", 16), ("cols", 16), ("param", 24)),
    "LAYERNORM": (("src", 24), ("src_stride", 24), ("src_dtype", 2), ("dst", 24), ("dst_stride", 24),
                  ("dtype", 2), ("rows", 16), ("cols", 16), ("param", 24), ("chan", 24)),
    "SOFTMAX": (("has_sizes", 1), ("acc", 16), ("rows", 16), ("cols", 16), ("dst", 24), ("dst_stride", 24),
                ("sizes", 24), ("param", 24)),
    "COPY": (("src", 24), ("src_stride", 24), ("dst", 24), ("dst_stride", 24), ("rows", 16), ("row_bytes", 16)),
    "MEANPOOL": (("src", 24), ("src_stride", 24), ("src_dtype", 2), ("rows", 16), ("cols", 16), ("dst", 24),
                 ("dtype", 2), ("param", 24)),
    "MERGE": (("has_sizes", 1), ("dtype", 2), ("tokens", 24), ("tokens_stride", 16), ("qkv", 24),
              ("qkv_stride", 16), ("sizes", 24), ("dst", 24), ("dst_stride", 16), ("dst_sizes", 24),
              ("rows", 16), ("cols", 16), ("r", 8), ("heads", 8), ("head_dim", 8), ("protect", 8)),
    "LUT": (("src", 24), ("src_stride", 24), ("dst", 24), ("dst_stride", 24), ("rows", 16), ("cols", 16),
            ("param", 24)),
    "FINISH": (),
}


class IsaError(EdgevitError):
    """An instruction that cannot be encoded or decoded (unknown op, field out of range, illegal flags)."""


@dataclass(frozen=True)
class Insn:
    """One instruction: its op name and every field (missing fields are 0).

    Insn("LOAD", mem=1, sram=0, dram=4096, rows=2, row_bytes=128, dram_stride=128, push_next=1)"""

    op: str
    fields: dict[str, int] = field(default_factory=dict)

    def __init__(self, op: str, **fields: int) -> None:
        if op not in OPCODES:
            raise IsaError(f"unknown instruction {op!r}; the overlay has {sorted(OPCODES)}")
        known = {name for name, _ in LAYOUTS[op]} | set(DEP_FLAGS)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise IsaError(f"{op} has no field(s) {unknown}; its fields are {sorted(known)}")
        full = {name: int(fields.get(name, 0)) for name, _ in HEADER[1:] + LAYOUTS[op]}
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "fields", full)

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def module(self) -> str:
        """"load", "compute" or "store": the module whose queue the fetch unit hands this to."""
        return MODULE_OF[self.op]

    def with_deps(self, **flags: int) -> "Insn":
        """A copy with dependency flags set (pop_prev / pop_next / push_prev / push_next)."""
        return Insn(self.op, **{**self.fields, **flags})

    def __repr__(self) -> str:
        set_fields = ", ".join(f"{k}={v}" for k, v in self.fields.items() if v)
        return f"Insn({self.op}{', ' if set_fields else ''}{set_fields})"


def field_offsets(op: str) -> list[tuple[str, int, int]]:
    """(name, bit offset, width) of every field of `op`, header included, in encoding order."""
    out, offset = [], 0
    for name, width in HEADER + LAYOUTS[op]:
        out.append((name, offset, width))
        offset += width
    assert offset <= INSN_BITS, f"{op} needs {offset} bits"
    return out


def _check_deps(insn: Insn) -> None:
    module = insn.module
    if module == "load" and (insn.pop_prev or insn.push_prev):
        raise IsaError(f"{insn}: the load module has no previous module (pop_prev / push_prev)")
    if module == "store" and (insn.pop_next or insn.push_next):
        raise IsaError(f"{insn}: the store module has no next module (pop_next / push_next)")


def encode(insn: Insn, index: int | None = None) -> bytes:
    """The 32 bytes of one instruction; IsaError naming the field for a value out of its range."""
    _check_deps(insn)
    value = 0
    where = f"instruction {index} ({insn.op})" if index is not None else insn.op
    for name, offset, width in field_offsets(insn.op):
        v = OPCODES[insn.op] if name == "op" else insn.fields[name]
        if not 0 <= v < (1 << width):
            raise IsaError(f"{where}: field {name} = {v} does not fit {width} bits (0..{(1 << width) - 1})")
        value |= v << offset
    return value.to_bytes(INSN_BYTES, "little")


def decode(blob: bytes, index: int | None = None) -> Insn:
    """The instruction in 32 bytes; IsaError for an unknown opcode, illegal flags or stray bits."""
    if len(blob) != INSN_BYTES:
        raise IsaError(f"an instruction is {INSN_BYTES} bytes, got {len(blob)}")
    value = int.from_bytes(blob, "little")
    code = value & 0xF
    where = f"instruction {index}" if index is not None else "instruction"
    if code not in OP_NAMES:
        raise IsaError(f"{where}: opcode {code} is not an instruction (0 is illegal: zeroed memory)")
    op = OP_NAMES[code]
    fields, used = {}, 0
    for name, offset, width in field_offsets(op)[1:]:
        fields[name] = (value >> offset) & ((1 << width) - 1)
        used = offset + width
    if value >> used:
        raise IsaError(f"{where} ({op}): bits above {used} are set; they must be 0")
    insn = Insn(op, **fields)
    _check_deps(insn)
    return insn


def encode_stream(insns: Iterable[Insn]) -> bytes:
    """The binary instruction stream: 32 bytes per instruction, in order."""
    return b"".join(encode(insn, i) for i, insn in enumerate(insns))


def decode_stream(blob: bytes) -> list[Insn]:
    """Every instruction of a binary stream (its length a multiple of 32 bytes)."""
    if len(blob) % INSN_BYTES:
        raise IsaError(f"an instruction stream is a multiple of {INSN_BYTES} bytes, got {len(blob)}")
    return [decode(blob[i:i + INSN_BYTES], i // INSN_BYTES) for i in range(0, len(blob), INSN_BYTES)]
