"""docs/fpga-isa.md and targets/fpga/isa.py agree: every opcode with its number, every field named in its
instruction's section, and the widths the page's tables give."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgevit.targets.fpga.isa import HEADER, LAYOUTS, OPCODES

DOC = (Path(__file__).resolve().parents[3] / "docs" / "fpga-isa.md").read_text()


def section(op: str) -> str:
    """The page's text about `op`: from its heading or bold title `OP (n)` to the next one."""
    starts = [m.start() for m in re.finditer(r"^(### .*|\*\*[A-Z]+ \(\d+\)\*\*)", DOC, re.M)]
    match = re.search(rf"\b{op} \({OPCODES[op]}\)", DOC)
    assert match, f"{op} ({OPCODES[op]}) is not on the page"
    begin = max(s for s in starts if s <= match.start())
    after = [s for s in starts if s > match.start()]
    return DOC[begin:after[0] if after else len(DOC)]


@pytest.mark.parametrize("op", sorted(OPCODES))
def test_every_field_of_every_instruction_is_documented_with_its_width(op):
    text = section(op)
    for name, width in LAYOUTS[op]:
        assert f"`{name}`" in text, f"{op}: field {name} is not in its section of docs/fpga-isa.md"
        row = re.search(rf"\|\s*`{name}`\s*\|\s*(\d+)", text)
        if row:  # a table row: the width must agree
            assert int(row.group(1)) == width, f"{op}.{name}: page says {row.group(1)} bits, isa.py {width}"


def test_the_header_table_matches():
    for name, width in HEADER:
        assert re.search(rf"\|\s*`{name}`\s*\|\s*{width}\s*\|", DOC), name
