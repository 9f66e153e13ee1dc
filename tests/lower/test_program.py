"""Program IR: builder, validation (use-before-def, double definition, op validators), JSON, fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from edgevit.lower.from_model import lower_float
from edgevit.lower.ops import OPS, get_op
from edgevit.lower.program import Kernel, Program, ProgramBuilder, ProgramError, TensorInfo, const_sha256
from edgevit.model.counts import count_macs
from edgevit.model.vit import build_model

F32 = np.float32


def tiny_program() -> Program:
    """A hand-built program (no torch): x [4, 3] -> linear(+gelu) -> layernorm -> add -> y [4, 2]."""
    b = ProgramBuilder("tiny", meta={"note": "hand-built"})
    x = b.add_input("x", (4, 3))
    w = b.add_const("fc.weight", np.arange(6, dtype=F32).reshape(2, 3) / 10)
    bias = b.add_const("fc.bias", np.array([0.5, -0.5], dtype=F32))
    g = b.add_const("ln.gamma", np.ones(2, dtype=F32))
    be = b.add_const("ln.beta", np.zeros(2, dtype=F32))
    (h,) = b.add_kernel("linear", [x], {"activation": "gelu"}, {"weight": w, "bias": bias}, name="fc")
    (n,) = b.add_kernel("layernorm", [h], {"eps": 1e-6}, {"gamma": g, "beta": be}, name="ln", outputs=["normed"])
    (y,) = b.add_kernel("add", [h, n], name="res", outputs=["y"])
    b.add_output(y)
    return b.build()


@pytest.fixture(scope="module")
def vit_program(tiny_spec_module) -> Program:
    return lower_float(build_model(tiny_spec_module, seed=0))


@pytest.fixture(scope="module")
def tiny_spec_module():
    from edgevit.model.spec import BlockSpec, ViTSpec

    blocks = (BlockSpec(heads=2, head_dim=4, mlp_hidden=16, ranks={"fc1": 3}),) * 2
    return ViTSpec(image_size=8, in_channels=1, patch_size=2, embed_dim=8, num_classes=3, blocks=blocks, name="t")


# ---- builder and structure ---------------------------------------------------------------
def test_builder_program_shapes_and_names(vit_program: Program, tiny_spec_module) -> None:
    p = vit_program
    assert p.inputs == ["image"] and p.outputs == ["logits"]
    assert p.tensors["image"] == TensorInfo("image", (1, 8, 8), "float32")
    assert p.tensors["logits"].shape == (3,)
    assert p.tensors["t1.ln1"].shape == (17, 8)
    assert "blocks.1.attn.qkv.weight" in p.consts
    assert p.consts["blocks.0.mlp.fc1.a.weight"].shape == (3, 8)  # low-rank: a has no bias
    assert "blocks.0.mlp.fc1.a.bias" not in p.consts
    assert p.macs() == count_macs(tiny_spec_module)
    assert "spec" in p.meta and p.meta["preprocess"] == {"mean": [0.0], "std": [1.0]}
    assert not p.consts["pos_embed"].flags.writeable


def test_summary_names_kernels(vit_program: Program) -> None:
    s = vit_program.summary()
    assert "blocks.1.attn.core" in s and "attention" in s and "logits [3]" in s and "activation=gelu" in s
    assert f"{vit_program.macs():,}" in s


def test_builder_rejects_use_before_def_and_redefinition() -> None:
    b = ProgramBuilder("p")
    b.add_input("x", (2, 2))
    with pytest.raises(ProgramError, match=r"kernel 'k1' \(gelu\): input 'nope' is used before it is defined"):
        b.add_kernel("gelu", ["nope"], name="k1")
    b.add_kernel("gelu", ["x"], name="k2", outputs=["y"])
    with pytest.raises(ProgramError, match=r"kernel 'k3' \(gelu\): output 'y' is already defined"):
        b.add_kernel("gelu", ["x"], name="k3", outputs=["y"])
    with pytest.raises(ProgramError, match=r"kernel 'k2' \(gelu\): kernel name used twice"):
        b.add_kernel("gelu", ["x"], name="k2", outputs=["z"])
    with pytest.raises(ProgramError, match="constant 'x'"):
        b.add_const("x", np.zeros(2, F32))
    with pytest.raises(ProgramError, match="dtype float64"):
        b.add_const("c64", np.zeros(2))


def test_unknown_ops() -> None:
    b = ProgramBuilder("p")
    b.add_input("x", (2, 2))
    with pytest.raises(ProgramError, match="unknown op 'conv'"):
        b.add_kernel("conv", ["x"], name="c")
    assert "token_merge" in OPS and "conv" not in OPS


# ---- Program.validate ----------------------------------------------------------------------
def test_validate_accepts_built_programs(vit_program: Program) -> None:
    vit_program.validate()
    tiny_program().validate()


def test_validate_catches_use_before_def() -> None:
    p = tiny_program()
    p.kernels = [p.kernels[1], p.kernels[0], p.kernels[2]]
    with pytest.raises(ProgramError, match=r"kernel 'ln' \(layernorm\): input 'fc' is used before it is defined"):
        p.validate()


def test_validate_catches_double_definition() -> None:
    p = tiny_program()
    p.kernels.append(replace(p.kernels[2], name="res2"))
    with pytest.raises(ProgramError, match=r"kernel 'res2' \(add\): output 'y' is already defined"):
        p.validate()
    p = tiny_program()
    p.kernels[0] = replace(p.kernels[0], outputs=("x",))
    with pytest.raises(ProgramError, match=r"kernel 'fc' \(linear\): output 'x' is already defined"):
        p.validate()


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.tensors.update(ghost=TensorInfo("ghost", (1,))), r"\['ghost'\] declared but never produced"),
    (lambda p: p.consts.update(spare=np.zeros(1, F32)), r"constant\(s\) \['spare'\] are not used"),
    (lambda p: p.consts.pop("fc.bias"), r"kernel 'fc' \(linear\): constant 'fc.bias' \(role 'bias'\) does not exist"),
    (lambda p: p.consts.update({"fc.bias": np.zeros(3, F32)}),
     r"kernel 'fc' \(linear\): constant 'fc.bias' \(bias\) has shape \[3\]"),
    (lambda p: p.tensors.update(y=TensorInfo("y", (4, 3))), r"kernel 'res' \(add\): output 'y' is declared as"),
    (lambda p: p.outputs.append("nowhere"), r"program output 'nowhere' is never produced"),
    (lambda p: p.inputs.append("x"), "duplicate"),
    (lambda p: p.kernels.__setitem__(2, replace(p.kernels[2], attrs={"bad": float("nan")})), "unknown attr|JSON"),
])
def test_validate_catches_inconsistencies(mutate, message) -> None:
    p = tiny_program()
    mutate(p)
    with pytest.raises(ProgramError, match=message):
        p.validate()


# ---- each op's validator ---------------------------------------------------------------------
def ti(name: str, shape, dtype: str = "float32") -> TensorInfo:
    return TensorInfo(name, tuple(shape), dtype)


def z(*shape, dtype=F32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


BAD = [  # op, input infos, consts, attrs, message fragment (after the kernel name)
    ("patch_embed", [ti("img", (1, 8, 8))], {"weight": z(4, 4), "bias": z(4)}, {"patch": 3},
     "input 'img'.*patch 3 does not divide"),
    ("patch_embed", [ti("img", (8, 8))], {"weight": z(4, 4), "bias": z(4)}, {"patch": 2},
     r"input 'img' has shape \[8, 8\]; expected \[C, H, W\]"),
    ("patch_embed", [ti("img", (1, 8, 8))], {"weight": z(4, 5), "bias": z(4)}, {"patch": 2},
     "constant 'c_weight' \\(weight\\) has shape \\[4, 5\\]"),
    ("patch_embed", [ti("img", (1, 8, 8), "int16")], {"weight": z(4, 4), "bias": z(4)}, {"patch": 2},
     "input 'img' has dtype int16"),
    ("cls_concat", [ti("tok", (4, 8))], {"cls": z(7)}, {}, r"constant 'c_cls' \(cls\) has shape \[7\]; expected \[8\]"),
    ("add_pos", [ti("tok", (4, 8))], {"pos": z(5, 8)}, {},
     r"constant 'c_pos' \(pos\) has shape \[5, 8\]; expected \[4, 8\]"),
    ("add_pos", [ti("tok", (4, 8))], {"pos": z(4, 8, dtype=np.int8)}, {}, "constant 'c_pos' \\(pos\\) has dtype int8"),
    ("layernorm", [ti("x", (4, 8))], {"gamma": z(8), "beta": z(8)}, {"eps": -1.0},
     "attr 'eps' must be a finite positive"),
    ("layernorm", [ti("x", (4, 8))], {"gamma": z(8)}, {"eps": 1e-6}, r"missing constant role\(s\) \['beta'\]"),
    ("layernorm", [ti("x", (4, 8))], {"gamma": z(6), "beta": z(8)}, {"eps": 1e-6},
     "constant 'c_gamma' \\(gamma\\) has shape \\[6\\]"),
    ("linear", [ti("x", (4, 8))], {"weight": z(5, 7)}, {},
     r"constant 'c_weight' \(weight\) has shape \[5, 7\]; expected \[M, 8\] to match input 'x'"),
    ("linear", [ti("x", (4, 8))], {"weight": z(5, 8), "bias": z(4)}, {}, r"constant 'c_bias' \(bias\) has shape \[4\]"),
    ("linear", [ti("x", (4, 8))], {"weight": z(5, 8)}, {"activation": "relu"}, "attr 'activation' must be one of"),
    ("linear", [ti("x", (4, 8))], {"weight": z(5, 8), "scale": z(5)}, {}, r"unknown constant role\(s\) \['scale'\]"),
    ("linear", [ti("x", (4, 8), "int16")], {"weight": z(5, 8)}, {}, "input 'x' has dtype int16"),
    ("linear", [ti("x", (4, 8)), ti("x2", (4, 8))], {"weight": z(5, 8)}, {}, r"takes 1 input\(s\)"),
    ("attention", [ti("qkv", (5, 24))], {}, {"heads": 2, "head_dim": 3, "scale": 0.5},
     r"input 'qkv' has shape \[5, 24\]; expected \[N, 18\]"),
    ("attention", [ti("qkv", (5, 18))], {}, {"heads": 0, "head_dim": 3, "scale": 0.5},
     "attr 'heads' must be an integer >= 1"),
    ("attention", [ti("qkv", (5, 18))], {}, {"head": 2, "head_dim": 3, "scale": 0.5}, r"unknown attr\(s\) \['head'\]"),
    ("attention", [ti("qkv", (5, 18)), ti("size", (4,))], {}, {"heads": 2, "head_dim": 3, "scale": 0.5},
     r"input 'size' has shape \[4\]; expected \[5\] \(one size per token\)"),
    ("attention", [ti("qkv", (5, 18)), ti("size", (5,), "int32")], {}, {"heads": 2, "head_dim": 3, "scale": 0.5},
     "input \\(size\\) 'size' has dtype int32"),
    ("token_merge", [ti("x", (5, 8)), ti("qkv", (5, 18))], {}, {"r": 3, "heads": 2, "head_dim": 3, "protect": 1},
     r"r = 3 exceeds \(N - protect\) // 2 = 2 for N = 5 tokens"),
    ("token_merge", [ti("x", (5, 8)), ti("qkv", (5, 12))], {}, {"r": 1, "heads": 2, "head_dim": 3, "protect": 0},
     r"input 'qkv' has shape \[5, 12\]; expected \[5, 18\]"),
    ("token_merge", [ti("x", (5, 8)), ti("qkv", (5, 18))], {}, {"r": 0, "heads": 2, "head_dim": 3, "protect": 0},
     "attr 'r' must be an integer >= 1"),
    ("token_merge", [ti("x", (5, 8)), ti("qkv", (5, 18))], {}, {"r": 1, "heads": 2, "head_dim": 3, "protect": 3},
     "attr 'protect' must be 0, 1 or 2"),
    ("token_merge", [ti("x", (5, 8), "int8"), ti("qkv", (5, 18))], {}, {"r": 1, "heads": 2, "head_dim": 3,
                                                                         "protect": 0},
     r"input \(qkv\) 'qkv' has dtype float32; this op supports \['int8'\]"),
    ("token_merge", [ti("x", (5, 8)), ti("qkv", (5, 18)), ti("s", (5,), "int32")], {},
     {"r": 1, "heads": 2, "head_dim": 3, "protect": 0}, r"input \(size\) 's' has dtype int32"),
    ("gelu", [ti("x", (4, 8), "int32")], {}, {}, "input 'x' has dtype int32"),
    ("add", [ti("a", (4, 8)), ti("b", (4, 7))], {}, {},
     r"inputs 'a' \[4, 8\] float32 and 'b' \[4, 7\] float32 must have the same shape"),
    ("pool", [ti("x", (4, 8))], {}, {"mode": "max"}, "attr 'mode' must be one of \\['cls', 'mean', 'prefix'\\]"),
    ("pool", [ti("x", (4, 8))], {}, {"mode": "prefix", "rows": 5}, "attr 'rows' = 5 exceeds the 4 rows of input 'x'"),
    ("pool", [ti("x", (4, 8))], {}, {"mode": "prefix"}, "attr 'rows' must be an integer >= 1"),
    ("pool", [ti("x", (32,))], {}, {"mode": "cls"}, r"input 'x' has shape \[32\]; expected \[N, D\]"),
    ("reshape", [ti("x", (1, 10))], {}, {"shape": [11]},
     "input 'x' \\[1, 10\\] has 10 elements; shape \\[11\\] has 11"),
]


@pytest.mark.parametrize("op, infos, consts, attrs, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_op_validation_rejects(op, infos, consts, attrs, message) -> None:
    outs = ("out",) if OPS[op].num_outputs == 1 else tuple(f"out{i}" for i in range(OPS[op].num_outputs))
    k = Kernel(op=op, name="bad_kernel", inputs=tuple(i.name for i in infos), outputs=outs,
               consts={r: f"c_{r}" for r in consts}, attrs=attrs)
    with pytest.raises(ProgramError, match=rf"kernel 'bad_kernel' \({op}\): {message}"):
        get_op(op).validate(k, infos, consts)


def test_every_op_has_a_rejection_case_and_a_float_runner() -> None:
    assert {b[0] for b in BAD} == set(OPS)
    for op in OPS.values():
        assert "float32" in op.run and op.doc


# ---- JSON and fingerprint ----------------------------------------------------------------------
def test_json_is_deterministic_and_names_constants_by_hash(tiny_spec_module) -> None:
    p1 = lower_float(build_model(tiny_spec_module, seed=1))
    p2 = lower_float(build_model(tiny_spec_module, seed=1))
    assert p1.to_json() == p2.to_json() and p1.fingerprint() == p2.fingerprint()
    d = json.loads(p1.to_json())
    w = p1.consts["blocks.0.attn.qkv.weight"]
    assert d["consts"]["blocks.0.attn.qkv.weight"] == {
        "shape": [24, 8], "dtype": "float32", "sha256": hashlib.sha256(w.tobytes()).hexdigest()}
    assert len(p1.to_json()) < 20_000  # no values inlined
    assert [k["name"] for k in d["kernels"]] == [k.name for k in p1.kernels]
    assert d["kernels"][0] == {"op": "patch_embed", "name": "patch_embed", "inputs": ["image"],
                               "outputs": ["patches"], "consts": {"weight": "patch_embed.proj.weight",
                                                                  "bias": "patch_embed.proj.bias"},
                               "attrs": {"patch": 2}}


def test_fingerprint_tracks_weights_and_structure(tiny_spec_module) -> None:
    p = lower_float(build_model(tiny_spec_module, seed=1))
    base = p.fingerprint()
    w = p.consts["head.bias"].copy()
    w[0] += 1e-3
    p.consts["head.bias"] = w
    assert p.fingerprint() != base
    assert lower_float(build_model(tiny_spec_module, seed=2)).fingerprint() != base


def test_fingerprint_is_stable_across_versions() -> None:
    """A hand-built program's fingerprint is pinned: change it only with a deliberate format change."""
    p = tiny_program()
    assert p.fingerprint() == tiny_program().fingerprint()
    assert const_sha256(p.consts["fc.bias"]) == hashlib.sha256(np.array([0.5, -0.5], F32).tobytes()).hexdigest()
    assert p.fingerprint() == PINNED_FINGERPRINT


PINNED_FINGERPRINT = "846638d029cd01a72b7e1421084112ed1101896da46140ba8738fb84c514d63b"
