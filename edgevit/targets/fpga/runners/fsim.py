"""The fsim runner of FPGA artifacts: every bundled vector through the overlay's functional simulator.

For each vector: the DDR image (compiler/ddr.ddr_image: stream, weight image, input at their regions of
program/memory_map.json), `fsim.run_stream` on the overlay recorded in the artifact, the output read back
(ddr.read_output), printed as an `EV` line. Vector i runs under the simulator's module order
ORDERS[i % 3] (in-order, load-first, store-first), so a run of three or more vectors also checks that
the stream's dependency tokens order every cross-module access. It runs in-process and needs no tool;
the simulator has no clock, so ticks are 0 and nothing is timed; the executed instructions, GEMM MACs
and DMA bytes per inference are added to the result (`fsim_*` keys).
"""

from __future__ import annotations

import json
import time

import numpy as np

from edgevit.backend.artifact import Artifact
from edgevit.backend.errors import ArtifactError, RunFailedError, RunTimeoutError
from edgevit.backend.protocol import format_ev_line
from edgevit.backend.runner import RunOutput, Runner, Stage
from edgevit.targets.fpga.artifact import INSTRUCTIONS, MEMORY_MAP, OVERLAY, WEIGHTS
from edgevit.targets.fpga.config import OverlayConfig

ORDER_CYCLE = ("in-order", "load-first", "store-first")


def load_compiled(artifact: Artifact):
    """(OverlayConfig, CompiledProgram) from the artifact's verified program/ and rtl/ files; ArtifactError
    when they are unreadable or the memory map and rtl/overlay.json describe different overlays."""
    from edgevit.backend.artifact import RECOMPILE
    from edgevit.targets.fpga.compiler.compile import CompiledProgram

    artifact.require(INSTRUCTIONS, WEIGHTS, MEMORY_MAP, OVERLAY, why="the fsim runner")
    root = artifact.root
    try:
        memory_map = json.loads((root / MEMORY_MAP).read_text(encoding="utf-8"))
        overlay = json.loads((root / OVERLAY).read_text(encoding="utf-8"))["overlay"]
        cfg = OverlayConfig.from_dict(memory_map["overlay"])
        stream, weights = (root / INSTRUCTIONS).read_bytes(), (root / WEIGHTS).read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{root}: cannot read the FPGA program files ({e}); {RECOMPILE}") from None
    if cfg.to_dict() != overlay:
        raise ArtifactError(f"{root}: {MEMORY_MAP} and {OVERLAY} describe different overlays; {RECOMPILE}")
    return cfg, CompiledProgram(insns=[], stream=stream, weights=weights, memory_map=memory_map)


class FsimRunner(Runner):
    """Run the instruction stream on the functional simulator (outputs, instruction counts; no timing)."""

    name = "fsim"
    description = "the overlay's functional simulator (in-process, bit-exact; no timing)"
    tick_name = "simulated step"
    no_bench_reason = "the functional simulator has no clock"

    def tools(self, profile) -> list:
        """None: the simulator runs in this process."""
        return []

    def required_files(self) -> tuple[str, ...]:
        """The program files the simulator reads."""
        return (INSTRUCTIONS, WEIGHTS, MEMORY_MAP, OVERLAY)

    def default_timeout(self, artifact: Artifact, profile, count: int) -> float:
        """Seconds for `count` vectors (about a second each for small models on this simulator)."""
        return 120.0 + 10.0 * count

    def execute(self, artifact: Artifact, profile, count: int, timeout: float, stage: Stage) -> RunOutput:
        """Simulate the first `count` bundled vectors; the EV lines as text, fsim figures in `extra`.
        RunFailedError when the simulator refuses the stream, RunTimeoutError past `timeout` seconds."""
        from edgevit.targets.fpga.compiler.common import FpgaCompileError
        from edgevit.targets.fpga.compiler.ddr import ddr_image, read_output
        from edgevit.targets.fpga.fsim import FsimError, run_stream

        cfg, compiled = load_compiled(artifact)
        inputs = artifact.load_vectors().inputs
        stage(f"simulating {count} vector{'s' if count != 1 else ''} on the overlay ({cfg.bm} x {cfg.bk} PEs)")
        t0 = time.perf_counter()
        lines, stats = [], []
        for i in range(count):
            order = ORDER_CYCLE[i % len(ORDER_CYCLE)]
            try:
                ddr = ddr_image(compiled, inputs[i])
                stats.append(run_stream(cfg, compiled.stream, ddr, order=order))
                out = read_output(compiled, ddr)
            except FpgaCompileError as e:
                raise ArtifactError(f"{artifact.root}: vector {i} does not fit the memory map: {e}") from None
            except FsimError as e:
                raise RunFailedError(f"fsim ({order} order): vector {i}: {e}") from None
            lines.append(format_ev_line(i, 0, np.ascontiguousarray(out).tobytes()))
            if time.perf_counter() - t0 > timeout:
                raise RunTimeoutError(f"fsim: {i + 1} of {count} vectors simulated in {timeout:g} s; "
                                      "give a larger --timeout")
        lines.append(f"EV-END {count}")
        extra = {}
        if stats:
            s = stats[0]
            extra = {"fsim_instructions_per_inference": s.instructions, "fsim_macs_per_inference": s.macs,
                     "fsim_dma_bytes_per_inference": s.dma_load_bytes + s.dma_store_bytes,
                     "fsim_orders": sorted({x.order for x in stats})}
        return RunOutput("\n".join(lines) + "\n", self.source(profile), time.perf_counter() - t0, None, extra)

    def uncounted_reason(self, profile, ticks: list[int]) -> str | None:
        """Always: the functional simulator has no clock (the cycle model and Verilator runs come later)."""
        return ("the functional simulator has no clock: it checks outputs and counts instructions "
                "(fsim_instructions_per_inference), it does not time them")

    def machine(self, profile) -> str | None:
        """e.g. "fsim: the overlay of pynq-z2"."""
        return f"fsim: the overlay of {profile.name}"

    def source(self, profile) -> str:
        """"fsim"."""
        return "fsim"
