"""The float reference interpreter against the torch model, per op and end to end."""

from __future__ import annotations

import math
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.data.normalize import Normalization
from edgevit.lower.from_model import lower_float
from edgevit.lower.ops import get_op
from edgevit.lower.ops.gelu import gelu, gelu64
from edgevit.lower.program import Kernel, ProgramError
from edgevit.lower.reference import ReferenceInterpreter, predict, run_program
from edgevit.model.counts import count_macs
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer, build_model
from tests.conftest import vit_specs
from tests.lower.int8_helpers import randomise

ZOO = Path(__file__).resolve().parents[2] / "models" / "fmnist-tiny"


def assert_close_logits(got: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(float(np.abs(ref).max()), 1e-3))


def torch_logits(model: VisionTransformer, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=vit_specs(), seed=st.integers(0, 2**16), fuse=st.booleans(), batch=st.integers(1, 7),
       chunk=st.sampled_from([None, 1, 3]))
def test_float_program_matches_torch(spec: ViTSpec, seed: int, fuse: bool, batch: int, chunk) -> None:
    model = randomise(build_model(spec, seed=seed), seed)
    program = lower_float(model, fuse_gelu=fuse)
    assert program.macs() == count_macs(spec)
    assert any(k.op == "gelu" for k in program.kernels) == (not fuse)
    x = np.random.default_rng(seed).standard_normal((batch, spec.in_channels, spec.image_size,
                                                     spec.image_size)).astype(np.float32)
    out = run_program(program, {"image": x}, batch_size=chunk)
    assert list(out) == ["logits"] and out["logits"].shape == (batch, spec.num_classes)
    assert out["logits"].dtype == np.float32
    assert_close_logits(out["logits"], torch_logits(model, x))


def test_attention_follows_the_per_row_definition() -> None:
    """run_float equals the documented loop: per head and query row, softmax over keys, weighted sum of v."""
    rng = np.random.default_rng(0)
    n, h, hd, scale = 5, 2, 3, 0.7
    qkv = rng.standard_normal((2, n, 3 * h * hd)).astype(np.float32)
    k = Kernel("attention", "att", ("qkv",), ("o",), attrs={"heads": h, "head_dim": hd, "scale": scale})
    (got,) = get_op("attention").run["float32"](k, [qkv], {})
    want = np.zeros((2, n, h * hd))
    for b in range(2):
        t = qkv[b].astype(np.float64).reshape(n, 3, h, hd)
        for head in range(h):
            for i in range(n):
                s = np.array([t[i, 0, head] @ t[j, 1, head] * scale for j in range(n)])
                p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                want[b, i, head * hd:(head + 1) * hd] = sum(p[j] * t[j, 2, head] for j in range(n))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_patch_embed_matches_conv() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 12)).astype(np.float32)
    w = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    k = Kernel("patch_embed", "pe", ("x",), ("t",), attrs={"patch": 4})
    (got,) = get_op("patch_embed").run["float32"](k, [x], {"weight": w.reshape(5, -1), "bias": bias})
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias), stride=4)
    np.testing.assert_allclose(got, ref.flatten(2).transpose(1, 2).numpy(), rtol=1e-5, atol=1e-5)


