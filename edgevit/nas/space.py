"""The NAS search space: YAML-defined choices and the ViTSpecs drawn from them.

A space file lists the choices, one key per `SearchSpace` field (image_sizes, patch_sizes,
embed_dims, depths, heads, head_dim, mlp_ratios, lowrank_ratios, merge_rs, name; see the shipped
edgevit/nas/spaces/mcu.yaml). Lists are kept sorted and de-duplicated.
`in_channels`, `num_classes` and `pool` ("cls" when absent) may be left out and come from the
dataset (`load(path, image_shape, num_classes)`, `default_space(profile, image_shape, num_classes)`).

A spec's genes are image size, patch size, embed dim, depth and per block (heads, mlp ratio,
lowrank ratio, merge r). Rules turning genes into a ViTSpec:

- `mlp_hidden_for(dim, ratio)`: round(dim * ratio) (half up), then to the nearest multiple of 8,
  at least 8 (whole SIMD/int8 lanes; the supernet slices the MLP by this width).
- `lowrank_ranks`: ratio < 1 gives every linear of the block (qkv, proj, fc1, fc2) the rank
  ceil(ratio * min(in, out)) (the `passes.lowrank.choose_rank` rule), but only where
  rank * (in + out) < in * out; other linears stay dense. Ratio 1.0 = dense.
- Token merging: a block's merge r must be <= half of the mergeable (patch) tokens entering it
  (the ViTSpec rule) and leave at least MIN_KEPT_TOKENS of them. A sampled r that breaks this is
  clamped to the largest valid choice <= it (0 is always valid, which is why 0 must be a choice).
- Spec names are "nas-" + 8 hex chars of a SHA-256 of the architecture (same in every process).

The sandwich extremes: `largest()` = max resolution with the smallest patch dividing it (most
tokens), max embed / depth / heads / mlp ratio, the highest lowrank ratio (dense when 1.0 is a
choice), r = 0; `smallest()` = min resolution with the largest patch dividing it (fewest tokens),
min embed / depth / heads / mlp ratio, the lowest lowrank ratio and also r = 0 (merging changes
no weight shape, and r = 0 is valid at every depth).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from edgevit.errors import SpecError, UserInputError
from edgevit.model.spec import BlockSpec, ViTSpec
from edgevit.nas.space_fields import (_FLOAT_LISTS, _INT_LISTS, MIN_KEPT_TOKENS, _fail, _max_patches, _parse_yaml,  # noqa: F401,E501
                                      _take_from_data, fit_to_data, merge_allowed, normalised_fields)

KINDS = ("mcu", "cpu", "fpga")
SPACES_DIR = Path(__file__).parent / "spaces"
MUTATION_TRIES = 8           # a mutation that changes nothing is retried this often
_BLOCK_GENES = ("heads", "mlp_ratio", "lowrank_ratio", "merge_r")


# ---- rules shared with the supernet and the estimator ------------------------------------
@lru_cache(maxsize=4096)
def mlp_hidden_for(embed_dim: int, ratio: float) -> int:
    """MLP width for `embed_dim` and `ratio`: round(dim*ratio) half up, to the nearest multiple of 8, >= 8."""
    hidden = math.floor(embed_dim * ratio + 0.5)
    return max(8, 8 * ((hidden + 4) // 8))


def linear_shapes(embed_dim: int, attn_dim: int, mlp_hidden: int) -> dict[str, tuple[int, int]]:
    """(in, out) features of a block's linears qkv, proj, fc1, fc2."""
    return {"qkv": (embed_dim, 3 * attn_dim), "proj": (attn_dim, embed_dim),
            "fc1": (embed_dim, mlp_hidden), "fc2": (mlp_hidden, embed_dim)}


