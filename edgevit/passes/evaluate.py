"""`edgevit eval`: top-1 of a checkpoint, either as the float model (torch) or after a pass pipeline
as its Program (int8 after `quant`) in the reference interpreter, plus MACs, parameters and the
weight bytes of the Program as stored.
"""

from __future__ import annotations

import sys

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgevit.data import ArrayDataset
from edgevit.data.resize import load_for_spec
from edgevit.errors import UserInputError
from edgevit.model.counts import count_macs, count_params
from edgevit.model.evaluate import predict
from edgevit.passes.pipeline import parse_pipeline, run_pipeline

EVAL_CHUNK = 500  # images per interpreter call (one progress step)


def predict_program(program, images: np.ndarray, advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Predicted labels int64 [N] of a Program (float or int8) run by the reference interpreter on
    images uint8 [N,C,H,W]; `advance(n)` is called after every chunk of n images."""
    from edgevit.lower.reference import predict_labels

    out = []
    for start in range(0, len(images), EVAL_CHUNK):
        chunk = images[start:start + EVAL_CHUNK]
        out.append(predict_labels(program, chunk))
        if advance is not None:
            advance(len(chunk))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@contextmanager
def _progress(enabled: bool) -> Iterator[tuple[Callable[[str], None], Callable[[str, int], Callable[[int], None]]]]:
    """(say(message), bar(description, total) -> advance(n)) on stderr with Rich; no-ops if disabled."""
    if not enabled:
        yield (lambda msg: None), (lambda desc, total: (lambda n: None))
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as p:
        status = p.add_task("starting", total=None)

        def say(msg: str) -> None:
            p.update(status, description=msg)

        def bar(desc: str, total: int) -> Callable[[int], None]:
            task = p.add_task(desc, total=total)
            return lambda n: p.update(task, advance=n)

        yield say, bar


def evaluate_checkpoint(path: Path, data: str, split: str = "test", limit: int | None = None,
                        data_root: Path | None = None, passes: str | None = None, compare: bool = False,
                        calib_size: int | None = None, progress: bool = False, import_options=None) -> dict:
    """Load a model (an edgevit checkpoint or any source `edgevit import` reads, imported on the fly
    with `import_options`) and report {"top1", "macs", "params", "weight_bytes", "images", "split"}.

    Without `passes` the float model is evaluated in torch and `weight_bytes` is its fp32 size.
    With `passes` (a pipeline string, e.g. "quant(w=8,a=8)") the passes run first (calibration
    images from the TRAIN split, `calib_size` overriding quant's `calib`), and the resulting
    Program (int8 after `quant`) is evaluated in the reference interpreter; "passes" and
    "reports" are added. `compare` adds "fp32_top1" and "agreement" (fraction of images on which
    the compressed and float predictions agree).
    """
    from edgevit.model.importers.source import load_model_source

    if compare and passes is None:
        raise UserInputError("--compare compares a compressed model with its float original; give --passes too")
    if passes is not None:
        parse_pipeline(passes)  # fail on a bad pipeline before loading anything
    from edgevit.threads import apply_thread_policy

    apply_thread_policy()  # torch on the available cores, BLAS on one thread (edgevit/threads.py)
    model = load_model_source(path, import_options,
                              warn=lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
    splits = load_for_spec(data, model.spec, data_root, str(path))
    ds = splits.get(split)
    if limit is not None:
        ds = ds.take(limit)
    if passes is None:
        from edgevit.lower.from_model import lower_float

        pred = predict(model, ds)
        return {"top1": _top1(pred, ds), "macs": count_macs(model.spec), "params": count_params(model.spec),
                "weight_bytes": lower_float(model).weight_bytes(), "images": len(ds), "split": split}
    with _progress(progress) as (say, bar):
        return evaluate_passes(model, passes, splits.train, ds, split, compare, calib_size, say, bar)


def evaluate_passes(model, passes: str, calib: ArrayDataset, ds: ArrayDataset, split: str, compare: bool,
                    calib_size: int | None, say, bar) -> dict:
    """Run a pipeline on `model` and evaluate its Program on `ds` (see evaluate_checkpoint)."""
    from edgevit.lower import lower

    steps = parse_pipeline(passes)
    if calib_size is not None:
        steps = [(n, {**o, "calib": calib_size} if "calib" in o else o) for n, o in steps]
    result, reports = run_pipeline(model, steps, calib, progress=say)
    program = lower(result)
    say(f"evaluating the {program.meta.get('lowering', 'float')} program")
    pred = predict_program(program, ds.images, bar(f"{split} images", len(ds)))
    out = {"top1": _top1(pred, ds), "macs": program.macs(), "params": count_params(result.spec),
           "weight_bytes": program.weight_bytes(), "images": len(ds), "split": split, "passes": passes,
           "reports": [r.to_dict() for r in reports]}
    if compare:
        ref = predict(model, ds)
        out["fp32_top1"] = _top1(ref, ds)
        out["agreement"] = round(float((pred == ref).mean()), 6) if len(ds) else 0.0
    return out


def _top1(pred: np.ndarray, ds: ArrayDataset) -> float:
    """Top-1 of predicted labels against `ds`'s labels, rounded to 6 digits (0.0 when empty)."""
    return round(float((pred == ds.labels).mean()), 6) if len(ds) else 0.0
