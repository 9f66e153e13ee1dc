"""The `tome` pass: training-free token merging (ToMe, Bolya et al. 2023) with a static schedule.

`tome(r=4)` sets `merge_r = 4` in every block of the ViTSpec; `tome(r=8,schedule=decreasing)`
merges more early and less late (ToMe's decreasing schedule: r_i falls linearly from 1.5 r in the
first block to 0.5 r in the last, truncated to integers); `tome(r=[8,8,4,0])` gives the schedule
block by block. The weights are untouched: the model gains bipartite soft matching after each
merging block's attention, size-weighted averaging and proportional attention (see
`edgevit.model.vit.bipartite_merge` and the `token_merge` op). Because the schedule lives in the
spec, every shape stays static for the compiler. Each r is clamped to what the block can merge,
(N - prefix) // 2 of its N tokens (the class token is protected); the report notes any clamp.
A later `tome` replaces the schedule; `tome(r=0)` removes merging (the identity on an unmerged model).

`tome(mac_cut=1.3)` instead chooses the per-block schedule on the calibration images: the greedy
search of `edgevit.passes.tome_schedule` adds merges where they move the logits least, until MACs
fall by that factor (still training-free; the report gives the list for `tome(r=[...])`).
"""

from __future__ import annotations

from typing import Any, Callable

from edgevit.data import ArrayDataset, calibration_subset
from edgevit.errors import UserInputError
from edgevit.model.spec import ViTSpec
from edgevit.model.vit import VisionTransformer, build_like
from edgevit.passes.options import Option
from edgevit.passes.registry import PassReport, register_pass, structural_report
from edgevit.passes.tome_schedule import calibrated_schedule, with_merge

SCHEDULES = ("constant", "decreasing")

OPTIONS = {
    "r": Option((int, list), 0, minimum=0,
                doc="tokens merged per block (an integer, with `schedule`), or one count per block, e.g. [8,4,2,0]"),
    "schedule": Option((str,), "constant", SCHEDULES,
                       doc="constant: r in every block; decreasing: linear from 1.5 r (first block) to 0.5 r (last)"),
    "mac_cut": Option((float, int), 0.0, minimum=0,
                      doc="instead of r: choose each block's r on calibration images until MACs fall by this factor "
                          "(e.g. 1.3; 0 = off)"),
    "calib": Option((int,), 256, minimum=1, doc="calibration images for mac_cut"),
}


def requested_schedule(depth: int, r: int | list[int], schedule: str) -> list[int]:
    """Tokens to merge per block before clamping: [r] * depth, ToMe's decreasing schedule, or the list given."""
    if isinstance(r, list):
        if schedule != "constant":
            raise UserInputError("tome: schedule applies to an integer r; a list already gives every block's r")
        if len(r) != depth:
            raise UserInputError(f"tome: r lists {len(r)} values but the model has {depth} blocks; give one per block")
        return [int(v) for v in r]
    if schedule == "constant" or depth == 1:
        return [int(r)] * depth
    lo, hi = int(r * 1.5), 2 * int(r) - int(r * 1.5)  # ToMe parse_r with inflection -0.5
    step = (hi - lo) / (depth - 1)
    return [max(0, int(lo + step * i)) for i in range(depth)]


def clamp_schedule(spec: ViTSpec, wanted: list[int]) -> tuple[list[int], list[str]]:
    """Clamp each block's r to (N - prefix) // 2 of the N tokens entering it; notes for every clamp."""
    n, rs, notes = spec.num_patches + spec.num_prefix, [], []
    for i, r in enumerate(wanted):
        limit = (n - spec.num_prefix) // 2
        if r > limit:
            notes.append(f"block {i}: r {r} clamped to {limit} ({n} tokens enter it)")
            r = limit
        rs.append(r)
        n -= r
    return rs, notes


def calibrated_request(model: VisionTransformer, calib_data: ArrayDataset | None, mac_cut: float, calib: int,
                       r: int | list[int], schedule: str, say: Callable[[str], None]) -> tuple[list[int], list[str]]:
    """The schedule `calibrated_schedule` picks for `mac_cut` (> 1), with notes; clear errors for misuse."""
    if r != 0 or schedule != "constant":
        raise UserInputError("tome: give either mac_cut (the schedule is then chosen per block) or r/schedule, not both")
    if mac_cut <= 1:
        raise UserInputError(f"tome: mac_cut={mac_cut} must be above 1 (the factor MACs fall by, e.g. 1.3)")
    if calib_data is None or len(calib_data) == 0:
        raise UserInputError("tome: mac_cut needs calibration images (the pipeline's calibration split); "
                             "give r instead for a data-free schedule")
    say(f"choosing merge_r per block for MACs /{mac_cut} on {min(calib, len(calib_data))} calibration images")
    rs, kl = calibrated_schedule(model, calibration_subset(calib_data, calib), float(mac_cut), say)
    return rs, [f"calibrated for mac_cut={mac_cut}: r={rs} (mean KL to the unmerged logits {kl:.4f}); "
                f"reproduce with tome(r=[{','.join(map(str, rs))}])"]


def token_merge(model: VisionTransformer, calib_data: ArrayDataset | None = None, /, eval_data: Any = None,
                progress: Callable[[str], None] | None = None, r: int | list[int] = 0,
                schedule: str = "constant", mac_cut: float = 0.0, calib: int = 256) -> tuple[VisionTransformer, PassReport]:
    """Set the token-merging schedule of `model` (a new model, same weights) and report MACs before / after.

    `calib_data` (uint8 images [N, C, H, W]) is only used by `mac_cut`; r and schedule are data-free.
    Returns (merged model, PassReport with the schedule in details).
    """
    for name, value in (("r", r), ("schedule", schedule), ("mac_cut", mac_cut), ("calib", calib)):
        OPTIONS[name].check("tome", name, value)
    spec, say = model.spec, progress or (lambda _: None)
    if mac_cut:
        rs, notes = calibrated_request(model, calib_data, mac_cut, calib, r, schedule, say)
        rs, clamp_notes = clamp_schedule(spec, rs)
        notes += clamp_notes
    else:
        rs, notes = clamp_schedule(spec, requested_schedule(spec.depth, r, schedule))
    merged = build_like(model, with_merge(spec, rs))
    tokens = merged.spec.tokens_per_block()
    notes.append(f"merge_r per block {rs}: tokens per block {tokens[:-1]}, {tokens[-1]} at the head")
    options = {"r": r, "schedule": schedule} if not mac_cut else {"mac_cut": mac_cut, "calib": calib}
    return merged, structural_report("tome", options, model, merged, eval_data, notes,
                                     {"merge_r": rs, "tokens": tokens})


register_pass("tome", token_merge, OPTIONS, doc=__doc__.splitlines()[0])
