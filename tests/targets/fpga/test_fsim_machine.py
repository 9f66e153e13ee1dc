"""The functional simulator's machine: whole streams (bytes and Insn lists), the three orders, token rules,
every FsimError path, statistics and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgevit.lower.intmath import quantize_multipliers, requantize
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.fsim import FsimError, check_orders, check_tokens, run_stream
from edgevit.targets.fpga.fsim_ops import OPS, State
from edgevit.targets.fpga.isa import Insn, encode_stream

CFG = OverlayConfig(bk=16, bm=4, vl=4, act_bytes=4096, wgt_tiles=8, acc_rows=64, param_words=1024, bus_bytes=8,
                    clock_hz=100_000_000, ddr_latency_cycles=40)
N, K, M = 5, 32, 8          # a linear layer: x [N, K] int8 @ W [M, K]^T -> int8 [N, M]
X_AT, W_AT, P_AT, OUT_AT = 0, 256, 1024, 2048   # DDR offsets


def linear_case(seed: int = 0):
    """DDR holding x, W (as 4 tiles: (mt, kt) in order), PARAM words; and the expected int8 output."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (N, K)).astype(np.int8)
    w = rng.integers(-127, 128, (M, K)).astype(np.int8)
    bias = rng.integers(-5000, 5000, M).astype(np.int64)
    mult, shift = quantize_multipliers(rng.uniform(1e-3, 1e-2, M))
    ddr = np.zeros(4096, dtype=np.uint8)
    ddr[X_AT:X_AT + N * K] = x.view(np.uint8).ravel()
    tiles = [w[mt * 4:(mt + 1) * 4, kt * 16:(kt + 1) * 16] for mt in range(2) for kt in range(2)]
    ddr[W_AT:W_AT + 4 * 64] = np.concatenate([t.ravel() for t in tiles]).view(np.uint8)
    words = np.array([-2, -128, 127] + list(np.stack([bias, mult, shift], 1).ravel()), dtype="<i4")
    ddr[P_AT:P_AT + words.nbytes] = words.view(np.uint8)
    acc = x.astype(np.int64) @ w.T.astype(np.int64) + bias
    return ddr, requantize(acc, mult, shift, -2), words.size


def linear_stream(n_words: int, war: bool = True, raw_store: bool = True) -> list[Insn]:
    """Double-buffered WGT slots 0/1; `war=False` drops the c2l tokens guarding slot reuse, `raw_store=False`
    the c2s token between REQUANT and STORE."""
    s = [Insn("LOAD", mem=0, sram=0, dram=X_AT, rows=1, row_bytes=N * K),
         Insn("LOAD", mem=2, sram=0, dram=P_AT, rows=1, row_bytes=4 * n_words)]
    load = [Insn("LOAD", mem=1, sram=t % 2, dram=W_AT + 64 * t, rows=1, row_bytes=64, push_next=1,
                 pop_next=int(war and t >= 2)) for t in range(4)]
    gemm = [Insn("GEMM", pop_prev=1, push_prev=int(war and t < 2), reset=int(t % 2 == 0), wgt=t % 2, acc=t // 2,
                 acc_stride=2, inp=16 * (t % 2), inp_stride=K, count=N) for t in range(4)]
    s += [load[0], load[1], gemm[0], load[2], gemm[1], load[3], gemm[2], gemm[3]]
    s += [Insn("REQUANT", push_next=int(raw_store), dtype=0, acc=0, dst=512, dst_stride=M, rows=N, cols=M,
               param=0, chan=3),
          Insn("STORE", pop_prev=int(raw_store), push_prev=1, sram=512, dram=OUT_AT, rows=1, row_bytes=N * M),
          Insn("FINISH", pop_next=1)]
    return s


def out_of(ddr: np.ndarray) -> np.ndarray:
    return ddr[OUT_AT:OUT_AT + N * M].view(np.int8).reshape(N, M)


# ------------------------------------------------------------------ whole streams and orders

@pytest.mark.parametrize("order", ["in-order", "load-first", "store-first"])
def test_linear_stream_every_order_bytes_input(order):
    ddr, want, n_words = linear_case(1)
    stats = run_stream(CFG, encode_stream(linear_stream(n_words)), ddr, order)
    assert np.array_equal(out_of(ddr), want)
    assert stats.op_counts == {"LOAD": 6, "GEMM": 4, "REQUANT": 1, "STORE": 1, "FINISH": 1}
    assert stats.gemm_steps == 4 * N and stats.macs == 4 * N * 64
    assert stats.dma_load_bytes == N * K + 4 * n_words + 4 * 64 and stats.dma_store_bytes == N * M
    assert stats.tokens_left == dict.fromkeys(("l2c", "c2l", "c2s", "s2c"), 0)
    assert stats.to_dict()["load_bytes"] == {"act": N * K, "wgt": 256, "param": 4 * n_words}
    assert stats.order == order


def test_load_first_runs_loads_ahead():
    ddr, _, n_words = linear_case(2)
    assert run_stream(CFG, linear_stream(n_words), ddr, "load-first").peak_tokens["l2c"] == 2
    assert run_stream(CFG, linear_stream(n_words), ddr.copy(), "store-first").peak_tokens["l2c"] == 1


