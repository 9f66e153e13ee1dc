"""The FPGA compiler: an int8 Program -> instruction stream + weight image + memory map (docs/fpga-isa.md)."""

from edgevit.targets.fpga.compiler.common import FpgaCompileError
from edgevit.targets.fpga.compiler.compile import CompiledProgram, compile_program, unsupported
from edgevit.targets.fpga.compiler.ddr import ddr_image, read_output

__all__ = ["CompiledProgram", "FpgaCompileError", "compile_program", "ddr_image", "read_output", "unsupported"]
