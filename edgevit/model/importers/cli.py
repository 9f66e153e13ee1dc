"""`edgevit import SOURCE --out CKPT`, and the import options `compile` and `eval` share.

    edgevit import vit.onnx --out ckpt/                       # checked against onnxruntime
    edgevit import deit_tiny.pth --heads 3 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out ckpt/
    edgevit import hf-model-dir/ --out ckpt.safetensors        # config.json + preprocessor_config.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from edgevit.model.importers.source import ImportOptions, parse_channels

HEADS = typer.Option(None, "--heads", min=1, help="Import: attention heads per block, when the source cannot tell "
                     "(a bare timm / Hugging Face state_dict without config).")
CONFIG = typer.Option(None, "--config", help="Import: a JSON/YAML file with what a state_dict cannot tell (heads, "
                      "norm_eps, global_pool, image_mean/std; a Hugging Face or timm config.json works).")
MEAN = typer.Option(None, "--mean", help="Import: per-channel mean of the input normalisation in [0, 1] pixel units, "
                    "e.g. 0.485,0.456,0.406 (overrides what the source says).")
STD = typer.Option(None, "--std", help="Import: per-channel std, e.g. 0.229,0.224,0.225 (with --mean).")
IMAGE_SIZE = typer.Option(None, "--image-size", min=1, help="Import: input height = width in pixels, for ONNX graphs "
                          "whose input size is dynamic.")


def import_options(heads: int | None, config: Path | None, mean: str | None, std: str | None,
                   image_size: int | None) -> ImportOptions:
    """ImportOptions from the command-line values (mean/std as comma-separated text)."""
    return ImportOptions(heads=heads, config=config, mean=parse_channels(mean, "--mean"),
                         std=parse_channels(std, "--std"), image_size=image_size)


def import_cmd(
    source: Path = typer.Argument(..., help="An ONNX file, a timm / Hugging Face state_dict (.pth .bin .safetensors) "
                                  "or a Hugging Face model directory."),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write: a directory, or one file ending in .safetensors."),
    heads: Optional[int] = HEADS,
    config: Optional[Path] = CONFIG,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    image_size: Optional[int] = IMAGE_SIZE,
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the import report as one JSON object."),
) -> None:
    """Import a model trained elsewhere as an edgevit checkpoint (ONNX checked against onnxruntime)."""
    from edgevit.errors import UserInputError
    from edgevit.model.importers.source import ASSUMED, import_source, save_imported, warnings_for

    from edgevit.validate import check_out

    options = import_options(heads, config, mean, std, image_size)
    check_out(out, "file" if out.suffix == ".safetensors" else "dir")  # writable, a sane name: before any work
    if out.exists() and not force:
        raise UserInputError(f"--out {out} exists: choose another place or pass --force to replace it")
    if out.exists() and out.is_dir() != (out.suffix != ".safetensors"):
        raise UserInputError(f"--out {out} exists as a {'directory' if out.is_dir() else 'file'}; a checkpoint "
                             f"{'file' if out.suffix == '.safetensors' else 'directory'} cannot replace it")
    result = import_source(source, options)
    for line in warnings_for(result):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    _save_replacing(result, out, save_imported)
    spec = result.model.spec
    if as_json:
        print(json.dumps({"out": str(out), "source": result.source, "format": result.format,
                          "spec": spec.to_dict(), "preprocess": result.model.preprocess.to_dict(),
                          "preprocess_source": result.preprocess_source or ASSUMED, "notes": result.notes,
                          "report": result.report}, default=str))
        return
    c = Console()
    c.print(f"[green]wrote[/] {out}  ({result.format}: {source})")
    c.print(f"  spec        {spec.image_size}x{spec.image_size}x{spec.in_channels}, patch {spec.patch_size}, "
            f"dim {spec.embed_dim}, depth {spec.depth}, heads {sorted({b.heads for b in spec.blocks})}, "
            f"pool {spec.pool}{', distillation token' if getattr(spec, 'distill_token', False) else ''}, "
            f"{spec.num_classes} classes")
    pre = result.model.preprocess
    c.print(f"  preprocess  mean {list(pre.mean)} std {list(pre.std)}  ({result.preprocess_source or ASSUMED})")
    for note in result.notes:
        c.print(f"  note        {note}", highlight=False)


def _save_replacing(result, out: Path, save) -> None:
    """Write the checkpoint beside `out` first, then put it in place (edgevit/atomic_write.py): an
    existing `out` (--force) is replaced only by a complete checkpoint, in one step; a failed or
    killed write leaves nothing behind once the next write has removed its leftovers."""
    from edgevit.atomic_write import write_dir_atomically

    if out.suffix == ".safetensors":
        save(result, out)  # save_checkpoint writes the single file atomically itself
    else:
        write_dir_atomically(out, lambda tmp: save(result, tmp), force=True)
