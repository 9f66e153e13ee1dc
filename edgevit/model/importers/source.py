"""Any model source -> an edgevit model: the one entry point `import`, `compile` and `eval` share.

    result = import_source("vit.onnx", ImportOptions(mean=(0.5,) * 3, std=(0.5,) * 3))
    model = load_model_source("deit.pth", ImportOptions(heads=3), warn=print)   # compile / eval

A source is found by what it is, not only by its name:
- an edgevit checkpoint: a directory with spec.yaml / model.safetensors, or a .safetensors file
  whose metadata holds a spec -> loaded as is;
- an ONNX file (.onnx) -> `onnx_import.import_onnx` (checked against onnxruntime);
- a Hugging Face / timm model directory (config.json + weights) -> `torch_state.import_hf_directory`;
- a state_dict file (.pth .pt .bin .safetensors .tar .ckpt) -> `torch_state.import_state_dict`.

Preprocessing: `--mean/--std` flags win over what the source says (with a note when they differ);
when neither says anything, mean 0 / std 1 is assumed and `warn` is told so loudly (and
`save_imported` records it in the checkpoint, so later commands can say it again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgevit.data.normalize import Normalization
from edgevit.errors import CheckpointError, UserInputError
from edgevit.model.importers import ImportResult

ASSUMED = "assumed: mean 0, std 1 (nothing in the source or the flags says how inputs are normalised)"
IMAGENET_HINT = "--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 for ImageNet-trained timm models"
Warn = Callable[[str], None]


@dataclass(frozen=True)
class ImportOptions:
    """What a source cannot tell by itself: attention heads, a config file (JSON/YAML, or a Hugging
    Face / timm config.json), mean/std per channel in [0, 1] pixel units, the input side in pixels
    (ONNX graphs with a dynamic height/width)."""

    heads: int | None = None
    config: Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_size: int | None = None

    def given(self) -> list[str]:
        """The flags that were set, as command-line names (for messages)."""
        names = {"heads": "--heads", "config": "--config", "mean": "--mean", "std": "--std", "image_size": "--image-size"}
        return [flag for field, flag in names.items() if getattr(self, field) is not None]


def parse_channels(text: str | None, flag: str) -> tuple[float, ...] | None:
    """'0.485,0.456,0.406' -> (0.485, 0.456, 0.406); None stays None. UserInputError naming `flag`."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise UserInputError(f"{flag} {text!r}: expected comma-separated numbers, one per channel "
                             f"(e.g. {flag} 0.5,0.5,0.5)") from None
    if not values:
        raise UserInputError(f"{flag} is empty: give one number per channel (e.g. {flag} 0.5,0.5,0.5)")
    return values


def is_edgevit_checkpoint(path: Path) -> bool:
    """True for a directory holding spec.yaml or model.safetensors, or a .safetensors file with an edgevit spec."""
    from edgevit.model.checkpoint import SPEC_FILE, WEIGHTS_FILE, read_metadata

    if path.is_dir():
        return (path / SPEC_FILE).is_file() or (path / WEIGHTS_FILE).is_file() and not (path / "config.json").is_file()
    if path.is_file() and path.suffix == ".safetensors":
        return "spec" in read_metadata(path)
    return False


def import_source(path: str | Path, options: ImportOptions | None = None) -> ImportResult:
    """Import any supported source (module docstring) with `options`; preprocessing flags applied.

    CheckpointError / UserInputError (exit 2) for a missing or unsupported source, naming it."""
    from edgevit.model.importers.torch_state import STATE_SUFFIXES

    options = options or ImportOptions()
    path = Path(path)
    try:
        exists = path.exists()
    except OSError as e:  # e.g. a name too long for the file system
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not exists:
        raise CheckpointError(f"{path}: not found (a model: an edgevit checkpoint, an .onnx file, a .pth/.bin/"
                              ".safetensors state_dict or a Hugging Face model directory)")
    if is_edgevit_checkpoint(path):
        _refuse_options(path, options, ("heads", "config", "image_size"), "an edgevit checkpoint, whose spec says it")
        result = _edgevit(path)
    elif path.suffix.lower() == ".onnx":
        _refuse_options(path, options, ("heads", "config"), "an ONNX graph, whose shapes and nodes say it")
        from edgevit.model.importers.onnx_import import import_onnx

        result = import_onnx(path, image_size=options.image_size)
    elif path.is_dir():
        if options.config is not None:
            raise UserInputError(f"--config: {path} is a model directory; its config.json is read (drop --config)")
        from edgevit.model.importers.torch_state import import_hf_directory

        result = import_hf_directory(path, heads=options.heads)
    elif path.suffix.lower() in STATE_SUFFIXES:
        from edgevit.model.importers.torch_state import import_state_dict

        result = import_state_dict(path, heads=options.heads, config=options.config)
    else:
        raise CheckpointError(f"{path}: not a model edgevit can read: expected an edgevit checkpoint (directory or "
                              f".safetensors), an .onnx file, a state_dict ({' '.join(STATE_SUFFIXES)}) or a "
                              "Hugging Face model directory (config.json + weights)")
    _check_image_size(result, options)
    _apply_preprocess_flags(result, options)
    return result


