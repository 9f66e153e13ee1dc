"""Dependency tokens (rtl/tokens.py): the counters against a Python model under random pops and pushes
(pops wait, no underflow, saturation at 255), and fetch + DepGates + counters running random
token-correct streams: no pop is granted before the push it consumes, every instruction runs in order."""

from __future__ import annotations

import random

from amaranth.hdl import Module
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.targets.fpga.isa import MODULES, Insn, decode, encode_stream
from edgevit.targets.fpga.rtl.fetch import Fetch
from edgevit.targets.fpga.rtl.tokens import COUNTER_MAX, COUNTERS, POPS, PUSHES, DepGate, TokenCounters
from tests.targets.fpga.hwctl_axi_model import AxiDdr
from tests.targets.fpga.test_hwctl_fetch import _cfg

DIRS = ("prev", "next")


def _links(mod: str, table: dict) -> dict[str, str]:
    return {d: table[(mod, d)] for d in DIRS if (mod, d) in table}


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2 ** 32), st.floats(0.1, 0.9))
def test_counters_match_model(seed, push_prob):
    rng = random.Random(seed)
    dut = TokenCounters()
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        model = {c: 0 for c in COUNTERS}
        overflow = False
        for cycle in range(150):
            if cycle == 100:                     # saturate c2s: 255 pushes with no pops, then one more
                for mod in MODULES:
                    ctx.set(getattr(dut, mod).pop_req, 0)
                ctx.set(dut.compute.push_prev, 0)
                ctx.set(dut.compute.push_next, 1)
                ctx.set(dut.compute.push_en, 1)
                for _ in range(COUNTER_MAX - model["c2s"]):
                    await ctx.tick()
                assert ctx.get(dut.count["c2s"]) == COUNTER_MAX and not ctx.get(dut.overflow)
                await ctx.tick()                     # the 256th token: saturates, flags overflow
                ctx.set(dut.compute.push_en, 0)
                model["c2s"], overflow = COUNTER_MAX, True
                assert ctx.get(dut.count["c2s"]) == COUNTER_MAX and ctx.get(dut.overflow)
            dec, inc = {c: 0 for c in COUNTERS}, {c: 0 for c in COUNTERS}
            for mod in MODULES:
                port = getattr(dut, mod)
                req, pushing = rng.random() < 0.6, rng.random() < push_prob
                flags = {d: rng.getrandbits(1) for d in DIRS}
                pflags = {d: rng.getrandbits(1) for d in DIRS}
                for d in DIRS:
                    ctx.set(getattr(port, f"pop_{d}"), flags[d])
                    ctx.set(getattr(port, f"push_{d}"), pflags[d])
                ctx.set(port.pop_req, req)
                ctx.set(port.push_en, pushing)
                pops = {d: c for d, c in _links(mod, POPS).items() if flags[d]}
                ok = req and all(model[c] > 0 for c in pops.values())
                assert ctx.get(port.pop_ok) == ok, (cycle, mod)
                for d, c in _links(mod, POPS).items():
                    assert ctx.get(getattr(port, f"wait_{d}")) == (req and flags[d] and model[c] == 0)
                for c in pops.values():
                    dec[c] += ok
                for d, c in _links(mod, PUSHES).items():
                    inc[c] += pushing and pflags[d]
            await ctx.tick()
            for c in COUNTERS:
                nxt = model[c] + inc[c] - dec[c]
                if nxt > COUNTER_MAX:
                    overflow, nxt = True, COUNTER_MAX
                model[c] = nxt
                assert ctx.get(dut.count[c]) == nxt >= 0, (cycle, c)
            assert ctx.get(dut.overflow) == overflow
            for mod in MODULES:
                ctx.set(getattr(dut, mod).push_en, 0)
        assert overflow
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert all(ctx.get(dut.count[c]) == 0 for c in COUNTERS) and not ctx.get(dut.overflow)
    sim.add_testbench(bench)
    sim.run()


