"""The mobile/desktop CPU backend (Cortex-A and x86-64 Linux; issue #14).

`CpuTarget` (target.py) plans one static arena (backend/planner.py) and builds a library
artifact (library.py): the driver shared with the MCU (backend/cdriver.py) around the generic
kernels compiled by TVM's LLVM code generation into runtime-free assembly (llvm_kernels.py, for
the profile's LLVM target from isa.py), a Makefile for the profile's toolchain and a check
program; runners/host.py builds and runs it natively.
"""

from __future__ import annotations

from edgevit.targets.cpu.target import CpuTarget

TARGET = CpuTarget
__all__ = ["CpuTarget", "TARGET"]
