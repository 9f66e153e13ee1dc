"""edgevit/threads.py: the thread policy, and results that reach an artifact independent of thread counts.

The determinism tests run the same work with BLAS / torch at 1 thread and at 2 threads (set from
outside with threadpoolctl and torch.set_num_threads, as another machine's core count would) and
compare bytes. The model has an MLP of 472 channels: fc2's reduction K = 472 is one OpenBLAS (AVX-512
kernels) rounds differently with 2 threads than with 1, so without `single_thread_blas` the
calibrated scales differ; the torch test fine-tunes (prune's recovery), whose gradients differ
between 1 and 2 torch threads without `deterministic_section`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from edgevit import threads
from edgevit.data import ArrayDataset
from edgevit.errors import UserInputError
from edgevit.lower import lower
from edgevit.lower.from_model import lower_float
from edgevit.lower.reference import run_program
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import build_model
from edgevit.passes.pipeline import run_pipeline

ODD_K = 472  # > 448 and not a multiple of 32: OpenBLAS' 1- and 2-thread GEMMs round differently here


def odd_model():
    """A one-block 28x28 ViT (random weights, seed 0) whose fc2 reduces over ODD_K channels."""
    spec = ViTSpec.uniform(depth=1, heads=2, head_dim=16, mlp_hidden=ODD_K, image_size=28, in_channels=1,
                           patch_size=4, embed_dim=32, num_classes=10, name="odd")
    return build_model(spec, seed=0).eval()


def calib_data(n: int = 64) -> ArrayDataset:
    """`n` random 28x28 uint8 images with random labels (fixed seed)."""
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, n),
                        [str(i) for i in range(10)], "random")


def with_threads(blas: int, torch_threads: int, fn):
    """fn() with the BLAS pools at `blas` threads and torch at `torch_threads` (both restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with threadpool_limits(limits=blas, user_api="blas"):
            return fn()
    finally:
        torch.set_num_threads(before)


def consts_bytes(program) -> dict[str, bytes]:
    """name -> dtype, shape and bytes of every constant of a Program."""
    return {k: (str(v.dtype), v.shape, np.ascontiguousarray(v).tobytes()) for k, v in program.consts.items()}


# ---------------------------------------------------------------- determinism

def test_quant_calibration_same_scales_and_constants_with_1_or_2_threads():
    model, data = odd_model(), calib_data()

    def quantize():
        qmodel, _ = run_pipeline(model, "quant(w=8,a=8,calib=64,repq=1)", data)
        acts = {k: (v.scale, v.zero_point, v.dtype) for k, v in qmodel.config.activations.items()}
        return acts, consts_bytes(lower(qmodel))

    one, two = with_threads(1, 1, quantize), with_threads(2, 2, quantize)
    assert one[0] == two[0]  # every activation scale and zero point, exactly
    assert one[1] == two[1]  # every int8 weight, bias, multiplier, shift and table


def test_float_reference_outputs_same_bytes_with_1_or_2_blas_threads():
    model = odd_model()
    program = lower_float(model)
    x = model.preprocess.apply(calib_data(128).images)

    def run():
        return run_program(program, x)[program.outputs[0]].tobytes()

    assert with_threads(1, 2, run) == with_threads(2, 2, run)


def test_pass_torch_work_same_weights_with_1_or_2_torch_threads():
    model, data = odd_model(), calib_data()

    def prune():
        pruned, _ = run_pipeline(model, "prune(mlp=0.25,importance=taylor,finetune=1,calib=64)", data)
        return {k: v.detach().numpy().tobytes() for k, v in pruned.state_dict().items()}

    assert with_threads(1, 1, prune) == with_threads(1, 2, prune)


def test_pipeline_restores_the_callers_thread_counts():
    model, data = odd_model(), calib_data(16)

    def run():
        run_pipeline(model, "quant(w=8,a=8,calib=16,repq=0)", data)
        return torch.get_num_threads(), threads.blas_threads()

    assert with_threads(2, 2, run) == (2, 2)


# ---------------------------------------------------------------- the policy

@pytest.fixture
def restore_threads(monkeypatch):
    """Restore torch's and the BLAS pools' thread counts after a test that applies the policy."""
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the original BLAS limits on exit
        yield monkeypatch
    torch.set_num_threads(before)


def test_policy_uses_the_cores_available_to_the_process(restore_threads):
    import os

    affinity, quota = len(os.sched_getaffinity(0)), threads.cgroup_cpu_quota()
    assert threads.available_cores() == (min(affinity, quota) if quota else affinity)
    assert threads.apply_thread_policy() == threads.available_cores() == torch.get_num_threads()
    assert threads.blas_threads() == 1  # torch owns the cores: no oversubscription


@pytest.mark.parametrize("files, cpus", [
    ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs -> 2 threads
    ({"cpu.max": "max 100000\n"}, None),
    ({"quota": "50000\n", "period": "100000\n"}, 1),  # cgroup v1
    ({"quota": "-1\n", "period": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_cpu_quota_caps_the_cores(tmp_path, monkeypatch, files, cpus):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(threads, "CGROUP_FILES", ((str(tmp_path / "cpu.max"),),
                                                   (str(tmp_path / "quota"), str(tmp_path / "period"))))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert threads.cgroup_cpu_quota() == cpus
    assert threads.available_cores() == (cpus or 64)


def test_policy_override_by_option_and_environment(restore_threads):
    restore_threads.setenv(threads.ENV_VAR, "1")
    assert threads.apply_thread_policy() == 1 == torch.get_num_threads()
    assert threads.apply_thread_policy(2) == 2 == torch.get_num_threads()  # the option wins
    restore_threads.setenv(threads.ENV_VAR, "0")
    with pytest.raises(UserInputError, match=threads.ENV_VAR):
        threads.apply_thread_policy()


@pytest.mark.parametrize("bad", [0, -1, "two", "1.5", ""])
def test_bad_thread_counts_are_refused_naming_the_option(bad):
    with pytest.raises(UserInputError, match="--threads must be a whole number of threads >= 1"):
        threads.torch_threads(bad)


def test_single_thread_blas_is_reentrant_and_restores():
    with threadpool_limits(limits=2, user_api="blas"):
        with threads.single_thread_blas():
            assert threads.blas_threads() == 1
            with threads.single_thread_blas():
                assert threads.blas_threads() == 1
            assert threads.blas_threads() == 1  # the inner exit does not restore early
        assert threads.blas_threads() == 2


def test_deterministic_section_restores_torch_threads_after_an_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            with threads.deterministic_section():
                assert torch.get_num_threads() == 1 and threads.blas_threads() == 1
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
