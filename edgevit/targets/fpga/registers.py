"""The overlay's AXI4-Lite control and status registers: the one table the drivers are generated from.

docs/fpga-isa.md ("Control registers") shows the same table; the host drivers of the artifact
(driver/edgevit_overlay.py for PYNQ, driver/edgevit_overlay.{c,h} for bare metal) get their offsets
from `REGISTERS`, and tests/targets/fpga/test_tgt_driver.py checks that the page and the drivers agree.
Every register is 32 bits at a 4-byte aligned offset from the overlay's AXI4-Lite base address.

A run: write INSN_BASE (physical address of the instruction stream), INSN_COUNT (instructions,
FINISH included) and DDR_BASE (physical address every DDR offset of the stream is relative to), then
write CTRL.start; the overlay fetches and runs the stream until FINISH and sets CTRL.done (cleared by
the next start). CYCLES counts clock cycles from start to done; the stall and busy counters count the
cycles their condition held during the run. CTRL.reset_counters zeroes every counter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Register:
    """One 32-bit register: byte offset, name, access ("rw", "ro") and what it holds."""

    offset: int
    name: str
    access: str
    meaning: str


REGISTERS = (
    Register(0x00, "CTRL", "rw", "bit 0 start (write 1: start a run; reads 0), bit 1 done (read only: set by FINISH, "
                                 "cleared by start), bit 2 reset_counters (write 1: zero every counter; reads 0)"),
    Register(0x04, "INSN_BASE", "rw", "physical address of the instruction stream (32-byte aligned)"),
    Register(0x08, "INSN_COUNT", "rw", "instructions in the stream, FINISH included"),
    Register(0x0C, "DDR_BASE", "rw", "physical address the stream's DDR offsets are relative to (64-byte aligned)"),
    Register(0x10, "CYCLES", "ro", "clock cycles of the last run (start to done)"),
    Register(0x14, "STALL_TOKEN", "ro", "cycles the compute module waited for a dependency token"),
    Register(0x18, "STALL_DMA", "ro", "cycles the compute module waited for a LOAD/STORE (DMA)"),
    Register(0x1C, "LOAD_BUSY", "ro", "cycles the load module was busy"),
    Register(0x20, "STORE_BUSY", "ro", "cycles the store module was busy"),
    Register(0x24, "GEMM_BUSY", "ro", "cycles the GEMM unit was busy"),
    Register(0x28, "VECTOR_BUSY", "ro", "cycles the vector unit was busy"),
)
CTRL_START, CTRL_DONE, CTRL_RESET_COUNTERS = 1 << 0, 1 << 1, 1 << 2
COUNTERS = tuple(r.name for r in REGISTERS if r.access == "ro")
AXI_LITE_BYTES = 0x40  # the register window (address range of the AXI4-Lite slave)


def offsets() -> dict[str, int]:
    """{register name: byte offset}."""
    return {r.name: r.offset for r in REGISTERS}


def markdown_table() -> str:
    """The register table as docs/fpga-isa.md shows it (`| offset | name | access | meaning |` rows)."""
    rows = ["| offset | name | access | meaning |", "|---|---|---|---|"]
    rows += [f"| `0x{r.offset:02X}` | `{r.name}` | {r.access} | {r.meaning} |" for r in REGISTERS]
    return "\n".join(rows) + "\n"
