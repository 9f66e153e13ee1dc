"""The overlay's parameters, derived from an FPGA profile (docs/fpga-isa.md, "Overlay parameters").

`overlay_config(profile)` sizes the GEMM array from the DSP count (one DSP a multiply-accumulate PE,
`bm x bk` PEs, `bk` fixed at 16 and `bm` the largest power of two that fits) and the scratchpads from
the 18 Kb block RAMs (2 KiB of data each): WGT holds WGT_TILES tiles (double buffering with room to
spare), ACC and PARAM about 15 % and 8 % of the block RAM rounded down to a power of two, ACT most of
the rest (10 % is left for FIFOs and the vector unit's tables). The same object generates the
hardware, drives the compiler and the simulators, and is recorded in the artifact, so a stream is
only ever run on the overlay it was compiled for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgevit.errors import UserInputError

BK = 16                  # reduction lanes: bytes of ACT the array reads per step
BRAM18_BYTES = 2048      # data bytes of one 18 Kb block RAM (the 9th bit of each byte is parity)
WGT_TILES = 64
ACC_SHARE, PARAM_SHARE, SPARE_SHARE = 0.15, 0.08, 0.10
MIN_BM = 4


def _pow2_floor(x: float) -> int:
    x = int(x)
    return 1 << (x.bit_length() - 1) if x >= 1 else 0


@dataclass(frozen=True)
class OverlayConfig:
    """The overlay's parameters (see the module docstring); every size in the unit of its memory."""

    bk: int
    bm: int
    vl: int
    act_bytes: int
    wgt_tiles: int
    acc_rows: int
    param_words: int
    bus_bytes: int
    clock_hz: int
    ddr_latency_cycles: int

    @property
    def pes(self) -> int:
        """Multiply-accumulate units of the GEMM array (bm x bk)."""
        return self.bm * self.bk

    @property
    def tile_bytes(self) -> int:
        """Bytes of one WGT tile (bm x bk int8)."""
        return self.bm * self.bk

    def to_dict(self) -> dict:
        """Every parameter, for overlay.json and the memory map."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OverlayConfig":
        """The config recorded by `to_dict` (unknown keys refused)."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserInputError(f"overlay parameters: unknown key(s) {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in d.items()})


def overlay_config(profile) -> OverlayConfig:
    """The overlay for an FPGA `profile` (its memory: section: dsp, bram18, clock_hz); UserInputError when
    the part is too small for the smallest overlay (MIN_BM x BK PEs)."""
    mem = profile.memory
    bm = _pow2_floor(mem.dsp / BK)
    if bm < MIN_BM:
        raise UserInputError(f"profile {profile.name!r}: {mem.dsp} DSPs cannot hold the smallest GEMM array "
                             f"({MIN_BM} x {BK} = {MIN_BM * BK} multiply-accumulate units, one DSP each)")
    bram = mem.bram18 * BRAM18_BYTES
    wgt_bytes = WGT_TILES * bm * BK
    acc_rows = _pow2_floor(bram * ACC_SHARE / (4 * bm))
    param_words = _pow2_floor(bram * PARAM_SHARE / 4)
    act = int(bram * (1 - SPARE_SHARE)) - wgt_bytes - acc_rows * 4 * bm - param_words * 4
    act_bytes = act // 64 * 64
    if acc_rows < 64 or act_bytes < 16 * 1024:
        raise UserInputError(f"profile {profile.name!r}: {mem.bram18} block RAMs (18 Kb) leave too little for the "
                             f"overlay's scratchpads (ACT {act_bytes} B, ACC {acc_rows} rows)")
    vl = 8 if bm <= 16 else 16
    bus_bytes = 8 if bm <= 16 else 16  # 64-bit HP ports on Zynq-7000, 128-bit on Zynq UltraScale+
    return OverlayConfig(bk=BK, bm=bm, vl=vl, act_bytes=act_bytes, wgt_tiles=WGT_TILES, acc_rows=acc_rows,
                         param_words=param_words, bus_bytes=bus_bytes, clock_hz=int(mem.clock_hz),
                         ddr_latency_cycles=40)