def load_model_source(path: str | Path, options: ImportOptions | None = None, warn: Warn | None = None):
    """The eval-mode VisionTransformer of any source (compile / eval import on the fly).

    `warn` hears what a user must know: an assumed normalisation, the importer's notes."""
    path = Path(path)
    result = import_source(path, options)
    if warn is not None:
        for line in warnings_for(result):
            warn(line)
    return result.model


def warnings_for(result: ImportResult) -> list[str]:
    """What to say loudly about a result: the assumed normalisation (also for an edgevit checkpoint
    imported earlier without one)."""
    if result.format == "edgevit":
        recorded = result.report.get("import", {})
        if recorded and recorded.get("preprocess_source") == ASSUMED:
            return [f"{result.source} was imported from {recorded.get('source')} with its input normalisation "
                    f"{ASSUMED}; if the model was trained on normalised images, import it again with --mean/--std "
                    f"(e.g. {IMAGENET_HINT})"]
        return []
    if result.preprocess_source is None:
        return [f"{result.source}: input normalisation {ASSUMED}. If the model was trained on normalised images its "
                f"accuracy will be wrong: pass --mean and --std (e.g. {IMAGENET_HINT})"]
    return []


def save_imported(result: ImportResult, out: str | Path) -> Path:
    """Write `result` as an edgevit checkpoint (directory, or one file if `out` ends in .safetensors),
    recording where it came from, its notes and where its preprocessing came from (ASSUMED if nowhere)."""
    from edgevit.model.checkpoint import save_checkpoint

    record = {"source": result.source, "format": result.format,
              "preprocess_source": result.preprocess_source or ASSUMED, "notes": result.notes,
              "report": _jsonable(result.report)}
    return save_checkpoint(result.model, out, info={"import": record})


def _edgevit(path: Path) -> ImportResult:
    from edgevit.model.checkpoint import checkpoint_info, load_checkpoint

    model = load_checkpoint(path)
    info = checkpoint_info(path)
    record = info.get("import") if isinstance(info.get("import"), dict) else {}
    return ImportResult(model=model, source=str(path), format="edgevit",
                        preprocess_source=record.get("preprocess_source", "the edgevit checkpoint"),
                        notes=[], report={"spec": model.spec.to_dict(), **({"import": record} if record else {})})


def _refuse_options(path: Path, options: ImportOptions, fields: tuple[str, ...], why: str) -> None:
    flags = {"heads": "--heads", "config": "--config", "image_size": "--image-size"}
    given = [flags[f] for f in fields if getattr(options, f) is not None]
    if given:
        if "--image-size" in given and path.suffix.lower() == ".onnx":
            given.remove("--image-size")
        if given:
            raise UserInputError(f"{', '.join(given)}: {path} is {why}; drop {'it' if len(given) == 1 else 'them'}")


def _check_image_size(result: ImportResult, options: ImportOptions) -> None:
    spec = result.model.spec
    if options.image_size is not None and options.image_size != spec.image_size:
        raise UserInputError(f"--image-size {options.image_size}: {result.source} is a model for {spec.image_size}x"
                             f"{spec.image_size} images (its position embeddings fix it; edgevit does not resample "
                             f"them): drop --image-size or resize your data to {spec.image_size}")


def _apply_preprocess_flags(result: ImportResult, options: ImportOptions) -> None:
    if options.mean is None and options.std is None:
        return
    model, channels = result.model, result.model.spec.in_channels
    if options.mean is None or options.std is None:
        missing = "--std" if options.std is None else "--mean"
        raise UserInputError(f"{missing} is missing: give --mean and --std together, one number per channel "
                             f"({channels} for {result.source})")
    for flag, values in (("--mean", options.mean), ("--std", options.std)):
        if len(values) != channels:
            raise UserInputError(f"{flag} has {len(values)} values but {result.source} takes {channels}-channel images")
    try:
        wanted = Normalization(mean=options.mean, std=options.std)
    except Exception as e:  # Normalization validates ranges with its own errors
        raise UserInputError(f"--mean/--std: {e}") from None
    if result.preprocess_source is not None and result.format != "edgevit" and wanted != model.preprocess:
        result.notes.append(f"--mean/--std override the normalisation from {result.preprocess_source} "
                            f"(mean {list(model.preprocess.mean)}, std {list(model.preprocess.std)})")
    model.preprocess = wanted
    result.preprocess_source = "--mean/--std flags"


def _jsonable(report: dict) -> dict:
    """The report as plain JSON (numbers, strings, lists, dicts); anything else as its str()."""
    return json.loads(json.dumps(report, default=str))
