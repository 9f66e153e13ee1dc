"""Targets: memory planning, TVM-generated kernels and emitted projects (docs/mcu-backend.md)."""
