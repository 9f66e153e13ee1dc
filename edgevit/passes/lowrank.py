"""The `lowrank` pass: truncated-SVD factorisation of the block linears (qkv, proj, fc1, fc2).

Each chosen linear W [out, in] = U S V^T is replaced by two linears, `a` = sqrt(S_r) V_r^T [r, in]
(no bias) and `b` = U_r sqrt(S_r) [out, r] (with the original bias): the balanced split keeps both
factors in the same range, which suits per-channel int8 weights. The rank per layer comes from
`ratio` (r = ceil(ratio * min(in, out))) or `energy` (the smallest r whose singular values keep
that fraction of sum S^2). A layer stays dense when r (in + out) >= in * out (no parameter saving);
an already factorised layer is re-factorised only to a smaller rank. The ViTSpec records every rank
(`blocks[i].ranks`), and lowering emits two linear kernels per factorised layer. Training-free.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch

from edgevit.errors import UserInputError
from edgevit.model.spec import LINEARS
from edgevit.model.vit import LowRankLinear, VisionTransformer, build_like, dense_weight, linear_bias
from edgevit.passes.options import Option
from edgevit.passes.registry import PassReport, register_pass, structural_report

GROUPS = {"all": LINEARS, "attn": ("qkv", "proj"), "mlp": ("fc1", "fc2")}
MODULES = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}

OPTIONS = {
    "ratio": Option((float,), None, minimum=0.0, doc="rank = ceil(ratio * min(in, out)), ratio in (0, 1]"),
    "energy": Option((float,), None, minimum=0.0, doc="smallest rank keeping this fraction of sum S^2, in (0, 1]"),
    "layers": Option((str, list), "all", words=tuple(GROUPS) + LINEARS,
                     doc="which linears: all, attn, mlp, or a list such as [qkv,fc1]"),
}


def chosen_layers(layers: str | list[str]) -> tuple[str, ...]:
    """Linear names (subset of qkv, proj, fc1, fc2, in that order) named by `layers`."""
    names = set()
    for item in [layers] if isinstance(layers, str) else layers:
        names.update(GROUPS.get(item, (item,)))
    return tuple(n for n in LINEARS if n in names)


def choose_rank(s: np.ndarray, ratio: float | None, energy: float | None) -> int:
    """Rank for singular values `s` (descending) by ratio of the full rank or by kept energy (>= 1)."""
    if ratio is not None:
        return max(1, math.ceil(ratio * len(s) - 1e-9))
    e = s.astype(np.float64) ** 2
    if e.sum() <= 0:
        return 1
    return max(1, int(np.searchsorted(np.cumsum(e) / e.sum(), energy - 1e-12) + 1))


def balanced_factors(u: np.ndarray, s: np.ndarray, vt: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The rank-r split of an SVD w = u diag(s) vt [out, in]: (a [r, in], b [out, r]) = (sqrt(S_r) V_r^T,
    U_r sqrt(S_r)), so b @ a is the best rank-r approximation and both factors have balanced norms."""
    root = np.sqrt(s[:r])
    return root[:, None] * vt[:r], u[:, :r] * root[None, :]


def factorise(module: torch.nn.Module, ratio: float | None, energy: float | None) -> tuple[int | None, dict]:
    """(rank or None for dense, state entries relative to the module: a.weight, b.weight, b.bias or weight, bias)."""
    w = dense_weight(module).detach().double().numpy()
    bias = linear_bias(module)
    out_f, in_f = w.shape
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    r = choose_rank(s, ratio, energy)
    current = module.rank if isinstance(module, LowRankLinear) else None
    if current is not None and r >= current:
        return current, {k: v.detach().clone() for k, v in module.state_dict().items()}
    if r * (in_f + out_f) >= in_f * out_f:
        state = {"weight": torch.from_numpy(w).float()}
        if bias is not None:
            state["bias"] = bias.detach().clone()
        return None, state
    a, b = balanced_factors(u, s, vt, r)
    state = {"a.weight": torch.from_numpy(a).float(), "b.weight": torch.from_numpy(b).float()}
    state["b.bias"] = bias.detach().clone() if bias is not None else torch.zeros(out_f)
    return r, state


def check_options(ratio: float | None, energy: float | None, layers: Any) -> None:
    """Exactly one of ratio / energy, each in (0, 1]; layers among the known names."""
    for name, value in (("ratio", ratio), ("energy", energy), ("layers", layers)):
        OPTIONS[name].check("lowrank", name, value)
    if (ratio is None) == (energy is None):
        raise UserInputError("lowrank: give exactly one of ratio or energy, e.g. lowrank(ratio=0.5) or "
                             "lowrank(energy=0.95)")
    for name, value in (("ratio", ratio), ("energy", energy)):
        if value is not None and not 0.0 < value <= 1.0:
            raise UserInputError(f"lowrank: {name} must be in (0, 1] (got {value})")


def lowrank(model: VisionTransformer, calib: Any = None, eval_data: Any = None,
            progress: Callable[[str], None] | None = None, ratio: float | None = None,
            energy: float | None = None, layers: str | list[str] = "all") -> tuple[VisionTransformer, PassReport]:
    """Factorise the chosen linears of every block (model not modified) -> (new model, PassReport with ranks)."""
    check_options(ratio, energy, layers)
    names = chosen_layers(layers)
    state = {k: v for k, v in model.state_dict().items()}
    blocks, notes, ranks = [], [], []
    for i, (blk, bspec) in enumerate(zip(model.blocks, model.spec.blocks)):
        new_ranks = dict(bspec.ranks)
        for name in names:
            prefix = f"blocks.{i}.{MODULES[name]}."
            rank, entries = factorise(blk.get_submodule(MODULES[name]), ratio, energy)
            for key in [k for k in state if k.startswith(prefix)]:
                del state[key]
            state.update({prefix + k: v for k, v in entries.items()})
            if rank is None:
                new_ranks.pop(name, None)
                notes.append(f"block {i} {name}: kept dense (a factorisation would not save parameters)")
            else:
                new_ranks[name] = rank
        blocks.append(replace(bspec, ranks=new_ranks))
        ranks.append({k: new_ranks[k] for k in LINEARS if k in new_ranks})
    result = build_like(model, model.spec.with_blocks(blocks), state)
    notes.append("ranks per block: " + "; ".join(f"{i}: {r or 'dense'}" for i, r in enumerate(ranks)))
    return result, structural_report("lowrank", {"ratio": ratio, "energy": energy, "layers": layers}, model,
                                     result, eval_data, notes, {"ranks": ranks})


register_pass("lowrank", lowrank, OPTIONS, doc=__doc__.splitlines()[0])
