"""The FPGA backend (issue #15, in progress): a ViT overlay accelerator and its instruction-stream compiler.

isa.py (the instruction set, docs/fpga-isa.md) and config.py (the overlay's parameters from a profile)
are the contract the compiler, the functional simulator and the Amaranth hardware share. The package
exposes no `TARGET` yet, so `edgevit compile --profile pynq-z2` is still refused with "no backend".
"""
