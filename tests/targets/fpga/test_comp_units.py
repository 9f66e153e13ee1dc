"""Pieces of the FPGA compiler on their own: dependency tokens of the stream builder, the ACT layout,
the weight image, PARAM word packing, the DDR image and the reasons `unsupported` gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgevit.model.spec import ViTSpec
from edgevit.targets.fpga.compiler import FpgaCompileError, compile_program, ddr_image, read_output, unsupported
from edgevit.targets.fpga.compiler.common import table_words, words64
from edgevit.targets.fpga.compiler.compile import _act_tensors, _scratch
from edgevit.targets.fpga.compiler.layout import plan_act
from edgevit.targets.fpga.compiler.stream import StreamBuilder
from edgevit.targets.fpga.compiler.weights import WeightImage
from edgevit.targets.fpga.fsim import check_tokens
from tests.targets.fpga.comp_helpers import overlay

TINY_SPEC = ViTSpec.uniform(depth=2, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1, patch_size=2,
                            embed_dim=8, num_classes=3, name="t")


@pytest.fixture(scope="module")
def tiny_int8():
    """An int8 Program of a 2-block random ViT (min/max quantization: fast)."""
    from edgevit.lower import lower_int8
    from edgevit.model.vit import build_model
    from tests.lower.int8_helpers import minmax_qmodel, randomise

    model = randomise(build_model(TINY_SPEC, seed=0), 0)
    images = np.random.default_rng(0).normal(0, 1, (8, 1, 8, 8)).astype(np.float32)
    return lower_int8(minmax_qmodel(model, images))


def flags(sb: StreamBuilder, i: int) -> dict[str, int]:
    return {k: v for k, v in sb.entries[i].fields.items() if k.startswith(("pop", "push")) and v}


def copy(sb: StreamBuilder, src: int, dst: int) -> int:
    return sb.add("COPY", reads=[("act", src, src + 16)], writes=[("act", dst, dst + 16)], src=src, dst=dst,
                  rows=1, row_bytes=16)


def test_compute_waits_for_exactly_the_last_conflicting_load() -> None:
    sb = StreamBuilder(overlay("tiny"))
    a = sb.load_act(0, 0, 1, 16, 16, 16)
    b = sb.load_act(16, 16, 1, 16, 16, 16)
    c = copy(sb, 0, 64)            # reads what load a wrote
    assert flags(sb, a) == {"push_next": 1} and flags(sb, b) == {} and flags(sb, c) == {"pop_prev": 1}
    d = copy(sb, 128, 160)         # touches nothing loaded: no token
    e = copy(sb, 16, 96)           # load b
    f = copy(sb, 0, 192)           # load a again: already covered by c's wait
    assert flags(sb, d) == {} and flags(sb, b) == {"push_next": 1} and flags(sb, e) == {"pop_prev": 1}
    assert flags(sb, f) == {}


def test_a_load_over_a_slot_still_read_waits_for_that_gemm() -> None:
    cfg = overlay("tiny")
    sb = StreamBuilder(cfg)
    slots = [sb.load_tile(64 * i) for i in range(cfg.wgt_tiles)]
    gemms = [sb.add("GEMM", reads=[("wgt", s, s + 1), ("act", 0, 16)], wgt=s, count=1) for s in slots]
    reload = sb.load_tile(0)  # the ring wraps to slot 0: WAR on the first GEMM only
    assert reload == slots[0]
    assert flags(sb, gemms[0]) == {"pop_prev": 1, "push_prev": 1}
    assert all("push_prev" not in flags(sb, g) for g in gemms[1:])
    assert flags(sb, len(sb.entries) - 1) == {"pop_next": 1}


def test_store_after_load_waits_through_the_compute_that_waited() -> None:
    sb = StreamBuilder(overlay("tiny"))
    sb.load_act(0, 0, 1, 32, 32, 32)
    c = copy(sb, 0, 16)                       # waits for the load, overwrites half of it
    sb.move_bytes("STORE", 0, 0, 32, "output")  # reads both halves: the loaded one orders via c
    s = len(sb.entries) - 1
    assert flags(sb, c) == {"pop_prev": 1, "push_next": 1} and flags(sb, s) == {"pop_prev": 1}
    insns = sb.finish({"weights": 1024, "output": 4096, "input": 2048})
    assert insns[-1].op == "FINISH" and insns[-1].pop_next == 1 and insns[s].push_prev == 1
    assert insns[0].dram == 1024 and insns[s].dram == 4096  # relocated by their regions
    check_tokens(insns)


def test_store_after_an_unordered_load_is_refused() -> None:
    sb = StreamBuilder(overlay("tiny"))
    sb.load_act(0, 0, 1, 16, 16, 16)
    with pytest.raises(FpgaCompileError, match="no compute instruction orders them"):
        sb.move_bytes("STORE", 0, 0, 16, "output")


def test_param_ring_wraps_and_accesses_outside_a_scratchpad_are_refused() -> None:
    cfg = overlay("tiny")
    sb = StreamBuilder(cfg)
    assert sb.reserve_param(cfg.param_words - 10) == 0
    assert sb.reserve_param(20) == 0  # does not fit after the first block: wraps
    with pytest.raises(FpgaCompileError, match="exceeds"):
        sb.reserve_param(cfg.param_words + 1)
    with pytest.raises(FpgaCompileError, match="outside"):
        copy(sb, cfg.act_bytes - 8, 0)


def test_acc_allocator_reuses_freed_rows_and_refuses_overflow() -> None:
    sb = StreamBuilder(overlay("tiny"))
    a, b = sb.acc.alloc(40, "x"), sb.acc.alloc(20, "y")
    assert (a, b) == (0, 40)
    with pytest.raises(FpgaCompileError, match="ACC rows"):
        sb.acc.alloc(10, "z")
    sb.acc.free(a)
    assert sb.acc.alloc(30, "w") == 0


def test_weight_image_deduplicates_and_aligns() -> None:
    img = WeightImage()
    a = img.add(np.arange(5, dtype=np.int8))
    b = img.add(np.arange(3, dtype=np.int8))
    assert (a, b) == (0, 16) and img.add(np.arange(5, dtype=np.int8)) == 0
    assert img.tobytes()[16:19] == bytes([0, 1, 2]) and img.size == 19


def test_param_words_pack_int64_and_tables_little_endian() -> None:
    for v in (0, -1, 1 << 40, -(1 << 59) + 3, 123456789012):
        lo, hi = words64(v)
        assert ((hi << 32) | (lo & 0xFFFFFFFF)) == v
    table = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
    w = table_words(table)
    assert len(w) == 64 and np.array_equal(np.asarray(w, "<i4").view(np.int8), table)
    assert w[0] & 0xFF == 0x80  # entry 0 (-128) in the low byte


def test_layout_never_overlaps_live_buffers(tiny_int8) -> None:
    cfg = overlay("pynq-z2")
    layout = plan_act(tiny_int8, cfg, _act_tensors(tiny_int8), _scratch(tiny_int8, cfg))
    first = {t: i for i, k in enumerate(tiny_int8.kernels) for t in k.outputs}
    last = tiny_int8.last_uses()
    spans = []
    for t, addr in layout.addr.items():
        info = tiny_int8.tensors[t]
        assert addr % 16 == 0
        spans.append((t, addr, addr + info.nbytes + cfg.bk, first.get(t, -1), last.get(t, first.get(t, -1))))
    aliases = {(k.inputs[0], k.outputs[0]) for k in tiny_int8.kernels if k.op == "reshape"}
    for i, (t, a0, a1, f, l) in enumerate(spans):
        for u, b0, b1, g, m in spans[i + 1:]:
            if (t, u) in aliases or (u, t) in aliases:
                assert a0 == b0
            elif f <= m and g <= l:
                assert a1 <= b0 or b1 <= a0, (t, u)
    assert 0 < layout.peak <= cfg.act_bytes


def test_unsupported_names_what_to_do(tiny_int8) -> None:
    cfg = overlay("pynq-z2")
    assert unsupported(tiny_int8, cfg) == []
    small_act = dataclasses.replace(cfg, act_bytes=512)
    (reason,) = unsupported(tiny_int8, small_act)
    assert "ACT" in reason and "spilling" in reason
    with pytest.raises(FpgaCompileError, match="ACT"):
        compile_program(tiny_int8, small_act)
    reasons = unsupported(tiny_int8, dataclasses.replace(cfg, param_words=64))
    assert any("attention" in r and "PARAM" in r for r in reasons)


def test_float_programs_are_refused() -> None:
    from edgevit.lower import lower
    from edgevit.model.vit import build_model

    (reason,) = unsupported(lower(build_model(TINY_SPEC, seed=0)), overlay("pynq-z2"))
    assert "quant" in reason and "float32" in reason


def test_ddr_image_regions_and_output_round_trip(tiny_int8) -> None:
    cfg = overlay("pynq-z2")
    compiled = compile_program(tiny_int8, cfg)
    mm = compiled.memory_map
    assert mm["overlay"] == cfg.to_dict() and set(mm["regions"]) == {"instructions", "weights", "input", "output"}
    assert all(r["offset"] % 64 == 0 for r in mm["regions"].values())
    x = np.random.default_rng(1).integers(-128, 128, (1, 8, 8)).astype(np.int8)
    ddr = ddr_image(compiled, x)
    inp, out = mm["regions"]["input"], mm["regions"]["output"]
    assert ddr[inp["offset"]:inp["offset"] + 64].view(np.int8).tolist() == x.ravel().tolist()
    assert not ddr[out["offset"]:out["offset"] + out["bytes"]].any()
    ddr[out["offset"]:out["offset"] + 3] = [1, 2, 255]
    assert read_output(compiled, ddr).tolist() == [1, 2, -1]
    with pytest.raises(FpgaCompileError, match="expected int8"):
        ddr_image(compiled, x.astype(np.int16))
    check_tokens(compiled.insns)