def token_stream(rng: random.Random, n: int) -> list[Insn]:
    """A random stream keeping the ISA's token rules: each pop is preceded by its push in stream order."""
    avail = {c: 0 for c in COUNTERS}
    ops = {"load": "LOAD", "compute": "GEMM", "store": "STORE"}
    out = []
    for _ in range(n):
        mod = rng.choice(MODULES)
        flags = {}
        for d, c in _links(mod, POPS).items():
            if avail[c] and rng.random() < 0.7:
                flags[f"pop_{d}"], avail[c] = 1, avail[c] - 1
        for d, c in _links(mod, PUSHES).items():
            if rng.random() < 0.5:
                flags[f"push_{d}"], avail[c] = 1, avail[c] + 1
        out.append(Insn(ops[mod], **flags))
    out.append(Insn("FINISH", pop_next=1) if avail["s2c"] else Insn("FINISH"))
    return out


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2 ** 32), st.integers(4, 30))
def test_fetch_gates_and_tokens_run_streams_in_token_order(seed, n):
    rng = random.Random(seed)
    insns = token_stream(rng, n)
    blob = encode_stream(insns)
    cfg = _cfg(16)
    m = Module()
    m.submodules.fetch = fetch = Fetch(cfg, queue_depth=2, burst_insns=2)
    m.submodules.tokens = tokens = TokenCounters()
    gates = {}
    for mod in MODULES:
        m.submodules[mod] = gate = gates[mod] = DepGate(mod)
        m.d.comb += [gate.q_rdy.eq(getattr(fetch, f"{mod}_rdy")), gate.q_data.eq(getattr(fetch, f"{mod}_data")),
                     getattr(fetch, f"{mod}_en").eq(gate.q_en)]
        for sig in ("pop_req", "pop_prev", "pop_next", "push_en", "push_prev", "push_next"):
            m.d.comb += getattr(getattr(tokens, mod), sig).eq(getattr(gate.tokens, sig))
        for sig in ("pop_ok", "wait_prev", "wait_next"):
            m.d.comb += getattr(gate.tokens, sig).eq(getattr(getattr(tokens, mod), sig))
    mem = bytearray(len(blob) + 64)
    mem[:len(blob)] = blob
    axi = AxiDdr(mem, 0x2000, 16, seed=seed)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_process(axi.read_process(fetch.axi))
    ran = {mod: [] for mod in MODULES}

    def unit(mod):
        gate = gates[mod]

        async def process(ctx):                    # an execution unit taking 1..6 cycles per instruction
            left = None
            async for _, _, start, insn in ctx.tick().sample(gate.start, gate.insn):
                ctx.set(gate.done, 0)
                if start:
                    ran[mod].append(int(insn).to_bytes(32, "little"))
                    left = rng.randint(0, 5)
                elif left is not None:
                    if left == 0:
                        ctx.set(gate.done, 1)
                        left = None
                    else:
                        left -= 1
        return process
    for mod in MODULES:
        sim.add_process(unit(mod))
    problems = []

    async def monitor(ctx):                        # no unit starts before the pushes its pops consume are done
        pushed, popped = {c: 0 for c in COUNTERS}, {c: 0 for c in COUNTERS}
        async for _, _, *vals in ctx.tick().sample(*[getattr(gates[mod], s) for mod in MODULES
                                                     for s in ("start", "done", "insn")]):
            events = {mod: vals[3 * i:3 * i + 3] for i, mod in enumerate(MODULES)}
            for mod, (start, done, insn) in events.items():
                word = decode(int(insn).to_bytes(32, "little")) if start or done else None
                for d, c in _links(mod, POPS).items():
                    if start and getattr(word, f"pop_{d}"):
                        popped[c] += 1
                        if popped[c] > pushed[c]:
                            problems.append(f"{mod} started popping {c} #{popped[c]} with {pushed[c]} pushed")
            for mod, (start, done, insn) in events.items():
                if done:
                    word = decode(int(insn).to_bytes(32, "little"))
                    for d, c in _links(mod, PUSHES).items():
                        pushed[c] += getattr(word, f"push_{d}")
    sim.add_process(monitor)

    async def bench(ctx):
        ctx.set(fetch.insn_base, 0x2000)
        ctx.set(fetch.insn_count, len(insns))
        ctx.set(fetch.start, 1)
        await ctx.tick()
        ctx.set(fetch.start, 0)
        for _ in range(40 * len(insns) + 200):
            await ctx.tick()
            if sum(map(len, ran.values())) == len(insns) and not any(ctx.get(g.busy) for g in gates.values()):
                break
        assert not ctx.get(fetch.error) and not ctx.get(tokens.overflow)
    sim.add_testbench(bench)
    sim.run()
    assert not problems, problems[:3]
    assert not axi.errors
    for mod in MODULES:
        assert ran[mod] == [encode_stream([i]) for i in insns if i.module == mod], mod
