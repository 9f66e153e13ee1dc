"""MERGE (docs/fpga-isa.md): token merging (`token_merge`, integer path) of one image, in hardware.

The unit takes the 256-bit encoded instruction (`insn`) with a `start` pulse and stays `busy` until
the merged tokens and sizes are in ACT. It talks to ACT through `VecPorts` (vl-byte reads at any
byte address with one cycle of latency, vl-byte masked writes), like the vector engines, and works
sequentially in four phases (docs/integer-semantics.md "token_merge"):

1. UNIT, per token j: K_j = keys summed over heads (vl key bytes a read, one read per head and
   chunk), n_j = sum K^2, s = (62 - bitlen(n)) >> 1, q = isqrt(n << 2s) (Isqrt),
   R = (2^61 + (q >> 1)) / q (Divider), u_j = rshift_round(K_j R, 47 - s) -> local `umem`
   (int16, vl lanes a word, ceil(hd / vl) words a token; lanes past hd are 0). The token's size
   (int32 in ACT, or 1) goes to the local `sizes` memory. n == 0 needs no special case: K = 0, u = 0.
2. SIM, per unprotected A token: dot products with every unprotected B token, vl products a cycle;
   best = the first maximum (ties to the lowest b), score -> local `score` / `best`, flag cleared.
3. SELECT, r passes: the unflagged A token with the largest score (ties to the lowest a) is flagged
   and its (a, best, size) appended to the local `pairs` list.
4. OUT, rows in the reference order: protected tokens, kept A tokens, then B tokens. A copied row
   streams vl bytes a cycle; a B token with sources gathers its members from `pairs`, then per
   vl-byte column chunk accumulates num = sum size * (x - qmin) over the members and divides
   (2 num + den) / (2 den) in vl parallel Dividers (16 quotient bits). Each row's size is written
   as an int32 at dst_sizes + 4 row.

Limits the compiler must keep: rows <= max_tokens, head_dim <= max_head_dim, 1 <= r <= (N - protect)
// 2, heads >= 1, sizes >= 1 summing to <= 2^14 (as the reference checks). Like the other engines it
reads up to vl - 1 bytes past a row (and vl bytes at each size word), so ACT needs that slack.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal, signed
from amaranth.lib.memory import Memory

from edgevit.targets.fpga.isa import INSN_BITS, field_offsets
from edgevit.targets.fpga.rtl.divider import Divider
from edgevit.targets.fpga.rtl.isqrt import Isqrt
from edgevit.targets.fpga.rtl.vector_common import VecPorts, bit_length, delay, pack_lanes, rshift_round, unpack_lanes

KBITS = 17      # summed keys: |K| <= 255 heads * 128 < 2^16, signed
SIM_PIPE = 3    # similarity pipeline: umem read, products, lane sum; then the dot accumulator and the best


class MergeUnit(Elaboratable):
    """The MERGE instruction over `VecPorts`: `insn` (encoded, 256 bits) + `start` in, `busy` out.

    vl: ACT bytes a cycle (a power of two >= 4); bm: ACC lanes (unused, for VecPorts); max_tokens /
    max_head_dim: the largest N / head_dim the local memories hold; isqrt_steps / div_steps: the
    norm's Isqrt and Divider iterations a cycle; mean_div_steps: the weighted means' dividers'."""

    def __init__(self, vl: int, bm: int, max_tokens: int = 256, max_head_dim: int = 64, isqrt_steps: int = 2,
                 div_steps: int = 2, mean_div_steps: int = 4):
        assert vl >= 4 and vl & (vl - 1) == 0, "vl must be a power of two >= 4"
        self.vl, self.bm = vl, bm
        self.max_tokens, self.max_head_dim = max_tokens, max_head_dim
        self.max_chunks = -(-max_head_dim // vl)
        self.max_a = (max_tokens + 1) // 2
        self.isqrt_steps, self.div_steps, self.mean_div_steps = isqrt_steps, div_steps, mean_div_steps
        self.ports = VecPorts(vl, bm)
        self.insn = Signal(INSN_BITS)
        self.start = Signal()
        self.busy = Signal()
        self.f: dict[str, Signal] = {}          # fields come through `insn` (run_engine compatibility)

    def elaborate(self, platform):
        m = Module()
        vl, p, lg = self.vl, self.ports, self.vl.bit_length() - 1
        held = Signal(INSN_BITS)
        f = {name: held[o:o + w] for name, o, w in field_offsets("MERGE")[5:]}
        n_tok, hd, n_heads, r = f["rows"], f["head_dim"], f["heads"], f["r"]
        es = f["dtype"][0]                                  # log2 element bytes: int8 0, int16 1

        m.submodules.isqrt = isq = Isqrt(self.isqrt_steps)
        m.submodules.div = div = Divider(64, 32, 32, self.div_steps)
        mdivs = [Divider(32, 16, 16, self.mean_div_steps) for _ in range(vl)]
        for k, d in enumerate(mdivs):
            m.submodules[f"mdiv{k}"] = d

        def memory(name, width, depth, reads=1):
            """A local memory: its write port and `reads` read ports (one cycle of latency)."""
            mem = Memory(shape=width, depth=max(depth, 1), init=[])
            m.submodules[name] = mem
            return (mem.write_port(), *[mem.read_port() for _ in range(reads)])

        ib_bits = max(1, (self.max_a - 1).bit_length())
        kb_w, kb_r = memory("kbuf", KBITS * vl, self.max_chunks)                       # K of one token
        u_w, u_rb = memory("umem", 16 * vl, self.max_tokens * self.max_chunks)         # unit vectors
        ua_w, u_ra = memory("ubuf", 16 * vl, self.max_chunks)                            # the current A's u
        sz_w, sz_r = memory("sizes", 16, self.max_tokens)
        sc_w, sc_r = memory("score", 32, self.max_a)                                   # per A token
        bs_w, bs_r = memory("best", ib_bits, self.max_a)
        fl_w, fl_r = memory("flag", 1, self.max_a)
        pr_w, pr_r = memory("pairs", 2 * ib_bits + 16, self.max_a)                     # (a, b, size_a)
        ml_w, ml_r = memory("members", 24 + 16, self.max_a + 1)                        # (row address, size)

        # ---- per-instruction constants (INIT)
        na, nb = Signal(16), Signal(16)
        pa, pb = Signal(2), Signal(2)
        chunks = Signal(range(self.max_chunks + 2))
        row_bytes = Signal(18)
        kofs = Signal(16)

        # ---- loop registers
        j, ia, ib, k, tok, bidx, cnt, mi = (Signal(16, name=n) for n in ("j", "ia", "ib", "k", "tok", "bidx", "cnt", "mi"))
        c, h = Signal(range(self.max_chunks + 2)), Signal(8)
        qrow, caddr, addr, zaddr, ubase, abase, bbase, srow, oaddr, saddr = (
            Signal(24, name=n) for n in ("qrow", "caddr", "addr", "zaddr", "ubase", "abase", "bbase", "srow", "oaddr",
                                         "saddr"))
        wait, ret, off = Signal(3), Signal(2), Signal(18)
        nacc = Signal(48)                                   # n = sum K^2
        sh, rr = Signal(6), Signal(32)                      # 47 - s, R
        have, bsc = Signal(), Signal(signed(40))            # running best (score, index in bidx)
        osize, den = Signal(16), Signal(16)

        def drain(cycles, state):
            m.d.sync += wait.eq(cycles)
            m.next = state

        def drain_state(name, nxt, *sync):
            """A state waiting `wait` cycles for a pipeline to empty, then going to `nxt`."""
            with m.State(name):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.d.sync += list(sync)
                    m.next = nxt

        def branch(cond, yes, no):
            """Go to state `yes` when `cond`, else to `no`."""
            with m.If(cond):
                m.next = yes
            with m.Else():
                m.next = no

        row_of = Signal(16)                                 # the one row-address multiplier's token
        tok_row = Signal(24)
        m.d.comb += tok_row.eq(f["tokens"] + row_of * f["tokens_stride"])

        k_issue, k_first, k_last = Signal(), Signal(), Signal()
        u_issue, z_issue, s_issue, s_first, s_last = Signal(), Signal(), Signal(), Signal(), Signal()
        m_issue, g_issue, mg_issue, mg_first, c_issue = Signal(), Signal(), Signal(), Signal(), Signal()
        div_start, l_issue = Signal(), Signal()

        with m.FSM(name="merge") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += held.eq(self.insn)
                    m.next = "INIT"
            with m.State("INIT"):
                m.d.sync += [na.eq((n_tok + 1) >> 1), nb.eq(n_tok >> 1), pa.eq((f["protect"] + 1) >> 1),
                             pb.eq(f["protect"] >> 1), chunks.eq((hd + vl - 1) >> lg), row_bytes.eq(f["cols"] << es),
                             kofs.eq(n_heads * hd), j.eq(0), qrow.eq(f["qkv"]), zaddr.eq(f["sizes"]), ubase.eq(0)]
                m.next = "U_TOK"

            # ---------------- phase 1: unit vectors
            with m.State("U_TOK"):
                with m.If(j == n_tok):
                    m.d.sync += [ia.eq(pa), abase.eq(Mux(pa != 0, chunks << 1, 0))]
                    m.next = "S_A"
                with m.Else():
                    m.d.comb += [z_issue.eq(1), p.act_ren.eq(f["has_sizes"]), p.act_raddr.eq(zaddr)]
                    m.d.sync += [caddr.eq(qrow + kofs), addr.eq(qrow + kofs), c.eq(0), h.eq(0), nacc.eq(0)]
                    m.next = "U_READ"
            with m.State("U_READ"):
                m.d.comb += [k_issue.eq(1), k_first.eq(h == 0), k_last.eq(h == n_heads - 1),
                             p.act_ren.eq(1), p.act_raddr.eq(addr)]
                with m.If(h == n_heads - 1):
                    m.d.sync += [h.eq(0), c.eq(c + 1), caddr.eq(caddr + vl), addr.eq(caddr + vl)]
                    with m.If(c == chunks - 1):
                        drain(3, "U_KDRAIN")
                with m.Else():
                    m.d.sync += [h.eq(h + 1), addr.eq(addr + hd)]
            drain_state("U_KDRAIN", "U_SQRT")
            with m.State("U_SQRT"):
                s_c = Signal(5)
                m.d.comb += [s_c.eq((62 - bit_length(m, nacc, "nbits")) >> 1), isq.start.eq(1),
                             isq.x.eq((nacc << (s_c << 1))[:62])]
                m.d.sync += sh.eq(47 - s_c)
                m.next = "U_SQRTW"
            with m.State("U_SQRTW"):
                with m.If(isq.done):
                    m.d.comb += [div.start.eq(1), div.dividend.eq((1 << 61) + (isq.root >> 1)),
                                 div.divisor.eq(isq.root)]
                    m.next = "U_DIVW"
            with m.State("U_DIVW"):
                with m.If(div.done):
                    m.d.sync += [rr.eq(div.quotient), c.eq(0)]
                    m.next = "U_UNIT"
            with m.State("U_UNIT"):
                m.d.comb += [u_issue.eq(1), kb_r.addr.eq(c)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == chunks - 1):
                    drain(2, "U_UDRAIN")
            drain_state("U_UDRAIN", "U_TOK", j.eq(j + 1), qrow.eq(qrow + f["qkv_stride"]), zaddr.eq(zaddr + 4),
                        ubase.eq(ubase + chunks))

            # ---------------- phase 2: similarities, best B per unprotected A
            with m.State("S_A"):
                with m.If(ia == na):
                    m.d.sync += k.eq(0)
                    m.next = "M_PASS"
                with m.Else():
                    m.d.sync += [ib.eq(pb), bbase.eq(Mux(pb != 0, chunks + (chunks << 1), chunks)),
                                 c.eq(0), have.eq(0)]
                    m.next = "S_LOAD"
            with m.State("S_LOAD"):                         # u of the A token -> ubuf (umem has one read port)
                m.d.comb += [l_issue.eq(1), u_rb.addr.eq(abase + c)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == chunks - 1):
                    m.d.sync += c.eq(0)
                    drain(1, "S_LDRAIN")
            drain_state("S_LDRAIN", "S_RUN")
            with m.State("S_RUN"):
                m.d.comb += [s_issue.eq(1), s_first.eq(c == 0), s_last.eq(c == chunks - 1),
                             u_ra.addr.eq(c), u_rb.addr.eq(bbase + c)]
                m.d.sync += c.eq(c + 1)
                with m.If(c == chunks - 1):
                    m.d.sync += [c.eq(0), ib.eq(ib + 1), bbase.eq(bbase + (chunks << 1))]
                    with m.If(ib == nb - 1):
                        drain(SIM_PIPE + 1, "S_DRAIN")
            drain_state("S_DRAIN", "S_WRITE")
            with m.State("S_WRITE"):
                m.d.comb += [sc_w.en.eq(1), sc_w.addr.eq(ia), sc_w.data.eq(bsc[:32]),
                             bs_w.en.eq(1), bs_w.addr.eq(ia), bs_w.data.eq(bidx),
                             fl_w.en.eq(1), fl_w.addr.eq(ia), fl_w.data.eq(0)]
                m.d.sync += [ia.eq(ia + 1), abase.eq(abase + (chunks << 1))]
                m.next = "S_A"

            # ---------------- phase 3: the r best scores
            with m.State("M_PASS"):
                with m.If(k == r):
                    m.d.sync += [oaddr.eq(f["dst"]), saddr.eq(f["dst_sizes"])]
                    m.next = "O_PA"
                with m.Else():
                    m.d.sync += [ia.eq(pa), have.eq(0)]
                    m.next = "M_SCAN"
            with m.State("M_SCAN"):
                m.d.comb += [m_issue.eq(1), sc_r.addr.eq(ia), fl_r.addr.eq(ia)]
                m.d.sync += ia.eq(ia + 1)
                with m.If(ia == na - 1):
                    drain(1, "M_DRAIN")
            drain_state("M_DRAIN", "M_REC")
            with m.State("M_REC"):
                m.d.comb += [fl_w.en.eq(1), fl_w.addr.eq(bidx), fl_w.data.eq(1), bs_r.addr.eq(bidx),
                             sz_r.addr.eq(bidx << 1)]
                m.next = "M_REC2"
            with m.State("M_REC2"):
                m.d.comb += [pr_w.en.eq(1), pr_w.addr.eq(k), pr_w.data.eq(Cat(bidx[:ib_bits], bs_r.data, sz_r.data))]
                m.d.sync += k.eq(k + 1)
                m.next = "M_PASS"

            # ---------------- phase 4: output rows
            with m.State("O_PA"):
                m.d.sync += [tok.eq(0), ret.eq(0)]
                branch(pa != 0, "C_START", "O_PB")
            with m.State("O_PB"):
                m.d.sync += [tok.eq(1), ret.eq(1)]
                branch(pb != 0, "C_START", "KA_INIT")
            with m.State("KA_INIT"):
                m.d.sync += ia.eq(pa)
                m.next = "KA_RD"
            with m.State("KA_RD"):
                m.d.comb += fl_r.addr.eq(ia)
                with m.If(ia == na):
                    m.d.sync += ib.eq(pb)
                    m.next = "B_GATHER"
                with m.Else():
                    m.next = "KA_CHK"
            with m.State("KA_CHK"):
                with m.If(fl_r.data):
                    m.d.sync += ia.eq(ia + 1)
                    m.next = "KA_RD"
                with m.Else():
                    m.d.sync += [tok.eq(ia << 1), ret.eq(2)]
                    m.next = "C_START"
            with m.State("B_GATHER"):
                m.d.comb += sz_r.addr.eq((ib << 1) + 1)
                branch(ib == nb, "IDLE", "B_GSZ")
            with m.State("B_GSZ"):
                m.d.comb += [row_of.eq((ib << 1) + 1), ml_w.en.eq(1), ml_w.addr.eq(0), ml_w.data.eq(Cat(tok_row, sz_r.data))]
                m.d.sync += [den.eq(sz_r.data), cnt.eq(1), k.eq(0)]
                m.next = "B_SCAN"
            with m.State("B_SCAN"):
                m.d.comb += [g_issue.eq(1), pr_r.addr.eq(k)]
                m.d.sync += k.eq(k + 1)
                with m.If(k == r - 1):
                    drain(1, "B_DRAIN")
            drain_state("B_DRAIN", "B_DEC")
            with m.State("B_DEC"):
                m.d.sync += [tok.eq((ib << 1) + 1), ret.eq(3), off.eq(0)]
                branch(cnt == 1, "C_START", "MG_COL")
            with m.State("MG_COL"):
                with m.If(off >= row_bytes):
                    m.d.sync += osize.eq(den)
                    m.next = "W_SIZE"
                with m.Else():
                    m.d.sync += mi.eq(0)
                    m.next = "MG_RD"
            with m.State("MG_RD"):
                m.d.comb += [mg_issue.eq(1), mg_first.eq(mi == 0), ml_r.addr.eq(mi)]
                m.d.sync += mi.eq(mi + 1)
                with m.If(mi == cnt - 1):
                    drain(3, "MG_DRAIN")
            drain_state("MG_DRAIN", "MG_DIV")
            with m.State("MG_DIV"):
                m.d.comb += div_start.eq(1)
                m.next = "MG_DIVW"
            with m.State("MG_DIVW"):
                with m.If(mdivs[0].done):
                    m.d.sync += off.eq(off + vl)
                    m.next = "MG_COL"
            with m.State("C_START"):
                m.d.comb += [sz_r.addr.eq(tok), row_of.eq(tok)]
                m.d.sync += [off.eq(0), srow.eq(tok_row)]
                m.next = "C_SZ"
            with m.State("C_SZ"):
                m.d.sync += osize.eq(sz_r.data)
                m.next = "C_ROW"
            with m.State("C_ROW"):
                m.d.comb += [c_issue.eq(1), p.act_ren.eq(1), p.act_raddr.eq(srow + off)]
                m.d.sync += off.eq(off + vl)
                with m.If(off + vl >= row_bytes):
                    drain(1, "C_DRAIN")
            drain_state("C_DRAIN", "W_SIZE")
            with m.State("W_SIZE"):
                m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(saddr), p.act_wdata.eq(osize), p.act_wmask.eq(0xF)]
                m.d.sync += [saddr.eq(saddr + 4), oaddr.eq(oaddr + f["dst_stride"])]
                with m.Switch(ret):
                    with m.Case(0):
                        m.next = "O_PB"
                    with m.Case(1):
                        m.next = "KA_INIT"
                    with m.Case(2):
                        m.d.sync += ia.eq(ia + 1)
                        m.next = "KA_RD"
                    with m.Case(3):
                        m.d.sync += ib.eq(ib + 1)
                        m.next = "B_GATHER"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # ---- the multiplier bank: vl signed 18 x 34 products, registered; one user at a time (selected by
        # its pipeline's valid): K^2 (norms), K R (unit vectors), u_a u_b (similarities), size (x - qmin) (means)
        mul_a = [Signal(signed(18), name=f"mul_a{i}") for i in range(vl)]
        mul_b = [Signal(signed(34), name=f"mul_b{i}") for i in range(vl)]
        prod = [Signal(signed(52), name=f"prod{i}") for i in range(vl)]
        m.d.sync += [prod[i].eq(mul_a[i] * mul_b[i]) for i in range(vl)]

        # ---- phase 1 pipelines: size capture; key sums (t+1); kbuf, K^2 (t+2); n (t+3)
        with m.If(delay(m, z_issue, 1, "zv")):
            m.d.comb += [sz_w.en.eq(1), sz_w.addr.eq(j), sz_w.data.eq(Mux(f["has_sizes"], p.act_rdata[:16], 1))]
        kv1, kf1, kl1 = delay(m, k_issue, 1, "kv"), delay(m, k_first, 1, "kf"), delay(m, k_last, 1, "kl")
        kc1 = delay(m, c, 1, "kc")
        kacc = [Signal(signed(KBITS), name=f"kacc{i}") for i in range(vl)]
        kreg = [Signal(signed(KBITS), name=f"kreg{i}") for i in range(vl)]
        kv2 = Signal()
        kc2 = Signal.like(c)
        m.d.sync += kv2.eq(kv1 & kl1)
        for i in range(vl):
            ksum = Signal(signed(KBITS), name=f"ksum{i}")
            m.d.comb += ksum.eq(Mux(kf1, 0, kacc[i]) + p.act_rdata[8 * i:8 * i + 8].as_signed())
            with m.If(kv1):
                m.d.sync += kacc[i].eq(ksum)
            with m.If(kv1 & kl1):
                m.d.sync += kreg[i].eq(Mux((kc1 << lg) + i < hd, ksum, 0))
        with m.If(kv1 & kl1):
            m.d.sync += kc2.eq(kc1)
        with m.If(kv2):
            m.d.comb += [kb_w.en.eq(1), kb_w.addr.eq(kc2), kb_w.data.eq(Cat(*kreg))]
            m.d.comb += [x.eq(kreg[i]) for i in range(vl) for x in (mul_a[i], mul_b[i])]
        with m.If(delay(m, kv2, 1, "kv3")):
            m.d.sync += nacc.eq(nacc + sum(prod))

        # ---- unit vectors: kbuf data (t+1) -> K R (t+2) -> umem
        uv1 = delay(m, u_issue, 1, "uv")
        uv2, uc2 = delay(m, uv1, 1, "uv2"), delay(m, c, 2, "uc")
        with m.If(uv1):
            m.d.comb += [mul_a[i].eq(kb_r.data[KBITS * i:KBITS * (i + 1)].as_signed()) for i in range(vl)]
            m.d.comb += [mul_b[i].eq(rr) for i in range(vl)]
        with m.If(uv2):
            m.d.comb += [u_w.en.eq(1), u_w.addr.eq(ubase + uc2),
                         u_w.data.eq(Cat(*[rshift_round(x, sh)[:16] for x in prod]))]

        lc1 = delay(m, c, 1, "lc")
        with m.If(delay(m, l_issue, 1, "lv")):
            m.d.comb += [ua_w.en.eq(1), ua_w.addr.eq(lc1), ua_w.data.eq(u_rb.data)]

        # ---- similarities: umem data (t+1) -> products (t+2) -> lane sum (t+3) -> dot (t+4) -> best
        sv1 = delay(m, s_issue, 1, "sv1")
        sv2, sf2, sl2, sib2 = (delay(m, s_issue, SIM_PIPE, "sv"), delay(m, s_first, SIM_PIPE, "sf"),
                               delay(m, s_last, SIM_PIPE, "sl"), delay(m, ib, SIM_PIPE, "sib"))
        with m.If(sv1):
            m.d.comb += [mul_a[i].eq(u_ra.data[16 * i:16 * i + 16].as_signed()) for i in range(vl)]
            m.d.comb += [mul_b[i].eq(u_rb.data[16 * i:16 * i + 16].as_signed()) for i in range(vl)]
        psum = Signal(signed(40))
        m.d.sync += psum.eq(sum(x[:32].as_signed() for x in prod))
        dacc, cand = Signal(signed(40)), Signal(signed(40))
        dot = Signal(signed(40))
        cv3 = Signal()
        cib3 = Signal(16)
        m.d.comb += dot.eq(Mux(sf2, 0, dacc) + psum)
        m.d.sync += cv3.eq(sv2 & sl2)
        with m.If(sv2):
            m.d.sync += dacc.eq(dot)
        with m.If(sv2 & sl2):
            m.d.sync += [cand.eq(dot), cib3.eq(sib2)]
        with m.If(cv3 & (~have | (cand > bsc))):
            m.d.sync += [bsc.eq(cand), bidx.eq(cib3), have.eq(1)]

        # ---- selection: score / flag data (t+1)
        mv1, mia1 = delay(m, m_issue, 1, "mv"), delay(m, ia, 1, "mia")
        with m.If(mv1 & ~fl_r.data & (~have | (sc_r.data.as_signed() > bsc))):
            m.d.sync += [bsc.eq(sc_r.data.as_signed()), bidx.eq(mia1), have.eq(1)]

        # ---- gather the sources of B token ib: pairs data (t+1)
        pr_a, pr_b, pr_s = pr_r.data[:ib_bits], pr_r.data[ib_bits:2 * ib_bits], pr_r.data[2 * ib_bits:]
        with m.If(delay(m, g_issue, 1, "gv") & (pr_b == ib)):
            m.d.comb += [row_of.eq(pr_a << 1), ml_w.en.eq(1), ml_w.addr.eq(cnt), ml_w.data.eq(Cat(tok_row, pr_s))]
            m.d.sync += [cnt.eq(cnt + 1), den.eq(den + pr_s)]

        # ---- weighted means: members data (t+1) -> ACT read; ACT data (t+2) -> num; dividers
        mgv1, mgf1 = delay(m, mg_issue, 1, "mgv"), delay(m, mg_first, 1, "mgf")
        with m.If(mgv1):
            m.d.comb += [p.act_ren.eq(1), p.act_raddr.eq(ml_r.data[:24] + off)]
        msz2 = delay(m, ml_r.data[24:], 1, "msz")
        mgv2, mgv3, mgf3 = delay(m, mgv1, 1, "mgv2"), delay(m, mgv1, 2, "mgv3"), delay(m, mgf1, 2, "mgf3")
        qmin = Mux(es, -32768, -128)
        xs = unpack_lanes(m, p.act_rdata, f["dtype"], vl, width=18, name="mx")
        nums = [Signal(32, name=f"num{i}") for i in range(vl)]
        rem = Signal(signed(20))
        m.d.comb += rem.eq(row_bytes - off)
        mask = Cat(*[rem > i for i in range(vl)])
        for i in range(vl):
            with m.If(mgv2):
                m.d.comb += [mul_a[i].eq(msz2), mul_b[i].eq((xs[i] - qmin)[:16])]
            with m.If(mgv3):
                m.d.sync += nums[i].eq(Mux(mgf3, 0, nums[i]) + prod[i][:32])
            m.d.comb += [mdivs[i].start.eq(div_start), mdivs[i].dividend.eq((nums[i] << 1) + den),
                         mdivs[i].divisor.eq(den << 1)]
        with m.If(fsm.ongoing("MG_DIVW") & mdivs[0].done):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(oaddr + off), p.act_wmask.eq(mask),
                         p.act_wdata.eq(pack_lanes(m, [d.quotient + qmin for d in mdivs], f["dtype"], vl, "mpack"))]

        # ---- row copy: ACT data (t+1) -> write
        cwa, cwm = delay(m, oaddr + off, 1, "cwa"), delay(m, mask, 1, "cwm")
        with m.If(delay(m, c_issue, 1, "cv")):
            m.d.comb += [p.act_wen.eq(1), p.act_waddr.eq(cwa), p.act_wmask.eq(cwm), p.act_wdata.eq(p.act_rdata)]
        return m
