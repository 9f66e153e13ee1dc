"""The FPGA backend (issue #15): a ViT overlay accelerator and its instruction-stream compiler.

isa.py (the instruction set, docs/fpga-isa.md) and config.py (the overlay's parameters from a profile)
are the contract the compiler (compiler/), the functional simulator (fsim.py) and the Amaranth hardware
(rtl/) share. `FpgaTarget` (target.py) checks and costs int8 Programs, compiles them into an instruction
stream + weight image + memory map and writes the artifact (artifact.py: program files, overlay
parameters, PYNQ and bare-metal drivers with the control registers of registers.py); runners/fsim.py
runs it on the functional simulator. docs/fpga-backend.md describes the backend.
"""

from __future__ import annotations

from edgevit.targets.fpga.target import FpgaTarget

TARGET = FpgaTarget
__all__ = ["FpgaTarget", "TARGET"]