def test_gelu_is_exact_erf_gelu() -> None:
    x = np.concatenate([np.linspace(-12, 12, 20001), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(np.float32)
    exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    assert np.abs(gelu64(x) - exact).max() < 1e-7 * 40
    err = np.abs(gelu(x).astype(np.float64) - exact)
    assert err.max() < 5e-7 * 40 and (err / np.maximum(np.abs(exact), 1e-3)).max() < 2e-6
    assert gelu(np.zeros((2, 3), np.float32)).shape == (2, 3)


def test_run_program_checks_inputs(tiny_spec) -> None:
    program = lower_float(build_model(tiny_spec, seed=0))
    with pytest.raises(ProgramError, match=r"input 'image' has shape \[2, 1, 9, 8\]; expected \[B, 1, 8, 8\]"):
        run_program(program, np.zeros((2, 1, 9, 8), np.float32))
    with pytest.raises(ProgramError, match="input 'image' has dtype int64; the program expects float32"):
        run_program(program, np.zeros((2, 1, 8, 8), np.int64))
    with pytest.raises(ProgramError, match=r"missing \[\], unknown \['img'\]"):
        run_program(program, {"image": np.zeros((1, 1, 8, 8), np.float32), "img": np.zeros(1)})
    assert run_program(program, np.zeros((0, 1, 8, 8), np.float32))["logits"].shape == (0, 3)
    x64 = np.ones((2, 1, 8, 8))  # float64 is cast
    same = run_program(program, x64.astype(np.float32))["logits"]
    np.testing.assert_array_equal(run_program(program, x64)["logits"], same)


def test_intermediates_are_freed_after_last_use(tiny_spec) -> None:
    program = lower_float(build_model(tiny_spec, seed=0))
    interp = ReferenceInterpreter(program)
    last = program.last_uses()
    refs: dict[str, weakref.ref] = {}

    def spy(i, step):
        k, run, consts, dead = step

        def wrapped(kernel, inputs, c):
            alive = [t for t, r in refs.items() if last[t] < i and r() is not None]
            assert not alive, f"{alive} still alive when kernel {kernel.name} runs"
            outs = run(kernel, inputs, c)
            refs.update((t, weakref.ref(o)) for t, o in zip(kernel.outputs, outs))
            return outs
        return (k, wrapped, consts, dead)

    interp._steps = [spy(i, s) for i, s in enumerate(interp._steps)]
    out = interp.run_chunk({"image": np.zeros((2, 1, 8, 8), np.float32)})
    assert list(out) == ["logits"] and len(refs) == len(program.kernels)
    assert 0 < interp.peak_bytes_per_image() < 4 * sum(t.nbytes for t in program.tensors.values())


def test_predict_normalises_like_the_model(tiny_spec) -> None:
    norm = Normalization(mean=(0.3,), std=(0.2,))
    model = randomise(build_model(tiny_spec, preprocess=norm, seed=0), 3)
    program = lower_float(model)
    assert program.meta["preprocess"] == norm.to_dict()
    images = np.random.default_rng(0).integers(0, 256, (9, 1, 8, 8), dtype=np.uint8)
    ref = torch_logits(model, norm.apply(images))
    assert_close_logits(predict(program, images, batch_size=4), ref)
    assert_close_logits(predict(program, images, preprocess=norm), ref)


def zoo_model() -> VisionTransformer:
    """The zoo's fmnist-tiny: trained weights if present, else random ones for its spec."""
    if (ZOO / "model.safetensors").is_file():
        from edgevit.model.checkpoint import load_checkpoint

        try:
            return load_checkpoint(ZOO)
        except Exception:  # being rewritten by a training run: fall back to random weights
            pass
    spec = ViTSpec.load(ZOO / "spec.yaml")
    return build_model(spec, preprocess=Normalization(mean=(0.286,), std=(0.353,)), seed=0).eval()


def test_zoo_model_lowers_and_runs_10k_images_fast() -> None:
    model = zoo_model()
    program = lower_float(model)
    assert program.tensors["image"].shape == (1, 28, 28) and program.tensors["logits"].shape == (10,)
    assert program.macs() == count_macs(model.spec)
    images = np.random.default_rng(0).integers(0, 256, (10_000, 1, 28, 28), dtype=np.uint8)
    start = time.perf_counter()
    logits = predict(program, images)
    elapsed = time.perf_counter() - start
    print(f"\nfmnist-tiny reference interpreter: 10,000 images in {elapsed:.2f} s")
    assert logits.shape == (10_000, 10) and elapsed < 60
    assert_close_logits(logits[:64], torch_logits(model, model.preprocess.apply(images[:64])))
