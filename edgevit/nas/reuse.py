"""Search inputs beyond the profile: a tighter memory limit (`--max-sram`: the budget of the target's
memory pool, MCU sram = arena + stack) and a supernet reused from an earlier search (`--supernet`).

The supernet depends on the search space and the dataset, not on the device: one trained for
`stm32f746-disco` serves any profile whose default space is the same (every `mcu` profile), and a
second search under a tighter limit then spends its whole budget on evolution.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgevit.atomic_write import write_file_atomically
from edgevit.errors import UserInputError


def parse_max_sram(text: str | int | None) -> int | None:
    """Bytes from "24KiB", "24576" or an int (None stays None); UserInputError naming --max-sram otherwise."""
    from edgevit.profiles.units import parse_size

    if text is None:
        return None
    try:
        value = parse_size(text)
    except ValueError as e:
        raise UserInputError(f"--max-sram {text!r}: {e}") from None
    if not isinstance(value, int) or value <= 0:
        raise UserInputError(f"--max-sram {text!r}: give a positive size such as 24KiB or 24576")
    return value


def limit_memory(costs, max_sram: int, profile_name: str):
    """`costs` (a target's Costs) with its memory pool's budget (the first pool; MCU: sram, arena +
    stack) lowered to `max_sram`; UserInputError naming --max-sram when that is above the pool's own."""
    from dataclasses import replace

    from edgevit.profiles.units import format_bytes

    pool = costs.memory
    if pool.budget is not None and max_sram > pool.budget:
        raise UserInputError(f"--max-sram {format_bytes(max_sram)} is more than {profile_name}'s {pool.name} budget "
                             f"({format_bytes(pool.budget)}); give a smaller limit or leave it out")
    return replace(costs, pools=(replace(pool, budget=max_sram),) + tuple(costs.pools[1:]))


def supernet_weights(src: Path) -> Path:
    """The supernet weights file in `src`: a search OUT directory, a supernet directory or the file."""
    from edgevit.errors import CheckpointError
    from edgevit.nas.search import SUPERNET_DIR
    from edgevit.nas.supernet import WEIGHTS_FILE, weights_path

    src = Path(src)
    inner = src / SUPERNET_DIR
    try:
        return weights_path(inner if inner.is_dir() else src)
    except CheckpointError:
        raise UserInputError(f"--supernet {src}: no supernet there (expected a search output directory, its "
                             f"{SUPERNET_DIR}/ or a {WEIGHTS_FILE}); run `edgevit search` first") from None


def supernet_digest(src: Path | None) -> str | None:
    """sha256 of the supernet weights in `src` (None for None): what a resumed search must reuse again."""
    import hashlib

    if src is None:
        return None
    return hashlib.sha256(supernet_weights(src).read_bytes()).hexdigest()


def adopt_supernet(src: Path, out: Path, space) -> Path:
    """Copy the supernet in `src` into `out/supernet/` (atomically; kept if already there) after checking
    it was trained for `space`; returns the copied weights file. UserInputError on a space mismatch."""
    from edgevit.model.checkpoint import read_metadata
    from edgevit.nas.search import SUPERNET_DIR
    from edgevit.nas.supernet import WEIGHTS_FILE

    weights = supernet_weights(src)
    trained_for = json.loads(read_metadata(weights).get("space", "null"))
    if trained_for != json.loads(json.dumps(space.to_dict())):
        raise UserInputError(f"--supernet {src}: that supernet was trained for another search space; reuse one "
                             "from a search with the same space (--space) and dataset")
    dest = Path(out) / SUPERNET_DIR / WEIGHTS_FILE
    if dest.is_file() and dest.resolve() == weights.resolve():
        return dest
    return write_file_atomically(dest, lambda tmp: shutil.copyfile(weights, tmp))
