"""Judging float32 outputs on ill-conditioned inputs (used by codegen_cases.check_case).

Float32 programs are compared with the project's rule (backend/run.py: max |out - ref| <= 1e-4 x max
|ref| per vector): kernels may sum in another order than the reference interpreter. On some inputs the
model itself amplifies rounding: a LayerNorm over 2 channels whose values almost agree, for example,
multiplies a 1e-7 difference by ~500. There any two float32 evaluations disagree by more than 1e-4,
the reference interpreter included, and the fixed rule says nothing about the generated code.

So, only when a float32 vector fails the fixed rule, the fuzzer measures the vector's conditioning:
`truth` = the same model in float64 (torch), `spread` = how far two float32 evaluations already are from
it (the reference interpreter, torch float32). The vector is ill-conditioned when the reference's own
error exceeds ILL_CONDITIONED x max |truth|; then the generated code passes if it is within
1e-4 x max |truth| + SPREAD x spread of the truth. A well-conditioned vector that fails the fixed rule
fails; so does an ill-conditioned one far outside the spread. Every vector accepted this way is logged
with its numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FLOAT_RTOL = 1e-4        # backend/run.py's rule
ILL_CONDITIONED = 1e-5   # reference error vs float64, relative, above which a vector is ill-conditioned
SPREAD = 8.0             # the generated code may be this many float32 spreads away from float64


def device_outputs_of(artifact: Path, runner: str, sanitize: bool):
    """(outputs [n, ...], Vectors) of the artifact's bundled vectors on `runner`: the steps of
    backend.run.run_vectors, keeping the outputs it only compares."""
    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.protocol import parse_output
    from edgevit.backend.run import device_outputs, pick_runner

    art = load_artifact(artifact)
    run = pick_runner(art, runner, sanitize=sanitize)
    vectors, profile = art.load_vectors(), art.profile()
    run.check(art, profile)
    out = run.execute(art, profile, vectors.count, run.default_timeout(art, profile, vectors.count), lambda m: None)
    device = parse_output(out.text, vectors.count, vectors.output_bytes, source=out.source)
    return device_outputs(device, vectors), vectors


def model_outputs(model, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64, float32) outputs of a float torch model on the Program's inputs [n, C, H, W]."""
    import copy

    import torch

    with torch.no_grad():
        y32 = copy.deepcopy(model).float().eval()(torch.from_numpy(inputs.astype(np.float32))).numpy()
        y64 = copy.deepcopy(model).double().eval()(torch.from_numpy(inputs.astype(np.float64))).numpy()
    return y64, y32


def judge(outputs: np.ndarray, expected: np.ndarray, truth: np.ndarray, torch32: np.ndarray) -> list[dict]:
    """Per vector: the numbers and whether it passes (the fixed rule, or the ill-conditioned one)."""
    rows = []
    for i in range(outputs.shape[0]):
        out, ref, t64, t32 = (a[i].astype(np.float64).ravel() for a in (outputs, expected, truth, torch32))
        scale = float(np.abs(t64).max())
        ref_err, t32_err = float(np.abs(ref - t64).max()), float(np.abs(t32 - t64).max())
        spread = max(ref_err, t32_err)
        plain = bool(np.abs(out - ref).max() <= FLOAT_RTOL * np.abs(ref).max())
        ill = ref_err > ILL_CONDITIONED * scale
        conditioned = bool(ill and np.abs(out - t64).max() <= FLOAT_RTOL * scale + SPREAD * spread)
        rows.append({"vector": i, "passes": plain or conditioned, "fixed_rule": plain, "ill_conditioned": ill,
                     "out_vs_ref": float(np.abs(out - ref).max()), "out_vs_float64": float(np.abs(out - t64).max()),
                     "ref_vs_float64": ref_err, "torch32_vs_float64": t32_err, "scale": scale})
    return rows