def test_missing_war_token_differs_under_load_first():
    ddr, want, n_words = linear_case(3)
    stream = linear_stream(n_words, war=False)
    ref = ddr.copy()
    run_stream(CFG, stream, ref)                      # stream order happens to be safe
    assert np.array_equal(out_of(ref), want)
    bad = ddr.copy()
    run_stream(CFG, stream, bad, "load-first")        # the slot is overwritten before its GEMM
    assert not np.array_equal(out_of(bad), want)
    with pytest.raises(FsimError, match="'load-first' gives a different DDR"):
        check_orders(CFG, stream, ddr.copy())


def test_missing_raw_token_differs_under_store_first():
    ddr, want, n_words = linear_case(4)
    stream = linear_stream(n_words, raw_store=False)
    bad = ddr.copy()
    run_stream(CFG, stream, bad, "store-first")
    assert not np.array_equal(out_of(bad), want)
    with pytest.raises(FsimError, match="'store-first' gives a different DDR"):
        check_orders(CFG, stream, ddr.copy())


def test_check_orders_passes_correct_stream():
    ddr, want, n_words = linear_case(5)
    check_orders(CFG, linear_stream(n_words), ddr)
    assert np.array_equal(out_of(ddr), want)


# ------------------------------------------------------------------ token rules and stream errors

FIN = Insn("FINISH")


@pytest.mark.parametrize("stream,match", [
    ([Insn("GEMM", pop_prev=1), Insn("LOAD", push_next=1), FIN], r"instruction 0 \(GEMM\): pops l2c"),
    ([Insn("LOAD", push_next=1)] * 256 + [FIN], r"instruction 255 \(LOAD\): pushes l2c to 256 > 255"),
    ([Insn("LOAD", pop_prev=1), FIN], r"instruction 0 \(LOAD\): the load module has no prev module"),
    ([Insn("STORE", push_next=1), FIN], r"store module has no next module"),
    ([FIN, Insn("LOAD")], r"instruction 0 \(FINISH\): FINISH must be the last"),
    ([Insn("LOAD")], r"instruction 0 \(LOAD\): the stream must end with FINISH"),
    ([], r"empty"),
])
def test_static_token_rules(stream, match):
    with pytest.raises(FsimError, match=match):
        check_tokens(stream)
    with pytest.raises(FsimError, match=match):
        run_stream(CFG, stream, np.zeros(64, np.uint8))


def test_deadlock_message():
    stream = [Insn("LOAD"), Insn("GEMM", pop_prev=1), FIN]
    for order in ("in-order", "load-first", "store-first"):
        with pytest.raises(FsimError, match=r"deadlock: compute waits for l2c at instruction 1.*load finished"):
            run_stream(CFG, stream, np.zeros(64, np.uint8), order, static_check=False)


def test_a_full_counter_stalls_the_pushing_module_instead_of_overflowing():
    # in stream order the counter never exceeds 1; load-first would push 300 before compute pops one, but a
    # module whose push would pass 255 waits (as the hardware does), so the counter peaks at exactly 255
    stream = [x for _ in range(300) for x in (Insn("LOAD", push_next=1), Insn("COPY", pop_prev=1))] + [FIN]
    stats = run_stream(CFG, stream, np.zeros(64, np.uint8), "load-first")
    assert stats.peak_tokens["l2c"] == 255 and stats.tokens_left["l2c"] == 0


def test_bad_run_arguments():
    with pytest.raises(FsimError, match="unknown order"):
        run_stream(CFG, [FIN], np.zeros(64, np.uint8), "random")
    with pytest.raises(FsimError, match="1-D uint8"):
        run_stream(CFG, [FIN], np.zeros(64, np.int8))
    with pytest.raises(FsimError, match="cannot decode.*opcode 0"):
        run_stream(CFG, bytes(32), np.zeros(64, np.uint8))


# ------------------------------------------------------------------ every instruction error

def words(s: State, at: int, values) -> None:
    s.param[at:at + len(values)] = values


SIZES_BAD = lambda s: s.act[3000:3004].view("<i4").__setitem__(0, 9)  # noqa: E731 - a size beyond log_size_len


