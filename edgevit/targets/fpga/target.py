"""FpgaTarget: the Target of `kind: fpga` profiles (Zynq boards): an int8 instruction stream for the overlay.

`supports` is the compiler's `unsupported` (ops, dtypes, ISA field widths, PARAM / ACC limits) plus the
refusal of float Programs (the overlay runs int8 only); ACT capacity is left to `estimate` so an
activation peak too large for ACT is a budget failure (exit 3) naming the pool, like memory elsewhere.
`estimate` is cheap (the ACT layout, no code generation): pools "act" (the layout's peak vs the ACT
scratchpad; the memory objective), "dsp" (the GEMM array's PEs vs the part's DSPs), "bram" (the
scratchpads' 18 Kb blocks, counted by port width, vs the part's) and "uram" on UltraScale+ parts (ACT
in UltraRAM there), MACs and the overlay parameters as figures; no latency yet
(the cycle model is later work). `build` compiles the stream and writes the artifact (artifact.py);
the `fsim` runner (runners/fsim.py) runs it on the functional simulator.
"""

from __future__ import annotations

import dataclasses

from edgevit.backend.costs import Costs, Pool
from edgevit.backend.target import QuantConstraints, Target
from edgevit.targets.fpga.config import OverlayConfig, overlay_config

BUILD_OPTIONS = ("passes", "pass_reports", "progress")
FLOAT_REASON = "float Programs need quant(w=8,a=8) (or w=4): the overlay runs int8 only"
UNBOUNDED_ACT = 1 << 40  # ACT size for the support check: ACT capacity is the "act" pool's business
# BRAM18 aspect ratios in data bits x depth (the 9th bit of each byte is parity, unused)
URAM_WIDTH, URAM_DEPTH = 72, 4096  # one UltraRAM (UltraScale+): 288 Kb
BRAM18_SHAPES = ((32, 512), (16, 1024), (8, 2048), (4, 4096), (2, 8192), (1, 16384))


def is_integer_program(program) -> bool:
    """True when every tensor of `program` is an integer (int8 lowering)."""
    return all(info.dtype.startswith(("int", "uint")) for info in program.tensors.values())


