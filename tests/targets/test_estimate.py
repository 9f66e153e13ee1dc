"""McuTarget: estimate() is the arena plan and the firmware's memory figures (targets/mcu/memory.py)
against the profile's budgets; build() hands the same plan to the emitter."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from edgevit.errors import UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.profiles.profile import load_profile, profile_dir
from edgevit.backend.costs import Costs
from edgevit.backend.target import get_target
from edgevit.targets.mcu.memory import ARENA, STACK_BYTES, memory_figures, plan_memory, weight_bytes
from edgevit.targets.mcu.target import McuTarget
from edgevit.backend.planner import MemoryPlan, plan_program
from tests.backend.test_planner import make_program


@pytest.fixture(scope="module")
def program():
    spec = ViTSpec.uniform(depth=2, heads=2, head_dim=8, mlp_hidden=64, image_size=8, in_channels=1,
                           patch_size=2, embed_dim=16, num_classes=4, name="est")
    return make_program(spec, 3)


def small_profile(tmp_path, sram: str, flash: str):
    """stm32f746-disco with other SRAM / flash sizes (regions dropped)."""
    text = (profile_dir() / "stm32f746-disco.yaml").read_text()
    text = re.sub(r"  regions:\n(    - .*\n)+", "", text)
    text = re.sub(r"sram_bytes: \S+", f"sram_bytes: {sram}", text)
    text = re.sub(r"flash_bytes: \S+", f"flash_bytes: {flash}", text)
    path = tmp_path / "small.yaml"
    path.write_text(text.replace("name: stm32f746-disco", "name: small"))
    return load_profile(path)


def test_estimate_is_the_plan(program) -> None:
    profile = load_profile("stm32f746-disco")
    target = get_target(profile)
    assert isinstance(target, McuTarget)
    costs = target.estimate(program, profile)
    plan = plan_program(program, ARENA)
    assert isinstance(costs, Costs) and isinstance(costs.plan, MemoryPlan)
    assert costs.plan == plan == plan_memory(program)
    fig = costs.figures
    assert fig == memory_figures(program, plan, profile) and costs.activation_bytes == plan.arena_bytes
    assert (fig["arena_bytes"], fig["lower_bound_bytes"], fig["naive_bytes"]) == (
        plan.arena_bytes, plan.lower_bound_bytes, plan.naive_bytes)
    assert fig["stack_bytes"] == STACK_BYTES
    assert fig["weight_bytes"] == weight_bytes(program) == sum(-(-v.nbytes // 8) * 8 for v in program.consts.values())
    assert fig["code_bytes"] > 0 and fig["flash_bytes"] == fig["weight_bytes"] + fig["code_bytes"]
    sram, flash = costs.pool("sram"), costs.pool("flash")
    assert (sram.used, sram.budget) == (plan.arena_bytes + STACK_BYTES, profile.memory.sram_bytes)
    assert (flash.used, flash.budget) == (fig["flash_bytes"], profile.memory.flash_bytes)
    assert costs.memory is sram and costs.macs == program.macs() > 0
    assert costs.fits and costs.to_dict()["fits"] is True
    assert target.plan(program, "stm32f746-disco") == plan  # a profile name works too


def test_estimate_against_small_budgets(program, tmp_path) -> None:
    fig = McuTarget().estimate(program, "stm32f746-disco").figures
    need = fig["arena_bytes"] + fig["stack_bytes"]
    tight = small_profile(tmp_path, str(need - 1), "1MiB")
    costs = McuTarget().estimate(program, tight)
    assert [p.name for p in costs.over_budget] == ["sram"] and not costs.fits
    assert f"= {need:,} B > {need - 1:,} B" in costs.pool("sram").describe()
    exact = small_profile(tmp_path, str(need), str(fig["flash_bytes"] - 1))
    costs = McuTarget().estimate(program, exact)
    assert [p.name for p in costs.over_budget] == ["flash"]


def test_non_mcu_profile_is_refused(program) -> None:
    with pytest.raises(UserInputError, match="kind: mcu"):
        McuTarget().estimate(program, load_profile("rpi4"))


def test_build_hands_the_plan_to_the_emitter(program, monkeypatch) -> None:
    seen = {}

    def artifact_files(program, profile, plan, **options):
        seen.update(program=program, profile=profile, plan=plan, options=options)
        return {"report.md": "r"}

    fake = types.ModuleType("edgevit.targets.mcu.emit")
    fake.artifact_files = artifact_files
    monkeypatch.setitem(sys.modules, "edgevit.targets.mcu.emit", fake)
    target = McuTarget()
    costs = target.estimate(program, "stm32f746-disco")
    got = target.build(program, "stm32f746-disco", costs, "VECTORS", schedule="reference")
    assert got == {"report.md": "r"}
    assert seen["plan"] is costs.plan and seen["profile"].name == "stm32f746-disco"
    assert seen["options"] == {"schedule": "reference", "vectors": "VECTORS"}
    with pytest.raises(UserInputError, match="--schedule 'slow'"):
        target.build(program, "stm32f746-disco", costs, None, schedule="slow")


def test_code_estimate_shares_functions_between_identical_blocks() -> None:
    from edgevit.targets.mcu.codesize import estimate_code_bytes, function_bytes, function_key

    def prog(depth):
        spec = ViTSpec.uniform(depth=depth, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1,
                               patch_size=2, embed_dim=8, num_classes=3, name="c")
        return make_program(spec, 0)

    two, three = prog(2), prog(3)
    plan2, plan3 = plan_memory(two), plan_memory(three)
    code2, code3 = (memory_figures(p, plan)["code_bytes"] for p, plan in ((two, plan2), (three, plan3)))

    def keys(p):
        return {function_key(k, [p.tensors[t] for t in k.inputs], [p.tensors[t] for t in k.outputs], None)
                for k in p.kernels}

    assert keys(two) == keys(three)
    extra = code3 - code2  # call sites of one more block, no new function
    fc1 = next(k for k in three.kernels if k.op == "linear")
    assert 0 < extra < function_bytes(fc1, [three.tensors[t] for t in fc1.inputs],
                                      [three.tensors[t] for t in fc1.outputs])
    assert estimate_code_bytes(two, plan2.steps) == code2


def test_gemm_regions_and_k_unroll_follow_the_fast_schedule() -> None:
    from edgevit.targets.mcu.codesize import gemm_regions, k_unroll

    assert gemm_regions(50, 192) == ["main"] and gemm_regions(17, 72) == ["main", "bottom"]
    assert gemm_regions(1, 10) == ["bottom"] and gemm_regions(1, 5) == ["bottom", "right"]
    assert gemm_regions(17, 39) == ["main", "bottom", "right"] and gemm_regions(1, 1) == ["right"]
    assert [k_unroll(k) for k in (1, 3, 4, 8, 18, 13)] == [1, 3, 4, 4, 2, 1]


def test_add_pos_shares_add_function_and_runtime_groups_follow_the_ops(program) -> None:
    from edgevit.targets.mcu.codesize import RUNTIME_BYTES, code_summary, function_key, runtime_bytes

    def key(k):
        return function_key(k, [program.tensors[t] for t in k.inputs], [program.tensors[t] for t in k.outputs], None)

    pos = next(k for k in program.kernels if k.op == "add_pos")
    adds = [k for k in program.kernels if k.op == "add" and program.tensors[k.outputs[0]].shape ==
            program.tensors[pos.outputs[0]].shape and program.tensors[k.outputs[0]].dtype ==
            program.tensors[pos.outputs[0]].dtype]
    assert adds and key(pos) == key(adds[0])
    summary = code_summary(program, plan_memory(program).steps)
    assert "attention/int" in summary["tags"] and "attention/float32" not in summary["tags"]
    assert runtime_bytes(summary["tags"]) == sum(b for b, tags in RUNTIME_BYTES.values() if "attention/int" in tags)
    assert runtime_bytes({"attention/float32", "layernorm/float32"}) > runtime_bytes({"attention/int"}) > 0


def test_estimate_needs_no_code_generation(tmp_path) -> None:
    """Planning (and so the code estimate) never imports TVM; same Program, same bytes."""
    import subprocess

    script = ("import sys\n"
              "from tests.backend.test_planner import make_program\n"
              "from edgevit.model.spec import ViTSpec\n"
              "from edgevit.targets.mcu.memory import memory_figures, plan_memory\n"
              "spec = ViTSpec.uniform(depth=1, heads=2, head_dim=4, mlp_hidden=16, image_size=8, in_channels=1,"
              " patch_size=2, embed_dim=8, num_classes=3)\n"
              "p = make_program(spec, 1)\n"
              "a, b = (memory_figures(p, plan_memory(p)) for _ in range(2))\n"
              "assert a == b and a['code_bytes'] > 0\n"
              "assert not any(m == 'tvm' or m.startswith('tvm.') for m in sys.modules), 'TVM imported'\n")
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_supports_names_the_kernels_without_code(program) -> None:
    import dataclasses

    from edgevit.lower.program import Kernel

    target, profile = McuTarget(), load_profile("stm32f746-disco")
    assert target.supports(program, profile) == []
    k0 = program.kernels[0]
    odd = dataclasses.replace(program, kernels=[Kernel("no_such_op", k0.name, k0.inputs, k0.outputs, k0.consts,
                                                       k0.attrs)] + program.kernels[1:])
    reasons = target.supports(odd, profile)
    assert len(reasons) == 1 and f"kernel {k0.name!r}" in reasons[0] and "no_such_op" in reasons[0]
