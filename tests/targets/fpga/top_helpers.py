"""Shared helpers of the overlay top-level tests (test_top_*.py): one small overlay built once with
Verilator, and running a stream on it and on the functional simulator from the same DDR image."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.targets.fpga.config import OverlayConfig

# Small enough to build quickly, large enough for one-kernel Programs and a 1-block ViT.
TOP_CFG = OverlayConfig(bk=16, bm=8, vl=8, act_bytes=16384, wgt_tiles=16, acc_rows=256, param_words=2048,
                        bus_bytes=8, clock_hz=100_000_000, ddr_latency_cycles=40)


def model_or_skip(cfg: OverlayConfig = TOP_CFG):
    """The cached Verilator executable of the overlay for `cfg`; pytest.skip naming the missing tool."""
    pytest.importorskip("amaranth")
    from edgevit.targets.fpga.rtl.overlay_sim import build_overlay_model
    from edgevit.targets.fpga.rtl.verilator import ToolMissing

    try:
        return build_overlay_model(cfg)
    except ToolMissing as e:
        pytest.skip(f"the Verilator flow is not installed: {e}")


def run_both(cfg: OverlayConfig, exe, stream: bytes, ddr: np.ndarray, insn_offset: int = 0, **tb):
    """(fsim DDR, Verilator OverlayRun) of `stream` (already in `ddr` at `insn_offset`) from the same DDR."""
    from edgevit.targets.fpga.fsim import run_stream
    from edgevit.targets.fpga.rtl.overlay_sim import run_overlay

    want = ddr.copy()
    run_stream(cfg, stream, want)
    got = run_overlay(exe, cfg, ddr.copy(), insn_offset, len(stream) // 32, **tb)
    return want, got


def assert_same_ddr(want: np.ndarray, got: np.ndarray) -> None:
    """Bit-exact DDR; the message names the first differing bytes."""
    assert want.shape == got.shape
    diff = np.flatnonzero(want != got)
    assert diff.size == 0, (f"{diff.size} DDR bytes differ, first at {diff[:8].tolist()}: "
                            f"want {want[diff[:8]].tolist()} got {got[diff[:8]].tolist()}")


def assert_counters_add_up(counters: dict[str, int]) -> None:
    """The compute module is in one state a cycle: GEMM busy, vector busy, or waiting (DMA / dependency)."""
    c = counters
    assert c["CYCLES"] > 0
    assert c["GEMM_BUSY"] + c["VECTOR_BUSY"] + c["STALL_DMA"] + c["STALL_TOKEN"] <= c["CYCLES"], c
    assert c["LOAD_BUSY"] <= c["CYCLES"] and c["STORE_BUSY"] <= c["CYCLES"], c
