"""Every control / data-movement component elaborates to a netlist (RTLIL) for both bus widths: no signal
with two drivers, no port of the wrong direction (the simulator alone does not catch these)."""

from __future__ import annotations

import pytest
from amaranth.back import rtlil

from edgevit.targets.fpga.rtl.axi_dma import DmaLoad, DmaStore
from edgevit.targets.fpga.rtl.axi_lite import ControlRegs
from edgevit.targets.fpga.rtl.fetch import Fetch
from edgevit.targets.fpga.rtl.tokens import DepGate, TokenCounters
from tests.targets.fpga.test_hwctl_fetch import _cfg


@pytest.mark.parametrize("bus_bytes", [8, 16])
@pytest.mark.parametrize("make", [DmaLoad, DmaStore, Fetch, lambda cfg: ControlRegs(), lambda cfg: TokenCounters(),
                                  lambda cfg: DepGate("compute")])
def test_component_builds_a_netlist(make, bus_bytes):
    text = rtlil.convert(make(_cfg(bus_bytes)), name="top")
    assert "module \\top" in text
