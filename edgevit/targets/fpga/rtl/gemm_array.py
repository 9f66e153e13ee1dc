"""The GEMM array: `bm x bk` weight-stationary multiply-accumulate PEs with an ACC read-modify-write
pipeline (docs/fpga-isa.md, GEMM).

The array holds one weight tile `W[m][k]` (int8, byte `m*bk + k` of the tile word, as in WGT) in a
register, loaded whole from WGT (`w_load`, `w_tile`) or one row of `bk` bytes at a time
(`w_row_load`, `w_row`, `w_row_data`). Each cycle it takes one input vector `x[k]` (`bk` bytes,
int8, or uint8 when `in_unsigned`) and the ACC row `in_acc` it accumulates into, and computes

    ACC[in_acc][m] = (0 if in_reset else ACC[in_acc][m]) + sum_k W[m][k] * x[k]     (int32, wrapping)

through three pipeline stages, one step issued a cycle:

    stage 0  products W[m][k] * x[k] (one DSP each)             -> registered
    stage 1  adder tree per output m; issue the ACC read         -> registered
    stage 2  add the old ACC row (or 0 on reset), write it back

A step reading the row the step before it writes gets the new value (the ACC read port is
transparent to the write port), so back-to-back steps into the same row (`acc_stride` 0) are exact.
`busy` is high while a step is still in the pipeline; LATENCY cycles after a step enters, its row
is written.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal, signed

LATENCY = 3  # cycles from a step's input to the clock edge that writes its ACC row


class GemmArray(Elaboratable):
    """`bm x bk` PEs. Ports (all on the sync domain):

    weights: w_load, w_tile (bm*bk*8), w_row_load, w_row (row index), w_row_data (bk*8)
    step in: in_valid, in_data (bk*8), in_unsigned, in_reset, in_acc (acc_bits)
    ACC:     acc_rd_addr, acc_rd_en -> acc_rd_data (bm*32, one cycle later, transparent to the write)
             acc_wr_addr, acc_wr_data (bm*32), acc_wr_en
    status:  busy (a step in flight)
    """

    def __init__(self, bm: int, bk: int, acc_bits: int = 16):
        self.bm, self.bk, self.acc_bits = bm, bk, acc_bits
        self.w_load = Signal()
        self.w_tile = Signal(bm * bk * 8)
        self.w_row_load = Signal()
        self.w_row = Signal(range(max(bm, 2)))
        self.w_row_data = Signal(bk * 8)

        self.in_valid = Signal()
        self.in_data = Signal(bk * 8)
        self.in_unsigned = Signal()
        self.in_reset = Signal()
        self.in_acc = Signal(acc_bits)

        self.acc_rd_addr = Signal(acc_bits)
        self.acc_rd_en = Signal()
        self.acc_rd_data = Signal(bm * 32)
        self.acc_wr_addr = Signal(acc_bits)
        self.acc_wr_data = Signal(bm * 32)
        self.acc_wr_en = Signal()

        self.busy = Signal()
        self.tile = Signal(bm * bk * 8)  # the stationary weights (observable for tests)

    @property
    def pes(self) -> int:
        """Multiply-accumulate units: bm * bk."""
        return self.bm * self.bk

    def elaborate(self, platform):
        """The array's logic (see the module docstring)."""
        m = Module()
        bm, bk = self.bm, self.bk

        # Weight tile register: a whole tile or one row of bk bytes a cycle.
        with m.If(self.w_load):
            m.d.sync += self.tile.eq(self.w_tile)
        with m.Elif(self.w_row_load):
            for r in range(bm):
                with m.If(self.w_row == r):
                    m.d.sync += self.tile.word_select(r, bk * 8).eq(self.w_row_data)

        # Stage 0: one product per PE. x is sign- or zero-extended to 9 bits.
        xs = []
        for k in range(bk):
            byte = self.in_data.word_select(k, 8)
            x = Signal(signed(9), name=f"x{k}")
            m.d.comb += x.eq(Cat(byte, byte[7] & ~self.in_unsigned))
            xs.append(x)
        prods = [[Signal(signed(17), name=f"p{r}_{k}") for k in range(bk)] for r in range(bm)]
        for r in range(bm):
            for k in range(bk):
                w = self.tile.word_select(r * bk + k, 8).as_signed()
                m.d.sync += prods[r][k].eq(w * xs[k])
        v1, reset1, acc1 = Signal(), Signal(), Signal(self.acc_bits)
        m.d.sync += [v1.eq(self.in_valid), reset1.eq(self.in_reset), acc1.eq(self.in_acc)]

        # Stage 1: adder tree per output lane; read the ACC row this step accumulates into.
        sum_bits = 17 + (bk - 1).bit_length()
        sums = [Signal(signed(sum_bits), name=f"s{r}") for r in range(bm)]
        for r in range(bm):
            m.d.sync += sums[r].eq(_tree_sum(prods[r]))
        v2, reset2, acc2 = Signal(), Signal(), Signal(self.acc_bits)
        m.d.sync += [v2.eq(v1), reset2.eq(reset1), acc2.eq(acc1)]
        m.d.comb += [self.acc_rd_addr.eq(acc1), self.acc_rd_en.eq(v1)]

        # Stage 2: accumulate (int32, wrapping) and write back.
        lanes = []
        for r in range(bm):
            old = Mux(reset2, 0, self.acc_rd_data.word_select(r, 32).as_signed())
            lanes.append((old + sums[r])[:32])
        m.d.comb += [self.acc_wr_en.eq(v2), self.acc_wr_addr.eq(acc2), self.acc_wr_data.eq(Cat(*lanes)),
                     self.busy.eq(v1 | v2)]
        return m


def _tree_sum(values):
    """A balanced adder tree over a list of Amaranth values."""
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]
    return values[0]