def memory_blocks(width_bits: int, depth: int) -> int:
    """BRAM18 blocks of one memory `width_bits` wide and `depth` words deep (the best aspect ratio)."""
    return min(-(-width_bits // w) * -(-depth // d) for w, d in BRAM18_SHAPES)


def scratchpad_blocks(cfg: OverlayConfig, act_in_uram: bool = False) -> dict[str, int]:
    """BRAM18 blocks of each scratchpad by its port width: ACT (two banks of `bk`-byte words; none when
    it lives in UltraRAM), WGT (one tile a word), ACC (`bm` int32 a row), PARAM (int32 words)."""
    act = 0 if act_in_uram else 2 * memory_blocks(8 * cfg.bk, -(-cfg.act_bytes // (2 * cfg.bk)))
    return {"ACT": act, "WGT": memory_blocks(8 * cfg.tile_bytes, cfg.wgt_tiles),
            "ACC": memory_blocks(32 * cfg.bm, cfg.acc_rows), "PARAM": memory_blocks(32, cfg.param_words)}


def act_uram_blocks(cfg: OverlayConfig) -> int:
    """UltraRAM blocks (4096 x 72 bits each) of ACT's two banks of `bk`-byte words."""
    return 2 * -(-8 * cfg.bk // URAM_WIDTH) * -(-cfg.act_bytes // (2 * cfg.bk) // URAM_DEPTH)


def act_peak(program, cfg: OverlayConfig):
    """The ACT layout of `program` (compiler.layout.plan_act) on an ACT without a size limit; its
    `peak` is the bytes ACT must hold."""
    from edgevit.targets.fpga.compiler.compile import _act_tensors, _scratch
    from edgevit.targets.fpga.compiler.layout import plan_act

    big = dataclasses.replace(cfg, act_bytes=UNBOUNDED_ACT)
    return plan_act(program, big, _act_tensors(program), _scratch(program, big))


class FpgaTarget(Target):
    """Zynq FPGAs: one int8 overlay (GEMM array + vector unit) driven by an instruction stream."""

    kind = "fpga"
    description = "FPGAs (Zynq): an int8 ViT overlay driven by a compiled instruction stream"
    default_runner = "fsim"

    def overlay(self, profile) -> OverlayConfig:
        """The overlay parameters of an fpga `profile` (config.overlay_config)."""
        return overlay_config(self.own_profile(profile))

    def check_profile(self, profile) -> None:
        """UserInputError for a profile of another kind or a part too small for the smallest overlay."""
        self.overlay(profile)

    def check_options(self, options) -> None:
        """Known options only (BUILD_OPTIONS: what `edgevit compile` passes to every target)."""
        from edgevit.errors import UserInputError

        unknown = sorted(set(options) - set(BUILD_OPTIONS))
        if unknown:
            raise UserInputError(f"the fpga target has no build option(s) {unknown}; it takes none of its own")

    def quant_constraints(self, profile) -> QuantConstraints:
        """8- or 4-bit weights (stored as int8), per-channel weight scales, per-tensor activations,
        multiplier + shift requantization, an int16 residual stream."""
        return QuantConstraints(weight_bits=(4, 8), per_channel_weights=True, per_tensor_activations=True,
                                power_of_two_scales=False, residual_int16=True)

    def supports(self, program, profile) -> list[str]:
        """Reasons the overlay cannot run `program` ([] when it can): float Programs, then the compiler's
        (ops, dtypes, field widths, PARAM / ACC sizes); ACT capacity is checked by the budget instead."""
        from edgevit.targets.fpga.compiler.compile import unsupported

        if not is_integer_program(program):
            return [f"program {program.name!r} is a float Program; {FLOAT_REASON}: add --passes 'quant(w=8,a=8)'"]
        cfg = dataclasses.replace(self.overlay(profile), act_bytes=UNBOUNDED_ACT)
        return unsupported(program, cfg)

    def estimate(self, program, profile) -> Costs:
        """Costs of `program` on an fpga `profile`, without code generation: pools act (ACT peak of the
        layout vs act_bytes), dsp (GEMM PEs vs DSPs), bram (scratchpad BRAM18 blocks by port width vs
        bram18) and, on parts with UltraRAM, uram (ACT there);
        activation_bytes = the ACT peak; figures: the overlay parameters, act_peak_bytes, const_bytes,
        bram blocks per scratchpad; latency_ms None (no cycle model yet)."""
        profile = self.own_profile(profile)
        cfg = overlay_config(profile)
        layout = act_peak(program, cfg)
        mem = profile.memory
        uram = int(mem.uram or 0) > 0  # UltraScale+ parts: ACT in UltraRAM, the rest in block RAM
        blocks = scratchpad_blocks(cfg, act_in_uram=uram)
        pools = [Pool("act", layout.peak, cfg.act_bytes, "activations at their peak (ACT layout)"),
                 Pool("dsp", cfg.pes, int(mem.dsp), f"GEMM array {cfg.bm} x {cfg.bk} PEs", unit=""),
                 Pool("bram", sum(blocks.values()), int(mem.bram18),
                      " + ".join(f"{k} {v}" for k, v in blocks.items() if v) + " BRAM18", unit="")]
        if uram:
            pools.append(Pool("uram", act_uram_blocks(cfg), int(mem.uram), "ACT (two banks)", unit=""))
        consts = sum(int(v.nbytes) for v in program.consts.values())
        figures = {**{f"overlay_{k}": v for k, v in cfg.to_dict().items()}, "act_peak_bytes": layout.peak,
                   "const_bytes": consts, **{f"bram18_{k.lower()}": v for k, v in blocks.items()}}
        return Costs(pools=tuple(pools), macs=program.macs(), activation_bytes=layout.peak, latency_ms=None,
                     figures=figures, plan=cfg)

    def over_budget_hint(self, costs: Costs, program) -> str:
        """For act: the largest activations and the passes that shrink them (spilling to DDR is not
        implemented); for dsp / bram: the part is too small for this overlay."""
        from edgevit.backend.budget_hints import reduce_hint

        hints = []
        over = {p.name for p in costs.over_budget}
        if "act" in over:
            big = sorted(program.tensors.values(), key=lambda t: -t.nbytes)[:3]
            names = ", ".join(f"{t.name} {t.nbytes:,} B" for t in big)
            hints.append(f"ACT holds every activation (spilling to DDR is not implemented); largest: {names}; "
                         f"{reduce_hint('activations', program)}.")
        if over & {"dsp", "bram"}:
            hints.append("The overlay derived from the profile does not fit its part: check the profile's dsp / "
                         "bram18 figures.")
        return " ".join(hints)

    def build(self, program, profile, costs: Costs, vectors, **options) -> dict[str, str | bytes]:
        """Every file of the FPGA artifact (artifact.artifact_files): the compiled stream, weights, memory
        map, overlay parameters, drivers, vectors, report and partial manifest. Options: passes,
        pass_reports, progress."""
        from edgevit.targets.fpga.artifact import artifact_files
        from edgevit.targets.fpga.compiler.compile import compile_program

        self.check_options(options)
        profile = self.own_profile(profile)
        cfg = overlay_config(profile)
        say = options.get("progress") or (lambda msg: None)
        say("compiling the instruction stream")
        compiled = compile_program(program, cfg)
        if costs is None:
            costs = self.estimate(program, profile)
        return artifact_files(program, profile, cfg, compiled, costs, vectors, passes=options.get("passes"),
                              pass_reports=options.get("pass_reports"))

    def runners(self) -> dict[str, type]:
        """fsim (the functional simulator, in-process: outputs and instruction counts, no timing) and
        verilator (the overlay's RTL with a DDR model: outputs, cycles, PE utilization, stalls)."""
        from edgevit.targets.fpga.runners.fsim import FsimRunner
        from edgevit.targets.fpga.runners.verilator import VerilatorRunner

        return {FsimRunner.name: FsimRunner, VerilatorRunner.name: VerilatorRunner}
