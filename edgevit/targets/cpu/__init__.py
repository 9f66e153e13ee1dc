"""The mobile/desktop CPU backend (Cortex-A and x86-64 Linux), in progress (issue #14).

What exists so far: `isa.py` (the host's ISA features, a cpu profile's TVM LLVM target) and
`llvm_kernels.py` (the generic kernels compiled by TVM's LLVM code generation into one
runtime-free assembly file, plus the C declarations and support code to link it with plain C).
The package exposes no `TARGET` yet, so `edgevit compile` still refuses cpu profiles.
"""
