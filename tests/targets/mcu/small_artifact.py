"""A real, small MCU artifact for tests that need one quickly: the 3-add int8 Program of helpers.py
built by the MCU target and sealed like `edgevit compile` does (Program files included), without
a checkpoint or a dataset."""

from __future__ import annotations

from pathlib import Path


def write_small_artifact(root: Path, profile: str, vectors: int = 3) -> Path:
    """Write the artifact of a 3-add int8 Program (4 x 8 input) for MCU `profile` into `root` (must not
    exist) with `vectors` random test vectors; returns `root`."""
    from edgevit.backend.artifact_program import program_files
    from edgevit.backend.artifact_write import seal, write_atomically
    from edgevit.backend.target import get_target
    from edgevit.profiles.profile import load_profile
    from tests.targets.mcu.helpers import add_chain_program, vectors_for

    prof = load_profile(profile)
    program = add_chain_program("int8", 4, 8, 3)
    target = get_target(prof)
    files = target.build(program, prof, target.estimate(program, prof), vectors_for(program, vectors))
    write_atomically(Path(root), seal({**files, **program_files(program)}, target, prof), False)
    return Path(root)