@lru_cache(maxsize=16384)
def _ranks(embed_dim: int, heads: int, head_dim: int, mlp_hidden: int, ratio: float) -> tuple:
    if ratio >= 1.0:
        return ()
    out = []
    for name, (n_in, n_out) in linear_shapes(embed_dim, heads * head_dim, mlp_hidden).items():
        rank = max(1, math.ceil(ratio * min(n_in, n_out) - 1e-9))
        if rank * (n_in + n_out) < n_in * n_out:
            out.append((name, rank))
    return tuple(out)


def lowrank_ranks(embed_dim: int, heads: int, head_dim: int, mlp_hidden: int, ratio: float) -> dict[str, int]:
    """Ranks {linear: rank} of a block at `ratio` (see the module doc); {} for dense (ratio 1.0)."""
    return dict(_ranks(embed_dim, heads, head_dim, mlp_hidden, float(ratio)))


def spec_name(image_size: int, patch_size: int, embed_dim: int, blocks: tuple[BlockSpec, ...],
              head: tuple = ()) -> str:
    """"nas-" + 8 hex chars of a SHA-256 of the architecture (stable across processes)."""
    key = (image_size, patch_size, embed_dim, head,
           tuple((b.heads, b.head_dim, b.mlp_hidden, tuple(sorted(b.ranks.items())), b.merge_r) for b in blocks))
    return "nas-" + hashlib.sha256(repr(key).encode()).hexdigest()[:8]


