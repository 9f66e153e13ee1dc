"""targets/fpga/isa.py: every instruction round-trips through its 32 bytes; bad values are refused by name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.isa import (INSN_BYTES, LAYOUTS, MODULE_OF, OPCODES, Insn, IsaError, decode, decode_stream,
                                      encode, encode_stream, field_offsets)

DEPS = {"load": ("pop_next", "push_next"), "compute": ("pop_prev", "pop_next", "push_prev", "push_next"),
        "store": ("pop_prev", "push_prev")}


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(sorted(OPCODES)))
    fields = {name: draw(st.integers(0, (1 << width) - 1)) for name, width in LAYOUTS[op]}
    fields.update({flag: draw(st.integers(0, 1)) for flag in DEPS[MODULE_OF[op]]})
    return Insn(op, **fields)


@settings(max_examples=200, deadline=None)
@given(st.lists(instructions(), min_size=1, max_size=8))
def test_streams_round_trip(insns):
    blob = encode_stream(insns)
    assert len(blob) == INSN_BYTES * len(insns)
    assert decode_stream(blob) == insns


def test_every_layout_fits_256_bits_and_fields_do_not_overlap():
    for op in OPCODES:
        spans = field_offsets(op)
        assert spans[-1][1] + spans[-1][2] <= INSN_BYTES * 8
        assert all(a[1] + a[2] == b[1] for a, b in zip(spans, spans[1:]))


def test_a_known_encoding():
    blob = encode(Insn("GEMM", reset=1, count=3, pop_prev=1))
    value = int.from_bytes(blob, "little")
    assert value & 0xF == OPCODES["GEMM"] and (value >> 4) & 1 == 1  # op, then pop_prev
    assert (value >> 8) & 1 == 1  # reset: the first field after the header byte
    count_offset = dict((n, o) for n, o, _ in field_offsets("GEMM"))["count"]
    assert (value >> count_offset) & 0xFFFF == 3


@pytest.mark.parametrize("insn, message", [
    (Insn("GEMM", count=1 << 16), "field count = 65536 does not fit 16 bits"),
    (Insn("LOAD", pop_prev=1), "load module has no previous module"),
    (Insn("STORE", push_next=1), "store module has no next module"),
])
def test_bad_instructions_are_refused_by_name(insn, message):
    with pytest.raises(IsaError, match=message):
        encode(insn)


def test_bad_construction_and_decoding():
    with pytest.raises(IsaError, match="unknown instruction 'NOP'"):
        Insn("NOP")
    with pytest.raises(IsaError, match="GEMM has no field"):
        Insn("GEMM", src=1)
    with pytest.raises(IsaError, match="opcode 0 is not an instruction"):
        decode(bytes(INSN_BYTES), 4)
    with pytest.raises(IsaError, match="bits above"):
        decode((OPCODES["FINISH"] | 1 << 200).to_bytes(INSN_BYTES, "little"))
    with pytest.raises(IsaError, match="multiple of 32"):
        decode_stream(bytes(33))
