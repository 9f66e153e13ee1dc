"""What `edgevit search` checks before the dataset loads and anything trains: each bad option is one
clear error in about a second, not after minutes of loading and supernet training.

- the profile: it loads, a backend compiles for its kind (`get_target`: no FPGA backend yet) and
  accepts it (`Target.check_profile`: its core and ISA), and its kind has a default space;
- `--space`: the file exists and its fields are valid (choices, ranges), with the dataset's
  `in_channels` / `num_classes` standing in by placeholders until the data is read;
- `--out`: a writable place for a directory (not a file, not below a file, not read-only), and,
  when it exists, empty or an earlier search's output (`search_state.json`);
- `--ray-address`: Ray installed, a TCP connection to the address, and the cluster's token
  authentication accepting this client (nas/ray_auth.py).
"""

from __future__ import annotations

from pathlib import Path

from edgevit.errors import UserInputError
from edgevit.validate import check_out

STATE_FILE = "search_state.json"  # = search.STATE_FILE (search imports this module)
_PLACEHOLDER_CHANNELS, _PLACEHOLDER_CLASSES = 1, 2


def check_profile_for_search(profile_name, need_default_space: bool = True) -> None:
    """The profile loads, a target compiles for it and (`need_default_space`: no --space) its kind has
    a default space."""
    from edgevit.backend.target import get_target
    from edgevit.nas.space import SPACES_DIR
    from edgevit.profiles.profile import load_profile

    profile = load_profile(profile_name)
    target = get_target(profile)
    target.check_profile(profile)
    if need_default_space and not (SPACES_DIR / f"{profile.kind}.yaml").is_file():
        raise UserInputError(f"profile {profile.name!r}: kind {profile.kind!r} has no default search space; pass "
                             "--space with a search-space YAML")


def check_space_file(space: Path) -> None:
    """SpecError / UserInputError naming the file and field when the --space YAML is not a valid space
    (the dataset's in_channels / num_classes are not known yet: placeholders stand in)."""
    from edgevit.nas.space import SearchSpace
    from edgevit.nas.space_fields import _parse_yaml

    path = Path(space)
    if not path.is_file():
        raise UserInputError(f"--space {path}: search-space file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"--space {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    data = _parse_yaml(text, str(path))
    if isinstance(data, dict):
        data = {"in_channels": _PLACEHOLDER_CHANNELS, "num_classes": _PLACEHOLDER_CLASSES, "name": path.stem, **data}
    SearchSpace.from_dict(data, str(path))


def check_out_place(out: Path) -> None:
    """--out can be created or resumed: a writable directory place, and an existing directory is
    empty or holds an earlier search (its identity is compared once the inputs are loaded)."""
    out = check_out(out, "dir")
    if out.is_dir() and not (out / STATE_FILE).is_file() and any(out.iterdir()):
        raise UserInputError(f"--out {out}: exists and is not a search output directory (no {STATE_FILE}); "
                             "choose a new --out")


def check_ray(address: str) -> None:
    """Ray is installed, something listens at `address` and the cluster accepts this client's token."""
    from edgevit.nas.ray_auth import check_ray_auth
    from edgevit.nas.workers import check_ray_address, ray_module

    ray_module()
    check_ray_address(address)
    check_ray_auth(address)


def check_splits(splits, data: str) -> None:
    """DataError unless the dataset has images to train the supernet on (train) and to rank the
    candidates on (val), checked once it is loaded, before anything is trained or written."""
    from edgevit.errors import DataError

    for name in ("train", "val"):
        if len(getattr(splits, name)) == 0:
            raise DataError(f"--data {data}: the {name} split has no images; the search trains the supernet on "
                            "train and ranks candidates on val (an image folder needs images in train/ and, if it "
                            "has one, val/). Nothing was written.")


def preflight(opts) -> None:
    """Every check above for SearchOptions `opts` (after `opts.check()`), in the order a user would
    fix them: Ray, profile, space, output directory."""
    if opts.ray_address:
        check_ray(opts.ray_address)
    check_profile_for_search(opts.profile, need_default_space=opts.space is None)
    if opts.space is not None:
        check_space_file(opts.space)
    check_out_place(Path(opts.out))
