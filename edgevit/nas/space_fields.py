"""Checking a search-space file's fields, and the rules they share with the space (split from space.py).

`normalised_fields` turns a space dict (YAML) into checked, sorted, de-duplicated choices and raises a
SpecError naming the file and the field; `merge_allowed` is the token-merge rule of the space;
`fit_to_data` restricts shipped choices to the data's image size.
"""

from __future__ import annotations

from typing import Any

import yaml

from edgevit.errors import SpecError, UserInputError
from edgevit.model.spec import POOLS

MIN_KEPT_TOKENS = 4          # a merge must leave at least this many patch tokens
_INT_LISTS = ("image_sizes", "patch_sizes", "embed_dims", "depths", "heads", "merge_rs")
_FLOAT_LISTS = ("mlp_ratios", "lowrank_ratios")


def merge_allowed(mergeable: int, r: int) -> bool:
    """True if merging r of `mergeable` patch tokens keeps a valid spec inside the space rules."""
    return r == 0 or (r <= mergeable // 2 and mergeable - r >= MIN_KEPT_TOKENS)


# ---- validation of the choices ---------------------------------------------------------------
def _fail(source: str, field: str, problem: str) -> SpecError:
    return SpecError(f"{source}: {field}: {problem}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _choice_list(values: dict, key: str, source: str) -> tuple:
    """The sorted, de-duplicated choices of list field `key`, type- and range-checked."""
    raw = values.get(key)
    if not isinstance(raw, (list, tuple)) or not raw:
        raise _fail(source, key, f"must be a non-empty list (got {raw!r})")
    if key in _FLOAT_LISTS:
        bad = [v for v in raw if not isinstance(v, (int, float)) or isinstance(v, bool)
               or not (v > 0 and (key == "mlp_ratios" or v <= 1))]
        allowed = "positive numbers" if key == "mlp_ratios" else "numbers in (0, 1] (1.0 = dense)"
        if bad:
            raise _fail(source, key, f"{bad} not allowed; give {allowed}")
        return tuple(sorted({float(v) for v in raw}))
    low = 0 if key == "merge_rs" else 1
    bad = [v for v in raw if not _is_int(v) or v < low]
    if bad:
        raise _fail(source, key, f"{bad} not allowed; give {'integers >= 0' if low == 0 else 'positive integers'}")
    return tuple(sorted(set(raw)))


def _max_patches(image_sizes: tuple, patch_sizes: tuple) -> int:
    return max((s // p) ** 2 for s in image_sizes for p in patch_sizes if s % p == 0)


def normalised_fields(values: dict, source: str) -> dict:
    """Checked field values with sorted tuples of choices; SpecError names `source` and the field."""
    out = {"name": str(values.get("name") or "space")}
    for key in ("in_channels", "num_classes", "head_dim"):
        v = values.get(key)
        if v is None:
            hint = " (or pass the dataset's shape)" if key != "head_dim" else ""
            raise _fail(source, key, f"missing; give a positive integer{hint}")
        if not _is_int(v) or v <= 0:
            raise _fail(source, key, f"must be a positive integer (got {v!r})")
        out[key] = v
    out["pool"] = values.get("pool", "cls")
    if out["pool"] not in POOLS:
        raise _fail(source, "pool", f"must be one of {list(POOLS)} (got {out['pool']!r})")
    for key in _INT_LISTS + _FLOAT_LISTS:
        out[key] = _choice_list(values, key, source)
    images, patches = out["image_sizes"], out["patch_sizes"]
    for p in patches:
        if not any(s % p == 0 for s in images):
            raise _fail(source, "patch_sizes", f"{p} divides none of image_sizes {list(images)}; "
                                               "each patch size must divide at least one image size")
    for s in images:
        if not any(s % p == 0 for p in patches):
            raise _fail(source, "image_sizes", f"{s} is divisible by none of patch_sizes {list(patches)}; "
                                               "each image size needs a patch size dividing it")
    merges = out["merge_rs"]
    if 0 not in merges:
        raise _fail(source, "merge_rs", f"must include 0 (no merge) so deep or small models stay valid "
                                        f"(got {list(merges)})")
    most = _max_patches(images, patches)
    never = [r for r in merges if not merge_allowed(most, r)]
    if never:
        largest = max((r for r in range(most + 1) if merge_allowed(most, r)), default=0)
        raise _fail(source, "merge_rs", f"{never} can never be valid: at most {most} patch tokens enter the first "
                                        f"block, so r must be <= {largest} (<= half, keeping >= {MIN_KEPT_TOKENS})")
    return out


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{source}: not valid YAML: {e}") from None


def _take_from_data(values: dict, key: str, value: int, source: str) -> dict:
    """`values` with `key` set from the dataset; SpecError if the file says otherwise."""
    if values.get(key) is not None and values[key] != value:
        raise _fail(source, key, f"the file says {values[key]!r} but the data has {value}; "
                                 f"remove the field or use matching data")
    return {**values, key: value}


def fit_to_data(d: dict, size: int, source: str) -> dict:
    """Shipped choices restricted to data of `size` x `size`: image sizes <= size plus size itself
    (each with a dividing patch), patch sizes dividing one of them, merge rs that can be valid."""
    patches = d["patch_sizes"]
    images = sorted({s for s in list(d["image_sizes"]) + [size]
                     if s <= size and any(s % p == 0 for p in patches)})
    if not images:
        raise UserInputError(f"{source}: no image size <= the data's {size} has a patch size in {patches} dividing "
                             "it; write a search-space YAML for this data (see edgevit/nas/spaces/)")
    patches = [p for p in patches if any(s % p == 0 for s in images)]
    most = _max_patches(tuple(images), tuple(patches))
    merges = [r for r in d["merge_rs"] if merge_allowed(most, r)]
    return {**d, "image_sizes": images, "patch_sizes": patches, "merge_rs": merges}
