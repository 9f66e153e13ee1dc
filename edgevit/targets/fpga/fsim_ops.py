"""What each overlay instruction does, in NumPy (docs/fpga-isa.md): the functional simulator's datapath.

`State` holds the memories of one overlay (DDR, ACT, WGT, ACC, PARAM) with bounds-checked accessors;
`OPS[op](state, insn, where)` executes one instruction on it. Vector instructions build the param
dicts of the reference integer routines (`intmath.requantize / add_int / layernorm_int`,
`intlut.softmax_from_scores / lut_int8`, `token_merge.run_int8`) from the PARAM words the
instruction points at and call them, so the simulator is bit-exact with the reference interpreter
by construction. Scheduling, dependency tokens and statistics live in `fsim.py`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edgevit.errors import EdgevitError
from edgevit.lower.intlut import SOFTMAX_RECIP_BITS, lut_int8, softmax_from_scores
from edgevit.lower.intmath import add_int, layernorm_int, requantize
from edgevit.lower.ops import token_merge
from edgevit.lower.ops.intcommon import exact_matmul
from edgevit.lower.program import Kernel
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.isa import DTYPE_NAMES, Insn

TABLE_WORDS = 64  # a 256-entry int8 table, four entries a word


class FsimError(EdgevitError):
    """A stream the overlay cannot run: an access outside a memory, a bad field, a token rule breach, a deadlock."""


class State:
    """The overlay's memories: `ddr` (the caller's uint8 array, modified in place), `act` uint8 [act_bytes],
    `wgt` int8 [wgt_tiles, bm, bk], `acc` int32 [acc_rows, bm], `param` int32 [param_words], and `counts`
    (gemm_steps, dma/vector byte counters) that the ops increment."""

    def __init__(self, cfg: OverlayConfig, ddr: np.ndarray) -> None:
        self.cfg = cfg
        self.ddr = ddr
        self.act = np.zeros(cfg.act_bytes, dtype=np.uint8)
        self.wgt = np.zeros((cfg.wgt_tiles, cfg.bm, cfg.bk), dtype=np.int8)
        self.acc = np.zeros((cfg.acc_rows, cfg.bm), dtype=np.int32)
        self.param = np.zeros(cfg.param_words, dtype=np.int32)
        self.counts = {"gemm_steps": 0, "dma_load_bytes": 0, "dma_store_bytes": 0, "load_act_bytes": 0,
                       "load_wgt_bytes": 0, "load_param_bytes": 0, "vector_elements": 0}

    # -------------------------------------------------------------- bounds

    @staticmethod
    def check(end: int, size: int, where: str, what: str, space: str, unit: str) -> None:
        """FsimError unless `end` (one past the last unit accessed) is within a space of `size` units."""
        if end > size:
            raise FsimError(f"{where}: {what} = {end} is past {space} ({size} {unit})")

    def _bytes(self, mem: np.ndarray, space: str, addr: int, stride: int, rows: int, row_bytes: int, where: str,
               what: str, write: bool = False) -> np.ndarray:
        """A [rows, row_bytes] uint8 view of byte memory `mem` (row r at addr + r*stride), bounds checked."""
        if rows == 0 or row_bytes == 0:
            return np.zeros((rows, row_bytes), dtype=np.uint8)
        self.check(addr + (rows - 1) * stride + row_bytes, mem.size, where, what, space, "bytes")
        return as_strided(mem[addr:], shape=(rows, row_bytes), strides=(stride, 1), writeable=write)

    def read_act(self, addr: int, stride: int, rows: int, cols: int, dtype: str, where: str, what: str) -> np.ndarray:
        """ACT region of `rows` rows of `cols` little-endian `dtype` elements -> ndarray [rows, cols] (a copy)."""
        dt = np.dtype(dtype).newbyteorder("<")
        raw = self._bytes(self.act, "ACT", addr, stride, rows, cols * dt.itemsize, where,
                          f"{what} + ({rows} - 1) * stride + {cols * dt.itemsize}")
        return np.ascontiguousarray(raw).view(dt).reshape(rows, cols)

    def write_act(self, addr: int, stride: int, values: np.ndarray, dtype: str, where: str, what: str) -> None:
        """Write `values` [rows, cols] as little-endian `dtype` rows at addr + r*stride of ACT."""
        dt = np.dtype(dtype).newbyteorder("<")
        rows, cols = values.shape
        raw = np.ascontiguousarray(values.astype(dt)).view(np.uint8).reshape(rows, cols * dt.itemsize)
        self._bytes(self.act, "ACT", addr, stride, rows, cols * dt.itemsize, where,
                    f"{what} + ({rows} - 1) * stride + {cols * dt.itemsize}", write=True)[...] = raw
        self.counts["vector_elements"] += values.size

    def words(self, index: int, n: int, where: str, what: str) -> np.ndarray:
        """PARAM words [index, index + n) as int64 (signed)."""
        self.check(index + n, self.cfg.param_words, where, f"{what} + {n}", "PARAM", "words")
        return self.param[index:index + n].astype(np.int64)

    def table8(self, index: int, where: str, what: str) -> np.ndarray:
        """The 256-entry int8 table packed four a word at PARAM[index] (entry 0 in the low byte)."""
        self.check(index + TABLE_WORDS, self.cfg.param_words, where, f"{what} + {TABLE_WORDS}", "PARAM", "words")
        return self.param[index:index + TABLE_WORDS].astype("<i4").view(np.int8).copy()

    def acc_block(self, acc: int, rows: int, cols: int, where: str) -> np.ndarray:
        """REQUANT/SOFTMAX layout: row r, column c = ACC[acc + r*ceil(cols/bm) + c//bm][c % bm] -> int64 [rows, cols]."""
        per = -(-cols // self.cfg.bm)
        self.check(acc + rows * per, self.cfg.acc_rows, where, "acc + rows * ceil(cols/bm)", "ACC", "rows")
        return self.acc[acc:acc + rows * per].reshape(rows, per * self.cfg.bm)[:, :cols].astype(np.int64)


def _int64(lo: int, hi: int) -> int:
    """An int64 stored as two PARAM words, low first (the low word read as unsigned)."""
    return (int(hi) << 32) | (int(lo) & 0xFFFFFFFF)


def _dtype(code: int, allowed: tuple[str, ...], where: str, field: str) -> str:
    name = DTYPE_NAMES[code]
    if name not in allowed:
        raise FsimError(f"{where}: {field} = {code} ({name}) is not allowed here; use one of {list(allowed)}")
    return name


# ------------------------------------------------------------------ DMA

def op_load(st: State, i: Insn, where: str) -> None:
    """LOAD: `rows` rows of `row_bytes` from DDR (dram + r*dram_stride) into ACT / WGT tiles / PARAM words."""
    src = st._bytes(st.ddr, "DDR", i.dram, i.dram_stride, i.rows, i.row_bytes, where,
                    "dram + (rows - 1) * dram_stride + row_bytes")
    n = i.rows * i.row_bytes
    cfg = st.cfg
    if i.mem == 0:
        st._bytes(st.act, "ACT", i.sram, i.sram_stride, i.rows, i.row_bytes, where,
                  "sram + (rows - 1) * sram_stride + row_bytes", write=True)[...] = src
        st.counts["load_act_bytes"] += n
    elif i.mem == 1:
        if i.row_bytes != cfg.tile_bytes:
            raise FsimError(f"{where}: row_bytes = {i.row_bytes} must be one WGT tile (bm*bk = {cfg.tile_bytes})")
        st.check(i.sram + i.rows, cfg.wgt_tiles, where, "sram + rows", "WGT", "tiles")
        st.wgt[i.sram:i.sram + i.rows] = src.view(np.int8).reshape(i.rows, cfg.bm, cfg.bk)
        st.counts["load_wgt_bytes"] += n
    elif i.mem == 2:
        if i.row_bytes % 4:
            raise FsimError(f"{where}: row_bytes = {i.row_bytes} must be a multiple of 4 for PARAM")
        st.check(i.sram + n // 4, cfg.param_words, where, "sram + rows * row_bytes / 4", "PARAM", "words")
        st.param[i.sram:i.sram + n // 4] = np.ascontiguousarray(src).view("<i4").reshape(-1)
        st.counts["load_param_bytes"] += n
    else:
        raise FsimError(f"{where}: mem = {i.mem} is not a memory (0 ACT, 1 WGT, 2 PARAM)")
    st.counts["dma_load_bytes"] += n


def op_store(st: State, i: Insn, where: str) -> None:
    """STORE: `rows` rows of `row_bytes` from ACT (sram + r*sram_stride) to DDR (dram + r*dram_stride)."""
    if i.mem != 0:
        raise FsimError(f"{where}: mem = {i.mem}; STORE reads ACT only (mem 0)")
    src = st._bytes(st.act, "ACT", i.sram, i.sram_stride, i.rows, i.row_bytes, where,
                    "sram + (rows - 1) * sram_stride + row_bytes")
    st._bytes(st.ddr, "DDR", i.dram, i.dram_stride, i.rows, i.row_bytes, where,
              "dram + (rows - 1) * dram_stride + row_bytes", write=True)[...] = src
    st.counts["dma_store_bytes"] += i.rows * i.row_bytes


# ------------------------------------------------------------------ GEMM and TILE

def op_gemm(st: State, i: Insn, where: str) -> None:
    """GEMM: `count` steps ACC[acc + s*acc_stride] (+)= WGT[wgt] @ x_s, x_s = bk bytes of ACT; int32 wrap-around."""
    cfg = st.cfg
    st.check(i.wgt + 1, cfg.wgt_tiles, where, "wgt + 1", "WGT", "tiles")
    if i.count == 0:
        return
    st.check(i.acc + (i.count - 1) * i.acc_stride + 1, cfg.acc_rows, where,
             "acc + (count - 1) * acc_stride + 1", "ACC", "rows")
    x = st._bytes(st.act, "ACT", i.inp, i.inp_stride, i.count, cfg.bk, where, "inp + (count - 1) * inp_stride + bk")
    x = x if i.unsigned else x.view(np.int8)
    prod = exact_matmul(x, st.wgt[i.wgt].T, cfg.bk * 255 * 128).astype(np.int64)  # [count, bm]
    if i.acc_stride == 0:  # every step hits the same row: sequential semantics
        total = prod[-1] if i.reset else st.acc[i.acc].astype(np.int64) + prod.sum(axis=0)
        st.acc[i.acc] = total.astype(np.int32)
    else:
        rows = slice(i.acc, i.acc + (i.count - 1) * i.acc_stride + 1, i.acc_stride)
        new = prod if i.reset else st.acc[rows].astype(np.int64) + prod
        st.acc[rows] = new.astype(np.int32)  # int64 -> int32 keeps the low 32 bits: wrap-around
    st.counts["gemm_steps"] += i.count


def op_tile(st: State, i: Insn, where: str) -> None:
    """TILE: WGT[wgt] from an ACT block (transpose 0: rows -> tile rows m; 1: rows -> tile columns k), zero padded."""
    cfg = st.cfg
    st.check(i.wgt + 1, cfg.wgt_tiles, where, "wgt + 1", "WGT", "tiles")
    lim_r, lim_c = (cfg.bk, cfg.bm) if i.transpose else (cfg.bm, cfg.bk)
    if i.rows > lim_r or i.cols > lim_c:
        raise FsimError(f"{where}: rows x cols = {i.rows} x {i.cols} exceeds {lim_r} x {lim_c} "
                        f"(transpose {i.transpose})")
    block = st._bytes(st.act, "ACT", i.src, i.stride, i.rows, i.cols, where,
                      "src + (rows - 1) * stride + cols").view(np.int8)
    tile = np.zeros((lim_r, lim_c), dtype=np.int8)
    tile[:i.rows, :i.cols] = block
    st.wgt[i.wgt] = tile.T if i.transpose else tile


# ------------------------------------------------------------------ vector instructions

def _call(where: str, fn, *args, **kwargs):
    """Call a reference routine; its contract errors (ranges, dtypes) become FsimError naming the instruction."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, OverflowError, TypeError, EdgevitError) as e:
        raise FsimError(f"{where}: {e}") from e


def op_requant(st: State, i: Insn, where: str) -> None:
    """REQUANT: y = requantize(ACC + bias[c], multiplier[c], shift[c], zp, qmin, qmax) (+ gelu table) -> ACT."""
    out = _dtype(i.dtype, ("int8", "int16", "int32", "uint8"), where, "dtype")
    acc = st.acc_block(i.acc, i.rows, i.cols, where)
    zp, qmin, qmax = (int(v) for v in st.words(i.param, 3, where, "param"))
    ch = st.words(i.chan, 3 * i.cols, where, "chan").reshape(i.cols, 3)
    y = _call(where, requantize, acc + ch[:, 0], ch[:, 1], ch[:, 2], zp, qmin, qmax, out_dtype=out)
    if i.gelu:
        if out != "int8":
            raise FsimError(f"{where}: gelu needs dtype int8, got {out}")
        y = _call(where, lut_int8, y, st.table8(i.param + 3, where, "param + 3"))
    st.write_act(i.dst, i.dst_stride, y, out, where, "dst")


def op_add(st: State, i: Insn, where: str) -> None:
    """ADD: add_int(a, b) with header ka, kb, bias (2 words), shift, zp, qmin, qmax at PARAM[param]."""
    ints = ("int8", "int16")
    a = st.read_act(i.a, i.a_stride, i.rows, i.cols, _dtype(i.a_dtype, ints, where, "a_dtype"), where, "a")
    b = st.read_act(i.b, i.b_stride, i.rows, i.cols, _dtype(i.b_dtype, ints, where, "b_dtype"), where, "b")
    out = _dtype(i.dtype, ints, where, "dtype")
    ka, kb, lo, hi, shift, zp, qmin, qmax = (int(v) for v in st.words(i.param, 8, where, "param"))
    params = {"ka": ka, "kb": kb, "bias": _int64(lo, hi), "shift": shift, "out_zp": zp, "qmin": qmin,
              "qmax": qmax, "out_dtype": out}
    if not 0 <= shift <= 62:
        raise FsimError(f"{where}: PARAM shift = {shift} is outside [0, 62]")
    st.write_act(i.dst, i.dst_stride, _call(where, add_int, a, b, params), out, where, "dst")


def op_layernorm(st: State, i: Insn, where: str) -> None:
    """LAYERNORM: layernorm_int per row; header frac_bits, eps_fixed (2 words), out_shift, zp, qmin, qmax;
    channel d: gain, bias lo, bias hi at PARAM[chan + 3d]."""
    ints = ("int8", "int16")
    src_dt = _dtype(i.src_dtype, ints, where, "src_dtype")
    out = _dtype(i.dtype, ints, where, "dtype")
    x = st.read_act(i.src, i.src_stride, i.rows, i.cols, src_dt, where, "src")
    frac, e_lo, e_hi, out_shift, zp, qmin, qmax = (int(v) for v in st.words(i.param, 7, where, "param"))
    ch = st.words(i.chan, 3 * i.cols, where, "chan").reshape(i.cols, 3)
    bias = (ch[:, 2] << 32) | (ch[:, 1] & 0xFFFFFFFF)
    params = {"dim": i.cols, "frac_bits": frac, "eps_fixed": _int64(e_lo, e_hi), "gain": ch[:, 0].astype(np.int32),
              "bias": bias, "out_shift": out_shift, "out_zp": zp, "qmin": qmin, "qmax": qmax,
              "in_dtype": src_dt, "out_dtype": out}
    if not (0 <= frac <= 30 and frac % 2 == 0 and 0 <= out_shift <= 62):
        raise FsimError(f"{where}: PARAM frac_bits = {frac} (even, 0..30) or out_shift = {out_shift} (0..62) invalid")
    st.write_act(i.dst, i.dst_stride, _call(where, layernorm_int, x, params), out, where, "dst")


def op_softmax(st: State, i: Insn, where: str) -> None:
    """SOFTMAX: softmax_from_scores of ACC score rows (+ log_size[size_j - 1] when has_sizes) -> uint8 ACT rows."""
    s = st.acc_block(i.acc, i.rows, i.cols, where)
    mult, shift, t_base, t_size, l_base, l_len = (int(v) for v in st.words(i.param, 6, where, "param"))
    table = st.words(t_base, t_size, where, "table_base").astype(np.int32)
    if t_size < 2 or table[0] <= 0 or table[0] & (int(table[0]) - 1) or table[0] > 1 << 30:
        raise FsimError(f"{where}: the exp table at PARAM {t_base} (size {t_size}) must start with 2^F, F <= 30")
    max_len = 1 << (31 - int(table[0]).bit_length())  # F = 30 - ceil(log2(max_len))
    if i.has_sizes:
        sizes = st.read_act(i.sizes, 0, 1, i.cols, "int32", where, "sizes")[0].astype(np.int64)
        bad = (sizes < 1) | (sizes > l_len)
        if bad.any():
            raise FsimError(f"{where}: token size {int(sizes[bad][0])} is outside [1, log_size_len = {l_len}]")
        s = s + st.words(l_base, l_len, where, "log_size_base")[sizes - 1]
    lut = {"table": table, "table_size": t_size, "max_len": max_len, "recip_bits": SOFTMAX_RECIP_BITS}
    st.write_act(i.dst, i.dst_stride, _call(where, softmax_from_scores, s, mult, shift, lut), "uint8", where, "dst")


def op_copy(st: State, i: Insn, where: str) -> None:
    """COPY: `rows` rows of `row_bytes` bytes from src (src_stride) to dst (dst_stride), within ACT."""
    x = st.read_act(i.src, i.src_stride, i.rows, i.row_bytes, "uint8", where, "src")
    st.write_act(i.dst, i.dst_stride, x, "uint8", where, "dst")


def op_meanpool(st: State, i: Insn, where: str) -> None:
    """MEANPOOL: acc_d = sum_n x[n, d] - N * in_zero_point, y = requantize(acc, multiplier, shift, zp) -> [1, D]."""
    x = st.read_act(i.src, i.src_stride, i.rows, i.cols,
                    _dtype(i.src_dtype, ("int8", "int16"), where, "src_dtype"), where, "src")
    in_zp, mult, shift, zp, qmin, qmax = (int(v) for v in st.words(i.param, 6, where, "param"))
    out = _dtype(i.dtype, ("int8", "int16"), where, "dtype")
    acc = x.sum(axis=0, keepdims=True, dtype=np.int64) - i.rows * in_zp
    st.write_act(i.dst, 0, _call(where, requantize, acc, mult, shift, zp, qmin, qmax, out_dtype=out), out, where, "dst")


def op_merge(st: State, i: Insn, where: str) -> None:
    """MERGE: token_merge.run_int8 on one image: tokens [N, D], keys of qkv [N, 3*H*hd] (, sizes [N])
    -> tokens [N - r, D] at dst, sizes int32 [N - r] at dst_sizes."""
    dt = _dtype(i.dtype, ("int8", "int16"), where, "dtype")
    n, width = i.rows, 3 * i.heads * i.head_dim
    if i.protect > token_merge.MAX_PROTECT or i.r < 1 or i.r > (n - i.protect) // 2:
        raise FsimError(f"{where}: r = {i.r}, protect = {i.protect} invalid for N = {n} "
                        f"(need 1 <= r <= (N - protect) // 2, protect <= {token_merge.MAX_PROTECT})")
    x = st.read_act(i.tokens, i.tokens_stride, n, i.cols, dt, where, "tokens")
    qkv = st.read_act(i.qkv, i.qkv_stride, n, width, "int8", where, "qkv")
    inputs = [x[None], qkv[None]]
    if i.has_sizes:
        inputs.append(st.read_act(i.sizes, 0, 1, n, "int32", where, "sizes"))
    kernel = Kernel(op="token_merge", name=where, inputs=("tokens", "qkv"), outputs=("merged", "sizes"),
                    attrs={"r": i.r, "heads": i.heads, "head_dim": i.head_dim, "protect": i.protect})
    tokens, sizes = _call(where, token_merge.run_int8, kernel, inputs, {})
    st.write_act(i.dst, i.dst_stride, tokens[0], dt, where, "dst")
    st.write_act(i.dst_sizes, 0, sizes, "int32", where, "dst_sizes")


def op_lut(st: State, i: Insn, where: str) -> None:
    """LUT: y = table[x + 128] on int8 rows, the 256-entry table at PARAM[param]."""
    x = st.read_act(i.src, i.src_stride, i.rows, i.cols, "int8", where, "src")
    st.write_act(i.dst, i.dst_stride, _call(where, lut_int8, x, st.table8(i.param, where, "param")), "int8",
                 where, "dst")


def op_finish(st: State, i: Insn, where: str) -> None:
    """FINISH: no work (its token pops are the scheduler's)."""


OPS = {"LOAD": op_load, "STORE": op_store, "GEMM": op_gemm, "TILE": op_tile, "REQUANT": op_requant, "ADD": op_add,
       "LAYERNORM": op_layernorm, "SOFTMAX": op_softmax, "COPY": op_copy, "MEANPOOL": op_meanpool,
       "MERGE": op_merge, "LUT": op_lut, "FINISH": op_finish}
