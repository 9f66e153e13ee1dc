"""Runners of cpu library artifacts: host (native build and run) and qemu (qemu user mode)."""
