"""backend/compile_checks.py and budget_hints.py: what compile refuses before the heavy work, and the
advice for each kind of memory over budget."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgevit.backend.budget_hints import reduce_hint, suggested_passes
from edgevit.backend.compile import check_budget
from edgevit.backend.compile_checks import (DEFAULT_VECTORS, check_pipeline_for_target, check_vectors,
                                            check_weights_fit, min_weight_bits, vectors_to_bundle)
from edgevit.backend.costs import Costs, Pool
from edgevit.backend.target import QuantConstraints
from edgevit.errors import InfeasibleError, UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.passes.pipeline import parse_pipeline
from edgevit.profiles import load_profile

FLOAT = SimpleNamespace(name="m", meta={"lowering": "float"})
INT8 = SimpleNamespace(name="m", meta={"lowering": "int8"})


@pytest.mark.parametrize("pipeline, bits", [("", 32), ("quant(w=8,a=8)", 8), ("tome(r=2),quant(w=4,a=8)", 4),
                                            ("quant(w=mixed,a=8,flash_kb=100)", 4), ("tome(r=2)", 32),
                                            ("prune(heads=0.5),quant(w=8,a=8)", None), ("lowrank(ratio=0.5)", None)])
def test_the_fewest_weight_bits_a_pipeline_gives(pipeline, bits) -> None:
    assert min_weight_bits(parse_pipeline(pipeline) if pipeline else []) == bits


def spec(dim: int) -> ViTSpec:
    return ViTSpec.uniform(depth=4, heads=4, head_dim=16, mlp_hidden=128, image_size=28, in_channels=1,
                           patch_size=4, embed_dim=dim, num_classes=10, name="s")


def test_weights_that_cannot_fit_are_refused_with_the_numbers() -> None:
    small = load_profile("nrf52840")  # 1 MiB flash
    check_weights_fit(spec(64), [], small, "m")  # 139k float parameters: 556 KB fit
    with pytest.raises(InfeasibleError) as e:
        check_weights_fit(spec(256), [], small, "big")
    msg = str(e.value)
    assert msg.startswith("big: ") and "parameters take at least" in msg and "float32 weights" in msg
    assert "1,048,576 B of flash on nrf52840" in msg and "quant(w=4,a=8)" in msg and "tome(r=" not in msg
    check_weights_fit(spec(256), parse_pipeline("quant(w=8,a=8)"), small, "big")  # 8-bit: fits
    check_weights_fit(spec(256), parse_pipeline("prune(heads=0.5)"), small, "big")  # no lower bound: the budget decides
    assert load_profile("zcu104").weight_capacity() is None
    assert load_profile("host").weight_capacity() == (8 << 30, "RAM")


def test_vectors_explicit_or_default() -> None:
    test = [0] * 8
    assert vectors_to_bundle(None, test, "d") == 8 and vectors_to_bundle(None, [0] * 500, "d") == DEFAULT_VECTORS
    assert vectors_to_bundle(8, test, "d") == 8
    with pytest.raises(UserInputError, match=r"--vectors 9: the test split of d has only 8 images; use --vectors 8"):
        vectors_to_bundle(9, test, "d")
    for bad in (0, -1, 10_001, 2.5):
        with pytest.raises(UserInputError, match="--vectors"):
            check_vectors(bad)
    assert check_vectors(None) is None and check_vectors(10_000) == 10_000


def test_pass_options_the_target_kernels_cannot_run() -> None:
    target = SimpleNamespace(kind="toy", quant_constraints=lambda p: QuantConstraints(weight_bits=(8,),
                                                                                       residual_int16=False))
    profile = SimpleNamespace(name="dev")
    check_pipeline_for_target(parse_pipeline("quant(w=8,a=8)"), target, profile)
    with pytest.raises(UserInputError, match=r"quant\(w=4\): the toy target runs 8-bit weights on dev; use w=8"):
        check_pipeline_for_target(parse_pipeline("quant(w=4,a=8)"), target, profile)
    with pytest.raises(UserInputError, match=r"residual=int16"):
        check_pipeline_for_target(parse_pipeline("quant(w=8,a=8,residual=int16)"), target, profile)


def test_weights_and_activations_get_their_own_passes() -> None:
    weights = " ".join(suggested_passes("weights", FLOAT))
    assert "quant(w=4,a=8)" in weights and "lowrank(" in weights and "prune(" in weights and "tome" not in weights
    acts = " ".join(suggested_passes("activations", INT8))
    assert "tome(r=" in acts and "quant(" not in acts  # already quantized
    assert "does not reduce weights" in reduce_hint("weights", FLOAT)


def mcu_costs(sram_used: int, flash_used: int) -> Costs:
    return Costs(pools=(Pool("sram", sram_used, 10_000, f"arena {sram_used - 100} B + stack 100 B"),
                        Pool("flash", flash_used, 1_000, f"weights {flash_used - 50:,} B + code 50 B")),
                 macs=0, activation_bytes=sram_used - 100, figures={"weight_bytes": flash_used - 50})


def test_the_mcu_hint_for_flash_is_about_weights_and_for_sram_about_activations() -> None:
    from edgevit.targets.mcu.target import McuTarget

    flash = McuTarget().over_budget_hint(mcu_costs(5_000, 2_050), FLOAT)
    assert "The weights take 2,000 B of the 1,000 B flash" in flash and "quant(w=4,a=8)" in flash
    assert "tome(r=" not in flash and "arena buffers" not in flash
    sram = McuTarget().over_budget_hint(mcu_costs(20_000, 500), FLOAT)
    assert "SRAM: reduce the activations" in sram and "tome(r=" in sram and "weights take" not in sram
    with pytest.raises(InfeasibleError, match=r"flash: weights 2,000 B \+ code 50 B = 2,050 B > 1,000 B\. The weights "
                                              r"take .* Or let `edgevit search --profile dev`") as e:
        check_budget(mcu_costs(5_000, 2_050), FLOAT, SimpleNamespace(name="dev"), None, flash)
    assert e.value.exit_code == 3


def test_without_a_target_hint_every_kind_of_pass_is_suggested() -> None:
    with pytest.raises(InfeasibleError, match=r"Compress the model: reduce the model with --passes, e\.g\. "
                                              r"quant\(w=8,a=8\).*tome\(r=\.\.\.\)"):
        check_budget(mcu_costs(20_000, 500), FLOAT, SimpleNamespace(name="dev"), None)


def test_the_cpu_target_checks_a_profile_before_any_work(tmp_path) -> None:
    from edgevit.profiles import profile_dir
    from edgevit.targets.cpu.target import CpuTarget

    CpuTarget().check_profile(load_profile("rpi4"))
    text = (profile_dir() / "rpi4.yaml").read_text().replace("name: rpi4", "name: a15").replace("cortex-a72", "cortex-a15")
    path = tmp_path / "a15.yaml"
    path.write_text(text.replace("isa: [armv8-a, neon, fp, crc]", "isa: [armv7-a, neon]"))
    with pytest.raises(UserInputError, match="cortex-a15"):
        CpuTarget().check_profile(load_profile(path))
