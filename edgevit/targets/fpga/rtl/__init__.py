"""The FPGA overlay's hardware, written in Amaranth (docs/fpga-isa.md is the contract).

One parameterised accelerator generated from an `OverlayConfig` (targets/fpga/config.py):

- `gemm_array`: the `bm x bk` weight-stationary multiply-accumulate array and its ACC
  read-modify-write pipeline (one GEMM step a cycle).
- `scratchpad`: the on-chip memories ACT (byte addressed, unaligned `bk`-byte reads), WGT (one
  tile a word) and ACC (`bm` int32 a row).
- `gemm_unit`: executes decoded GEMM and TILE instructions against those memories
  (start / busy / done handshake); `GemmCore` wires the unit to its memories.
- `verilator`: Amaranth -> Verilog -> a cached Verilator C++ model, for cycle-accurate tests.

Amaranth and the simulators are the optional `fpga` extra (`make setup` installs it); nothing
outside this package imports it, so the rest of edgevit works without it.
"""