@pytest.mark.parametrize("insn,setup,match", [
    (Insn("GEMM", inp=4090, count=1), None, r"inp \+ \(count - 1\) \* inp_stride \+ bk = 4106 is past ACT \(4096"),
    (Insn("GEMM", wgt=8, count=1), None, r"wgt \+ 1 = 9 is past WGT \(8 tiles\)"),
    (Insn("GEMM", acc=60, acc_stride=2, count=3), None, r"= 65 is past ACC \(64 rows\)"),
    (Insn("LOAD", mem=0, dram=8000, rows=1, row_bytes=200), None, r"is past DDR \(8192 bytes\)"),
    (Insn("LOAD", mem=3, rows=1, row_bytes=4), None, r"mem = 3 is not a memory"),
    (Insn("LOAD", mem=1, rows=1, row_bytes=16), None, r"row_bytes = 16 must be one WGT tile"),
    (Insn("LOAD", mem=1, sram=7, rows=2, row_bytes=64), None, r"sram \+ rows = 9 is past WGT"),
    (Insn("LOAD", mem=2, rows=1, row_bytes=6), None, r"row_bytes = 6 must be a multiple of 4"),
    (Insn("LOAD", mem=2, sram=1020, rows=1, row_bytes=32), None, r"is past PARAM \(1024 words\)"),
    (Insn("STORE", mem=1, rows=1, row_bytes=4), None, r"STORE reads ACT only"),
    (Insn("STORE", sram=4000, rows=1, row_bytes=100), None, r"is past ACT"),
    (Insn("TILE", rows=5, cols=16), None, r"rows x cols = 5 x 16 exceeds 4 x 16"),
    (Insn("REQUANT", rows=1, cols=1, param=1022), None, r"param \+ 3 = 1025 is past PARAM"),
    (Insn("REQUANT", dtype=1, gelu=1, rows=1, cols=1, chan=8), lambda s: words(s, 0, [0, -128, 127, 0]),
     r"gelu needs dtype int8"),
    (Insn("REQUANT", rows=1, cols=1, chan=8), lambda s: (words(s, 0, [0, -128, 127]), words(s, 8, [2 ** 31 - 1, 1 << 30, 0]),
                                                         s.acc.__setitem__((0, 0), 5)), r"out of range"),
    (Insn("ADD", a_dtype=2, rows=1, cols=1), None, r"a_dtype = 2 \(int32\) is not allowed"),
    (Insn("ADD", rows=1, cols=1), lambda s: words(s, 0, [1, 1, 0, 0, 70, 0, -128, 127]), r"shift = 70"),
    (Insn("LAYERNORM", rows=1, cols=2, chan=10), lambda s: words(s, 0, [3, 1, 0, 40, 0, -128, 127]),
     r"frac_bits = 3"),
    (Insn("SOFTMAX", rows=1, cols=2), lambda s: words(s, 0, [1 << 30, 0, 16, 4, 0, 0]) or words(s, 16, [5, 3, 1, 0]),
     r"must start with 2\^F"),
    (Insn("SOFTMAX", has_sizes=1, rows=1, cols=1, sizes=3000),
     lambda s: (words(s, 0, [1 << 30, 0, 16, 4, 8, 2]), words(s, 16, [1 << 20, 3, 1, 0]), SIZES_BAD(s)),
     r"token size 9 is outside \[1, log_size_len = 2\]"),
    (Insn("MERGE", rows=6, cols=2, r=3, heads=1, head_dim=2, protect=1), None, r"r = 3, protect = 1 invalid"),
    (Insn("MEANPOOL", src_dtype=3, rows=1, cols=1), None, r"src_dtype = 3 \(uint8\) is not allowed"),
    (Insn("LUT", rows=1, cols=1, param=1000), None, r"param \+ 64 = 1064 is past PARAM"),
    (Insn("COPY", dst=4090, rows=1, row_bytes=10), None, r"dst \+ \(1 - 1\) \* stride \+ 10 = 4100 is past ACT"),
])
def test_instruction_errors(insn, setup, match):
    s = State(CFG, np.zeros(8192, np.uint8))
    if setup:
        setup(s)
    with pytest.raises(FsimError, match=match):
        OPS[insn.op](s, insn, f"instruction 17 ({insn.op})")


def test_error_names_instruction_index_in_a_stream():
    stream = [Insn("LOAD", mem=0, rows=1, row_bytes=8), Insn("GEMM", inp=4090, count=1), FIN]
    with pytest.raises(FsimError, match=r"^instruction 1 \(GEMM\): inp \+ \(count - 1\)"):
        run_stream(CFG, encode_stream(stream), np.zeros(64, np.uint8))


# ------------------------------------------------------------------ speed

def test_fmnist_sized_stream_is_fast():
    """~36M MACs in ~3,000 instructions (pynq-z2-like array, bm = 8) must take well under 5 s."""
    cfg = OverlayConfig(bk=16, bm=8, vl=8, act_bytes=64 * 1024, wgt_tiles=64, acc_rows=512, param_words=4096,
                        bus_bytes=8, clock_hz=100_000_000, ddr_latency_cycles=40)
    rng = np.random.default_rng(0)
    ddr = rng.integers(0, 256, 1 << 16).astype(np.uint8)
    stream = [Insn("LOAD", mem=0, sram=0, dram=0, rows=1, row_bytes=8192)]
    for t in range(1000):
        stream += [Insn("LOAD", mem=1, sram=t % 64, dram=8192 + 128 * (t % 64), rows=1, row_bytes=128, push_next=1),
                   Insn("GEMM", pop_prev=1, reset=int(t % 4 == 0), wgt=t % 64, acc=0, acc_stride=1,
                        inp=16 * (t % 4), inp_stride=16, count=282)]
    stream.append(FIN)
    start = time.perf_counter()
    stats = run_stream(cfg, encode_stream(stream), ddr)
    elapsed = time.perf_counter() - start
    assert stats.macs == 1000 * 282 * 128 > 36_000_000
    assert elapsed < 2.5, f"{elapsed:.2f} s"
