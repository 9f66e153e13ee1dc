"""Runners of FPGA artifacts: fsim (the overlay's functional simulator, in-process: outputs and instruction
counts) and verilator (the overlay's RTL with a DDR model: outputs and cycles)."""
