"""ViTSpec: the one declarative description of a vision transformer's architecture.

A spec is per-block: every block has its own heads, head dim, MLP width, optional
low-rank ranks and `merge_r` (tokens merged by it, after its attention: token merging). NAS emits specs, passes edit
them, lowering and code generation read them. YAML round-trips exactly:
`ViTSpec.from_yaml(s.to_yaml()) == s`, and a canonical YAML text survives
`from_yaml` -> `to_yaml` unchanged.

A DeiT-distilled model (`distill_token: true`) has a second prefix token, the distillation token,
right after the class token: tokens are [cls, dist, patches...]. Its inference head is `pool:
cls_dist` (the average of the class head on the class token and the distillation head on the
distillation token); `pool: cls` with a distillation token classifies from the class token only.

Uniform models may be written in shorthand at the top level (`depth`, `heads`,
`head_dim`, `mlp_hidden` or `mlp_ratio`) instead of a `blocks:` list; a spec whose
blocks are all alike is written back in that shorthand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from edgevit.errors import SpecError

LINEARS = ("qkv", "proj", "fc1", "fc2")
POOLS = ("cls", "mean", "cls_dist")
_UNIFORM_KEYS = ("depth", "heads", "head_dim", "mlp_hidden", "mlp_ratio", "ranks", "merge_r")


@dataclass(frozen=True)
class BlockSpec:
    """One transformer block: attention with `heads` x `head_dim`, an MLP of `mlp_hidden`.

    `ranks` maps a linear name (qkv, proj, fc1, fc2) to the rank of its low-rank
    factorisation (absent: dense). `merge_r` tokens are merged inside the block, after its
    attention residual and before its MLP (ToMe): the MLP and every later block see r fewer.
    """

    heads: int
    head_dim: int
    mlp_hidden: int
    ranks: dict[str, int] = field(default_factory=dict)
    merge_r: int = 0

    @property
    def attn_dim(self) -> int:
        """Width of q, k and v: heads * head_dim."""
        return self.heads * self.head_dim

    def rank(self, linear: str) -> int | None:
        """Rank of the named linear's factorisation, or None if it is dense."""
        return self.ranks.get(linear)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML, omitting defaults (empty ranks, merge_r 0)."""
        d: dict[str, Any] = {"heads": self.heads, "head_dim": self.head_dim, "mlp_hidden": self.mlp_hidden}
        if self.ranks:
            d["ranks"] = {k: self.ranks[k] for k in LINEARS if k in self.ranks}
        if self.merge_r:
            d["merge_r"] = self.merge_r
        return d

    def __hash__(self) -> int:
        return hash((self.heads, self.head_dim, self.mlp_hidden, tuple(sorted(self.ranks.items())), self.merge_r))


@dataclass(frozen=True)
class ViTSpec:
    """A whole ViT: patch embedding, blocks, final norm, pooling and classifier head.

    Input images are [C, H, W] with H == W == image_size; patches of patch_size give
    (image_size // patch_size)**2 patch tokens, behind the prefix tokens: a class token when
    pool is "cls" or "cls_dist", then a distillation token when `distill_token` (DeiT).

    pool: "cls" (head on the final-normed class token), "mean" (no class token; head on the
    normed mean of all tokens) or "cls_dist" (DeiT-distilled inference: logits =
    (head(norm(x)[0]) + head_dist(norm(x)[1])) / 2; needs `distill_token`).
    distill_token: a DeiT distillation token at position 1 (needs pool "cls" or "cls_dist");
    YAML key `distill_token`, written only when true.
    """

    image_size: int
    in_channels: int
    patch_size: int
    embed_dim: int
    num_classes: int
    blocks: tuple[BlockSpec, ...]
    pool: Literal["cls", "mean", "cls_dist"] = "cls"
    name: str = ""
    norm_eps: float = 1e-6
    distill_token: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        validate_spec(self)

    # ---- derived shapes -------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens: grid ** 2."""
        return self.grid**2

    @property
    def has_cls_token(self) -> bool:
        """True when the model has a class token (pool "cls" or "cls_dist")."""
        return self.pool != "mean"

    @property
    def num_prefix(self) -> int:
        """Tokens in front of the patches: the class token (pool "cls"/"cls_dist") plus the distillation token."""
        return int(self.has_cls_token) + int(self.distill_token)

    def tokens_per_block(self) -> list[int]:
        """Tokens entering each block, then the count after the last block (len depth+1).

        Block i's attention runs on counts[i] tokens, its MLP on counts[i+1] (= counts[i] - merge_r).
        """
        n = self.num_patches + self.num_prefix
        counts = [n]
        for b in self.blocks:
            n -= b.merge_r
            counts.append(n)
        return counts

    @property
    def is_uniform(self) -> bool:
        """True if every block is the same (written back in shorthand)."""
        return len(set(self.blocks)) <= 1

    # ---- construction -----------------------------------------------------
    @classmethod
    def uniform(cls, *, depth: int, heads: int, head_dim: int, mlp_hidden: int, **kw: Any) -> "ViTSpec":
        """A spec whose `depth` blocks are identical."""
        block = BlockSpec(heads=heads, head_dim=head_dim, mlp_hidden=mlp_hidden)
        return cls(blocks=tuple(block for _ in range(depth)), **kw)

    def with_blocks(self, blocks: list[BlockSpec] | tuple[BlockSpec, ...]) -> "ViTSpec":
        """A copy with other blocks (validated)."""
        return replace(self, blocks=tuple(blocks))

    # ---- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Canonical plain dict; uniform models in shorthand."""
        d: dict[str, Any] = {}
        if self.name:
            d["name"] = self.name
        d.update(
            image_size=self.image_size, in_channels=self.in_channels, patch_size=self.patch_size,
            embed_dim=self.embed_dim, pool=self.pool, num_classes=self.num_classes,
        )
        if self.distill_token:
            d["distill_token"] = True
        if self.norm_eps != 1e-6:
            d["norm_eps"] = self.norm_eps
        if self.is_uniform and self.blocks:
            d["depth"] = self.depth
            d.update(self.blocks[0].to_dict())
        else:
            d["blocks"] = [b.to_dict() for b in self.blocks]
        return d

    def to_yaml(self) -> str:
        """Canonical YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path: str | Path) -> None:
        """Write the canonical YAML to `path`."""
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "spec") -> "ViTSpec":
        """Build from a plain dict (full or shorthand form); SpecError names `source` and the field."""
        return spec_from_dict(d, source)

    @classmethod
    def from_yaml(cls, text: str, source: str = "spec") -> "ViTSpec":
        """Parse YAML text; SpecError names `source`, the line or the field."""
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError(f"{source}: not valid YAML: {e}") from None
        return spec_from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> "ViTSpec":
        """Read a spec YAML file."""
        p = Path(path)
        if not p.is_file():
            raise SpecError(f"{p}: spec file not found")
        return cls.from_yaml(p.read_text(), source=str(p))


def validate_spec(s: ViTSpec) -> None:
    """Check every field and the token schedule; raise SpecError naming the field."""
    for fname in ("image_size", "in_channels", "patch_size", "embed_dim", "num_classes"):
        v = getattr(s, fname)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise SpecError(f"{s.name or 'spec'}: {fname} must be a positive integer (got {v!r})")
    if s.image_size % s.patch_size:
        raise SpecError(f"{s.name or 'spec'}: patch_size {s.patch_size} does not divide image_size {s.image_size}")
    if s.pool not in POOLS:
        raise SpecError(f"{s.name or 'spec'}: pool must be one of {POOLS} (got {s.pool!r})")
    if not isinstance(s.distill_token, bool):
        raise SpecError(f"{s.name or 'spec'}: distill_token must be true or false (got {s.distill_token!r})")
    if s.distill_token and s.pool == "mean":
        raise SpecError(f"{s.name or 'spec'}: distill_token: true needs pool 'cls' or 'cls_dist' (got pool "
                        f"'mean': a distillation token sits behind the class token)")
    if s.pool == "cls_dist" and not s.distill_token:
        raise SpecError(f"{s.name or 'spec'}: pool 'cls_dist' averages the class and distillation heads; "
                        f"it needs distill_token: true")
    if not s.blocks:
        raise SpecError(f"{s.name or 'spec'}: a spec needs at least one block")
    for i, b in enumerate(s.blocks):
        _validate_block(b, f"{s.name or 'spec'}: blocks[{i}]")
    counts = s.tokens_per_block()
    if counts[-1] < s.num_prefix + 1:
        raise SpecError(
            f"{s.name or 'spec'}: merge_r removes too many tokens: {counts[0]} tokens in, "
            f"{counts[-1]} left after the last block; keep at least {s.num_prefix + 1}"
        )
    for i, b in enumerate(s.blocks):
        if b.merge_r and b.merge_r > (counts[i] - s.num_prefix) // 2:
            raise SpecError(
                f"{s.name or 'spec'}: blocks[{i}].merge_r = {b.merge_r} exceeds half of the "
                f"{counts[i] - s.num_prefix} mergeable tokens entering the block"
            )


def _validate_block(b: BlockSpec, where: str) -> None:
    for fname in ("heads", "head_dim", "mlp_hidden"):
        v = getattr(b, fname)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise SpecError(f"{where}.{fname} must be a positive integer (got {v!r})")
    if not isinstance(b.merge_r, int) or b.merge_r < 0:
        raise SpecError(f"{where}.merge_r must be an integer >= 0 (got {b.merge_r!r})")
    for k, r in b.ranks.items():
        if k not in LINEARS:
            raise SpecError(f"{where}.ranks: unknown linear {k!r}; expected one of {LINEARS}")
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise SpecError(f"{where}.ranks.{k} must be a positive integer (got {r!r})")


def _block_from_dict(d: Any, where: str) -> BlockSpec:
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping with heads, head_dim, mlp_hidden (got {d!r})")
    unknown = set(d) - {"heads", "head_dim", "mlp_hidden", "ranks", "merge_r"}
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {sorted(unknown)}")
    for req in ("heads", "head_dim", "mlp_hidden"):
        if req not in d:
            raise SpecError(f"{where}.{req}: missing")
    ranks = d.get("ranks") or {}
    if not isinstance(ranks, dict):
        raise SpecError(f"{where}.ranks: expected a mapping like {{qkv: 16}} (got {ranks!r})")
    b = BlockSpec(heads=d["heads"], head_dim=d["head_dim"], mlp_hidden=d["mlp_hidden"],
                  ranks=dict(ranks), merge_r=d.get("merge_r", 0))
    _validate_block(b, where)
    return b


def _expand_shorthand(d: dict[str, Any], src: str) -> list[BlockSpec]:
    if "depth" not in d or "heads" not in d:
        raise SpecError(f"{src}: give either `blocks:` or the uniform shorthand `depth`, `heads`, ...")
    embed = d.get("embed_dim")
    heads = d["heads"]
    head_dim = d.get("head_dim")
    if head_dim is None:
        if not isinstance(embed, int) or not isinstance(heads, int) or heads <= 0 or embed % heads:
            raise SpecError(f"{src}: head_dim missing and embed_dim {embed!r} is not divisible by heads {heads!r}")
        head_dim = embed // heads
    if "mlp_hidden" in d and "mlp_ratio" in d:
        raise SpecError(f"{src}: give mlp_hidden or mlp_ratio, not both")
    hidden = d.get("mlp_hidden")
    if hidden is None:
        ratio = d.get("mlp_ratio", 4)
        if not isinstance(embed, int) or not isinstance(ratio, (int, float)) or ratio <= 0:
            raise SpecError(f"{src}: mlp_ratio must be a positive number (got {ratio!r})")
        hidden = int(round(embed * ratio))
    block = {"heads": heads, "head_dim": head_dim, "mlp_hidden": hidden,
             "ranks": d.get("ranks") or {}, "merge_r": d.get("merge_r", 0)}
    depth = d["depth"]
    if not isinstance(depth, int) or depth <= 0:
        raise SpecError(f"{src}: depth must be a positive integer (got {depth!r})")
    b = _block_from_dict(block, f"{src}: (uniform block)")
    return [b] * depth


def spec_from_dict(d: Any, source: str = "spec") -> ViTSpec:
    """Build a ViTSpec from a full or shorthand dict; SpecError names `source` and the field."""
    if not isinstance(d, dict):
        raise SpecError(f"{source}: expected a mapping of spec fields (got {type(d).__name__})")
    top = {"name", "image_size", "in_channels", "patch_size", "embed_dim", "pool", "num_classes", "norm_eps", "blocks",
           "distill_token"}
    unknown = set(d) - top - set(_UNIFORM_KEYS)
    if unknown:
        raise SpecError(f"{source}: unknown field(s) {sorted(unknown)}; known: {sorted(top | set(_UNIFORM_KEYS))}")
    for req in ("image_size", "in_channels", "patch_size", "embed_dim", "num_classes"):
        if req not in d:
            raise SpecError(f"{source}: {req}: missing")
    for req in ("image_size", "in_channels", "patch_size", "embed_dim", "num_classes"):
        v = d[req]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise SpecError(f"{source}: {req} must be a positive integer (got {v!r})")
    if "blocks" in d:
        clash = set(d) & set(_UNIFORM_KEYS)
        if clash:
            raise SpecError(f"{source}: `blocks:` given together with shorthand field(s) {sorted(clash)}")
        if not isinstance(d["blocks"], list):
            raise SpecError(f"{source}: blocks must be a list of block mappings")
        blocks = [_block_from_dict(b, f"{source}: blocks[{i}]") for i, b in enumerate(d["blocks"])]
    else:
        blocks = _expand_shorthand(d, source)
    kw = {k: d[k] for k in ("image_size", "in_channels", "patch_size", "embed_dim", "num_classes") if k in d}
    try:
        return ViTSpec(
            blocks=tuple(blocks), pool=d.get("pool", "cls"), name=str(d.get("name", "") or ""),
            norm_eps=float(d.get("norm_eps", 1e-6)), distill_token=d.get("distill_token", False), **kw,
        )
    except SpecError as e:
        msg = str(e)
        raise SpecError(msg if msg.startswith(source) else f"{source}: {msg}") from None


def spec_as_json_dict(s: ViTSpec) -> dict[str, Any]:
    """Fully expanded dict (every block listed): for manifests and hashing."""
    d = asdict(s)
    if not s.distill_token:
        del d["distill_token"]  # specs without one hash as before the field existed
    d["blocks"] = [b.to_dict() | {"ranks": dict(b.ranks), "merge_r": b.merge_r} for b in s.blocks]
    return d