# ---- the space -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchSpace:
    """Choices; every sampled spec is a valid ViTSpec inside them (see the module doc)."""

    in_channels: int
    num_classes: int
    pool: str
    image_sizes: tuple[int, ...]
    patch_sizes: tuple[int, ...]
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    head_dim: int
    mlp_ratios: tuple[float, ...]
    lowrank_ratios: tuple[float, ...]
    merge_rs: tuple[int, ...]
    name: str = "space"

    def __post_init__(self) -> None:
        values = normalised_fields({f.name: getattr(self, f.name) for f in fields(self)},
                                   f"search space {self.name!r}")
        for key, v in values.items():
            object.__setattr__(self, key, v)
        patches = {s: tuple(p for p in self.patch_sizes if s % p == 0) for s in self.image_sizes}
        object.__setattr__(self, "_patches", patches)

    # ---- sizes the supernet allocates ----------------------------------------------------
    max_embed = property(lambda self: self.embed_dims[-1], doc="Largest embed dim.")
    max_heads = property(lambda self: self.heads[-1], doc="Most heads in a block.")
    max_depth = property(lambda self: self.depths[-1], doc="Most blocks.")
    max_image_size = property(lambda self: self.image_sizes[-1], doc="Largest input resolution.")
    max_mlp_hidden = property(lambda self: mlp_hidden_for(self.max_embed, self.mlp_ratios[-1]),
                              doc="Widest MLP hidden layer: mlp_hidden_for(max embed, max ratio).")
    max_patches = property(lambda self: _max_patches(self.image_sizes, self.patch_sizes),
                           doc="Most patch tokens over every (image size, dividing patch size) pair.")

    def patch_choices(self, image_size: int) -> tuple[int, ...]:
        """Patch sizes (ascending) dividing `image_size`; () if it is not a choice."""
        return self._patches.get(image_size, ())

    # ---- genes <-> specs -------------------------------------------------------------------
    def build(self, image_size: int, patch_size: int, embed_dim: int, blocks: list) -> ViTSpec:
        """The ViTSpec of these genes; `blocks` = per-block dicts (as block_choices) or
        (heads, mlp_ratio, lowrank_ratio, merge_r) tuples. SpecError if the result is invalid."""
        genes = [tuple(b[k] for k in _BLOCK_GENES) if isinstance(b, dict) else tuple(b) for b in blocks]
        specs = []
        for heads, mlp_ratio, lowrank_ratio, merge_r in genes:
            hidden = mlp_hidden_for(embed_dim, float(mlp_ratio))
            specs.append(BlockSpec(heads=heads, head_dim=self.head_dim, mlp_hidden=hidden, merge_r=merge_r,
                                   ranks=lowrank_ranks(embed_dim, heads, self.head_dim, hidden, lowrank_ratio)))
        blocks_t = tuple(specs)
        name = spec_name(image_size, patch_size, embed_dim, blocks_t,
                         (self.in_channels, self.num_classes, self.pool))
        return ViTSpec(image_size=image_size, in_channels=self.in_channels, patch_size=patch_size,
                       embed_dim=embed_dim, num_classes=self.num_classes, blocks=blocks_t,
                       pool=self.pool, name=name)

    def _clamped(self, image_size: int, patch_size: int, blocks: list[tuple]) -> list[tuple]:
        """Blocks with each merge r lowered to the largest valid choice <= it, in order."""
        mergeable = (image_size // patch_size) ** 2
        out = []
        for heads, mlp, low, r in blocks:
            r = max(c for c in self.merge_rs if c <= r and merge_allowed(mergeable, c))
            mergeable -= r
            out.append((heads, mlp, low, r))
        return out

    def _genes(self, spec: ViTSpec) -> tuple[int, int, int, list[tuple]]:
        """(image, patch, embed, per-block gene tuples) of a spec; SpecError naming a field outside the space."""
        where = spec.name or "spec"

        def outside(field: str, value: Any, allowed: Any) -> SpecError:
            return SpecError(f"{where}: {field} = {value!r} is outside the search space {self.name!r} "
                             f"(allowed: {allowed})")

        for field, allowed in (("in_channels", [self.in_channels]), ("num_classes", [self.num_classes]),
                               ("pool", [self.pool]), ("image_size", list(self.image_sizes)),
                               ("patch_size", list(self.patch_choices(spec.image_size))),
                               ("embed_dim", list(self.embed_dims)), ("depth", list(self.depths))):
            if getattr(spec, field) not in allowed:
                raise outside(field, getattr(spec, field), allowed)
        embed, mergeable, genes = spec.embed_dim, spec.num_patches, []
        for i, b in enumerate(spec.blocks):
            at = f"blocks[{i}]"
            if b.heads not in self.heads:
                raise outside(f"{at}.heads", b.heads, list(self.heads))
            if b.head_dim != self.head_dim:
                raise outside(f"{at}.head_dim", b.head_dim, [self.head_dim])
            mlp = next((r for r in self.mlp_ratios if mlp_hidden_for(embed, r) == b.mlp_hidden), None)
            if mlp is None:
                raise outside(f"{at}.mlp_hidden", b.mlp_hidden, [mlp_hidden_for(embed, r) for r in self.mlp_ratios])
            low = next((r for r in reversed(self.lowrank_ratios)
                        if lowrank_ranks(embed, b.heads, b.head_dim, b.mlp_hidden, r) == b.ranks), None)
            if low is None:
                raise outside(f"{at}.ranks", b.ranks, [lowrank_ranks(embed, b.heads, b.head_dim, b.mlp_hidden, r)
                                                      for r in self.lowrank_ratios])
            if b.merge_r not in self.merge_rs or not merge_allowed(mergeable, b.merge_r):
                ok = [r for r in self.merge_rs if merge_allowed(mergeable, r)]
                raise outside(f"{at}.merge_r", b.merge_r, f"{ok} with {mergeable} patch tokens entering the block")
            mergeable -= b.merge_r
            genes.append((b.heads, mlp, low, b.merge_r))
        return spec.image_size, spec.patch_size, embed, genes

    def check(self, spec: ViTSpec) -> None:
        """Raise SpecError naming the first field of `spec` outside the space."""
        self._genes(spec)

    def contains(self, spec: ViTSpec) -> bool:
        """True if `spec` could have been sampled from this space (its name is ignored)."""
        try:
            self._genes(spec)
        except SpecError:
            return False
        return True

    def block_choices(self, spec: ViTSpec) -> list[dict]:
        """Per block {"heads", "mlp_ratio", "lowrank_ratio", "merge_r"} of a spec inside the space."""
        return [dict(zip(_BLOCK_GENES, g)) for g in self._genes(spec)[3]]

    # ---- sampling, mutation, crossover -----------------------------------------------------
    def _sample_block(self, rng: random.Random) -> tuple:
        return (rng.choice(self.heads), rng.choice(self.mlp_ratios), rng.choice(self.lowrank_ratios),
                rng.choice(self.merge_rs))

    def sample(self, rng: random.Random) -> ViTSpec:
        """A uniformly drawn spec: image size, a patch size dividing it, embed, depth, then per block
        heads / mlp ratio / lowrank ratio / merge r (r clamped to stay valid)."""
        image = rng.choice(self.image_sizes)
        patch = rng.choice(self._patches[image])
        embed = rng.choice(self.embed_dims)
        blocks = [self._sample_block(rng) for _ in range(rng.choice(self.depths))]
        return self.build(image, patch, embed, self._clamped(image, patch, blocks))

    def _mutated_genes(self, genes: tuple, rng: random.Random, prob: float) -> tuple:
        image, patch, embed, blocks = genes
        if rng.random() < prob:
            image = rng.choice(self.image_sizes)
        if rng.random() < prob or patch not in self._patches[image]:
            patch = rng.choice(self._patches[image])
        if rng.random() < prob:
            embed = rng.choice(self.embed_dims)
        blocks = list(blocks)
        if rng.random() < prob:
            depth = rng.choice(self.depths)
            blocks = blocks[:depth] + [self._sample_block(rng) for _ in range(depth - len(blocks))]
        new_blocks = []
        for block in blocks:
            fresh = self._sample_block(rng)
            new_blocks.append(tuple(f if rng.random() < prob else g for g, f in zip(block, fresh)))
        return image, patch, embed, self._clamped(image, patch, new_blocks)

    def mutate(self, spec: ViTSpec, rng: random.Random, prob: float = 0.3) -> ViTSpec:
        """A copy of `spec` (inside the space) with each gene re-sampled with probability `prob`;
        depth changes drop or append blocks at the end. Retried when nothing changed."""
        genes = self._genes(spec)
        same = self.build(*genes)
        for _ in range(MUTATION_TRIES):
            child = self.build(*self._mutated_genes(genes, rng, prob))
            if child != same:
                return child
        return child

    def crossover(self, a: ViTSpec, b: ViTSpec, rng: random.Random) -> ViTSpec:
        """A child taking each gene (and each block gene) from either parent uniformly; depth from
        one parent; the patch size re-drawn if neither parent's divides the chosen image size."""
        ga, gb = self._genes(a), self._genes(b)
        image = ga[0] if rng.random() < 0.5 else gb[0]
        first, second = (ga[1], gb[1]) if rng.random() < 0.5 else (gb[1], ga[1])
        choices = self._patches[image]
        patch = first if first in choices else second if second in choices else rng.choice(choices)
        embed = ga[2] if rng.random() < 0.5 else gb[2]
        depth_parent, other = (ga[3], gb[3]) if rng.random() < 0.5 else (gb[3], ga[3])
        blocks = []
        for i, block in enumerate(depth_parent):
            if i < len(other):
                block = tuple(x if rng.random() < 0.5 else y for x, y in zip(block, other[i]))
            blocks.append(block)
        return self.build(image, patch, embed, self._clamped(image, patch, blocks))

    def largest(self) -> ViTSpec:
        """Sandwich top: max resolution, smallest patch dividing it, max embed/depth/heads/mlp/lowrank
        ratio, r=0."""
        image = self.image_sizes[-1]
        block = (self.heads[-1], self.mlp_ratios[-1], self.lowrank_ratios[-1], 0)
        return self.build(image, self._patches[image][0], self.max_embed, [block] * self.max_depth)

    def smallest(self) -> ViTSpec:
        """Sandwich bottom: min resolution, largest patch dividing it, min embed/depth/heads/mlp,
        lowest lowrank ratio, r=0."""
        image = self.image_sizes[0]
        block = (self.heads[0], self.mlp_ratios[0], self.lowrank_ratios[0], 0)
        return self.build(image, self._patches[image][-1], self.embed_dims[0], [block] * self.depths[0])

    # ---- YAML ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict, one key per field (lists for the choices)."""
        out: dict[str, Any] = {"name": self.name}
        for f in fields(self):
            if f.name != "name":
                v = getattr(self, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def to_yaml(self) -> str:
        """YAML text that `from_yaml` reads back to an equal space."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> None:
        """Write `to_yaml()` to `path`."""
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_dict(cls, d: Any, source: str = "search space", image_shape: tuple[int, int, int] | None = None,
                  num_classes: int | None = None) -> "SearchSpace":
        """A space from a dict of fields; `in_channels`/`num_classes` may come from the dataset
        (`image_shape` = (C, H, W), image sizes must then be <= H). SpecError names `source` and the field."""
        if not isinstance(d, dict):
            raise SpecError(f"{source}: expected a mapping of search-space fields (got {type(d).__name__})")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known), key=str)
        if unknown:
            raise SpecError(f"{source}: unknown field(s) {unknown}; allowed: {known}")
        values = dict(d)
        size = None
        if image_shape is not None:
            channels, size, width = (int(v) for v in image_shape)
            if size != width:
                raise UserInputError(f"{source}: the data's images are {size}x{width}; NAS needs square images")
            values = _take_from_data(values, "in_channels", channels, source)
        if num_classes is not None:
            values = _take_from_data(values, "num_classes", int(num_classes), source)
        checked = normalised_fields(values, source)
        if size is not None and checked["image_sizes"][-1] > size:
            too_big = [s for s in checked["image_sizes"] if s > size]
            raise _fail(source, "image_sizes", f"{too_big} larger than the data's {size}x{size} images; "
                                               f"allowed: sizes <= {size} (images are only resized down)")
        return cls(**checked)

    @classmethod
    def from_yaml(cls, text: str, source: str = "search space", image_shape: tuple[int, int, int] | None = None,
                  num_classes: int | None = None) -> "SearchSpace":
        """Parse YAML text (see from_dict)."""
        return cls.from_dict(_parse_yaml(text, source), source, image_shape, num_classes)

    @classmethod
    def load(cls, path: str | Path, image_shape: tuple[int, int, int] | None = None,
             num_classes: int | None = None) -> "SearchSpace":
        """Read a space YAML file (see from_dict); the name defaults to the file's stem."""
        p = Path(path)
        if not p.is_file():
            raise UserInputError(f"{p}: search-space file not found")
        d = _parse_yaml(p.read_text(), str(p))
        if isinstance(d, dict) and not d.get("name"):
            d = {**d, "name": p.stem}
        return cls.from_dict(d, str(p), image_shape, num_classes)


# ---- shipped defaults --------------------------------------------------------------------------
def _profile_kind(profile: Any) -> str:
    """'mcu' / 'cpu' / 'fpga' of a Profile, a profile name or path, or a kind itself."""
    if isinstance(profile, str) and profile in KINDS:
        return profile
    if isinstance(profile, (str, Path)):
        from edgevit.profiles.profile import load_profile
        profile = load_profile(profile)
    kind = getattr(profile, "kind", None)
    if kind not in KINDS:
        raise UserInputError(f"profile {getattr(profile, 'name', profile)!r}: kind {kind!r} has no default "
                             f"search space (known: {list(KINDS)})")
    return kind


def default_space(profile: Any, image_shape: tuple[int, int, int], num_classes: int) -> SearchSpace:
    """The shipped space for `profile`'s kind (edgevit/nas/spaces/<kind>.yaml) fitted to data of
    `image_shape` (C, H, W) with `num_classes` classes. `profile`: Profile, profile name/path or kind."""
    kind = _profile_kind(profile)
    path = SPACES_DIR / f"{kind}.yaml"
    d = fit_to_data(yaml.safe_load(path.read_text()), int(image_shape[1]), str(path))
    return SearchSpace.from_dict(d, str(path), image_shape, num_classes)  # also rejects non-square data
