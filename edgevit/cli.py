"""The `edgevit` command line: one Typer app; each command is a thin shell over the library.

Errors derived from `EdgevitError` are printed as one line on stderr and turned into
their exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from edgevit.errors import EdgevitError, InfeasibleError
from edgevit.model.importers import cli as imports

app = typer.Typer(
    name="edgevit",
    help="Compile vision transformers for devices with kilobytes of memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register_subapps() -> None:
    from edgevit.profiles.cli import app as profiles_app

    app.add_typer(profiles_app, name="profiles")
    from edgevit.passes.cli import app as passes_app

    app.add_typer(passes_app, name="passes")
    from edgevit.nas.cli import search_cmd

    app.command("search")(search_cmd)
    from edgevit.bench.cli import bench_cmd; app.command("bench")(bench_cmd)  # noqa: E702
    from edgevit.backend.flash_cli import flash_cmd

    app.command("flash")(flash_cmd)
    from edgevit.backend.emulate_cli import emulate_cmd

    app.command("emulate")(emulate_cmd)
    from edgevit.model.importers.cli import import_cmd

    app.command("import")(import_cmd)


@app.command()
def train(
    spec: Path = typer.Option(..., "--spec", help="ViTSpec YAML describing the architecture."),
    data: str = typer.Option("fashion-mnist", "--data", help="fashion-mnist, an ImageFolder directory or an .npz file."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory to write (resumed if it holds a run)."),
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    lr: float = typer.Option(2e-3, "--lr"),
    weight_decay: float = typer.Option(0.05, "--weight-decay"),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine (with warm-up) or onecycle."),
    seed: int = typer.Option(0, "--seed"),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint's weights."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Where the dataset files live."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: $EDGEVIT_THREADS, else the cores available)."),
    no_resume: bool = typer.Option(False, "--no-resume", help="Start over even if OUT holds a run."),
    shift: int = typer.Option(2, "--shift", min=0, help="Random translation augmentation, in pixels."),
    no_flip: bool = typer.Option(False, "--no-flip", help="No horizontal-flip augmentation."),
    warmup_epochs: float = typer.Option(1.0, "--warmup-epochs", min=0.0),
) -> None:
    """Train a ViT from a spec and write a checkpoint directory (resumable)."""
    from edgevit.model.train import TrainConfig, train_model

    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        label_smoothing=label_smoothing, schedule=schedule, seed=seed, threads=threads,
        shift=shift, flip=not no_flip, warmup_epochs=warmup_epochs,
    )
    result = train_model(spec, data, out, cfg, init=init, data_root=data_root, resume=not no_resume)
    Console().print(f"[green]wrote[/] {out}  val top-1 {result['val_top1']:.2%}  test top-1 {result['test_top1']:.2%}")


MODEL_HELP = ("Model: an edgevit checkpoint (directory or .safetensors), or any source `edgevit import` reads "
              "(.onnx, a timm / Hugging Face state_dict or model directory), imported on the fly.")


@app.command("eval")
def eval_cmd(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    data: str = typer.Option("fashion-mnist", "--data"),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate the first N images only."),
    passes: Optional[str] = typer.Option(None, "--passes", help='Compression pipeline, e.g. "quant(w=8,a=8)"; '
                                         "the result is evaluated as its (int8) Program."),
    compare: bool = typer.Option(False, "--compare", help="With --passes: also the fp32 top-1 and agreement."),
    calib_size: Optional[int] = typer.Option(None, "--calib-size", min=1,
                                             help="Calibration images from the train split (quant's calib)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
    heads: Optional[int] = imports.HEADS,
    config: Optional[Path] = imports.CONFIG,
    mean: Optional[str] = imports.MEAN,
    std: Optional[str] = imports.STD,
    image_size: Optional[int] = imports.IMAGE_SIZE,
) -> None:
    """Evaluate a model (optionally after compression passes): top-1, MACs, params, weight bytes."""
    from edgevit.passes.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(model, data, split=split, limit=limit, data_root=data_root, passes=passes,
                                 compare=compare, calib_size=calib_size, progress=True,
                                 import_options=imports.import_options(heads, config, mean, std, image_size))
    if as_json:
        print(json.dumps(result))
        return
    c = Console()
    c.print(f"[bold]{model}[/] on {data}/{split} ({result['images']} images)"
            + (f" after {passes}" if passes else ""))
    c.print(f"  top-1         {result['top1']:.2%}")
    if "fp32_top1" in result:
        c.print(f"  fp32 top-1    {result['fp32_top1']:.2%}  (agreement {result['agreement']:.2%})")
    c.print(f"  MACs          {result['macs']:,}")
    c.print(f"  params        {result['params']:,}")
    c.print(f"  weight bytes  {result['weight_bytes']:,}")


@app.command("export-onnx")
def export_onnx_cmd(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", help="ONNX file to write."),
    opset: int = typer.Option(17, "--opset"),
) -> None:
    """Export a model to ONNX (opset 17, batch dimension dynamic)."""
    from edgevit.model.importers.source import load_model_source
    from edgevit.model.onnx_export import MAX_OPSET, MIN_OPSET, export_onnx
    from edgevit.validate import check_out, int_in_range

    int_in_range(opset, "--opset", low=MIN_OPSET, high=MAX_OPSET, hint="the default 17 suits onnxruntime")
    check_out(out, "file")  # before the model loads
    export_onnx(load_model_source(model, warn=lambda m: err_console.print(f"warning: {m}", highlight=False)), out,
                opset=opset)
    Console().print(f"[green]wrote[/] {out}")


@app.command("compile")
def compile_cmd(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    profile: str = typer.Option(..., "--profile", help="Device profile: a shipped name or a YAML path."),
    out: Path = typer.Option(..., "--out", help="Artifact directory to create (must not exist)."),
    passes: Optional[str] = typer.Option(None, "--passes", help='Pipeline before lowering, e.g. "quant(w=8,a=8)".'),
    data: str = typer.Option("fashion-mnist", "--data", help="Dataset for calibration and test vectors."),
    data_root: Optional[Path] = typer.Option(None, "--data-root"),
    vectors: Optional[int] = typer.Option(None, "--vectors", help="Test images bundled with the artifact, "
                                          "1..10000 (default 50, or the whole test split when it is smaller)."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="MCU kernel schedules: fast (default) or reference."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU library: default thread count of its thread pool (EDGEVIT_DEFAULT_THREADS, default 1)."),
    calib_size: Optional[int] = typer.Option(None, "--calib-size", min=1),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    heads: Optional[int] = imports.HEADS,
    config: Optional[Path] = imports.CONFIG,
    mean: Optional[str] = imports.MEAN,
    std: Optional[str] = imports.STD,
    image_size: Optional[int] = imports.IMAGE_SIZE,
) -> None:
    """Compile a model for a device: passes, lowering, memory plan, TVM kernels, firmware artifact."""
    from edgevit.backend.compile import compile_artifact

    summary = compile_artifact(model, profile, out, passes=passes, data=data, data_root=data_root,
                               vectors=vectors, calib_size=calib_size, force=force, progress=not as_json,
                               import_options=imports.import_options(heads, config, mean, std, image_size),
                               **({"schedule": schedule} if schedule is not None else {}),
                               **({"threads": threads} if threads is not None else {}))
    if as_json:
        print(json.dumps(summary))
        return
    from edgevit.backend.compile import print_summary

    print_summary(summary, Console())


@app.command("run")
def run_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory written by `edgevit compile`."),
    runner: Optional[str] = typer.Option(None, "--runner", help="A runner of the artifact's target (default: its default runner; MCU: qemu, host, serial; CPU: host, qemu, ssh)."),
    count: Optional[int] = typer.Option(None, "--count", min=1, help="Test vectors to run (default: all bundled; with --data: test images)."),
    sanitize: bool = typer.Option(False, "--sanitize", help="Build with -fsanitize=address,undefined (runners that can; MCU: host)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds before the run is aborted (with --data: seconds allowed per image)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    bench_runs: Optional[int] = typer.Option(None, "--bench-runs", help="Runners that measure latency (CPU: host, ssh): timed runs of the bench program (default 200; 0: no bench)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Runners that measure latency: threads of the bench runs (default: the artifact's)."),
    ssh_host: Optional[str] = typer.Option(None, "--ssh-host", help="--runner ssh: the board's host name or address (default: $EDGEVIT_SSH_HOST)."),
    ssh_user: Optional[str] = typer.Option(None, "--ssh-user", help="--runner ssh: login user (default: $EDGEVIT_SSH_USER, else ssh's own default)."),
    ssh_port: Optional[int] = typer.Option(None, "--ssh-port", help="--runner ssh: ssh port (default: $EDGEVIT_SSH_PORT, else 22)."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help="--runner ssh: private key file (default: $EDGEVIT_SSH_KEY, else ssh-agent / ~/.ssh)."),
    ssh_known_hosts: Optional[Path] = typer.Option(None, "--ssh-known-hosts", help="--runner ssh: known_hosts file (default: $EDGEVIT_SSH_KNOWN_HOSTS, else ~/.cache/edgevit/ssh_known_hosts)."),
    ssh_host_key_check: Optional[str] = typer.Option(None, "--ssh-host-key-check", help="--runner ssh: StrictHostKeyChecking accept-new | yes | no (default: $EDGEVIT_SSH_HOST_KEY_CHECK, else accept-new)."),
    port: Optional[str] = typer.Option(None, "--port", help="--runner serial: the board's serial device (/dev/ttyACM0) or socket://HOST:PORT (an emulated board: `edgevit emulate DIR --port PORT`)."),
    baud: Optional[int] = typer.Option(None, "--baud", help="--runner serial: UART baud rate (default 115200)."),
    flash: bool = typer.Option(False, "--flash", help="--runner serial: build the board firmware and flash it first (the profile's flash tools)."),
    data: Optional[str] = typer.Option(None, "--data", help="Stream this data set's test images to the board instead of the bundled vectors (fashion-mnist, an image folder or an .npz; runners that stream: MCU serial). --count then counts images (default: the whole test split)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="--data: where the dataset files live."),
    results: Optional[Path] = typer.Option(None, "--results", help="--data: JSON-lines result file, resumed when rerun (default: ~/.cache/edgevit/streams/<program>-<data>.jsonl)."),
    fresh: bool = typer.Option(False, "--fresh", help="--data: start the result file over instead of resuming it."),
) -> None:
    """Run an artifact's test vectors on a runner; check outputs against the reference interpreter."""
    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.run import check_timeout, pick_runner, print_result, run_vectors
    from edgevit.errors import UserInputError
    from edgevit.validate import int_in_range

    check_timeout(timeout)
    for value, option, low, high in ((bench_runs, "--bench-runs", 0, 1_000_000), (threads, "--threads", 1, 1024),
                                     (ssh_port, "--ssh-port", 1, 65535), (baud, "--baud", 1, 100_000_000)):
        if value is not None:
            int_in_range(value, option, low=low, high=high)
    art = load_artifact(artifact)
    ssh = {k: v for k, v in dict(ssh_host=ssh_host, ssh_user=ssh_user, ssh_port=ssh_port, ssh_key=ssh_key,
                                  ssh_known_hosts=ssh_known_hosts, ssh_host_key_check=ssh_host_key_check).items()
           if v is not None}
    if ssh and runner != "ssh":
        raise UserInputError(f"{', '.join('--' + k.replace('_', '-') for k in ssh)} only apply to --runner ssh")
    serial = {k: v for k, v in dict(port=port, baud=baud, flash=flash or None).items() if v is not None}
    if serial and runner != "serial":
        raise UserInputError(f"{', '.join('--' + k for k in serial)} only apply to --runner serial")
    stream = [f"--{k.replace('_', '-')}" for k, v in dict(data_root=data_root, results=results, fresh=fresh).items() if v]
    if stream and data is None:
        raise UserInputError(f"{', '.join(stream)} only apply to a streamed run (--data NAME)")
    bench = {k: v for k, v in dict(bench_runs=bench_runs, threads=threads).items() if v is not None}
    chosen = pick_runner(art, runner, sanitize=sanitize, **ssh, **bench, **serial)
    if data is not None:
        from edgevit.backend.stream_run import run_streamed

        result = run_streamed(art, chosen, data, data_root=data_root, count=count, results=results, fresh=fresh,
                              timeout=timeout, progress=not as_json)
    else:
        result = run_vectors(art, chosen, count=count, timeout=timeout, progress=not as_json)
    if as_json:
        print(json.dumps(result))
    else:
        print_result(result, Console(), chosen)
    if result.get("matches") != result.get("count"):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: run the app, map EdgevitError to its exit code."""
    _register_subapps()
    try:
        app()  # standalone: usage errors print and exit 2 themselves
    except EdgevitError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as e:
        if _caused_by_interrupt(e):  # typer turns Ctrl-C into a silent exit 130 before we see it
            _interrupted()
        raise
    except MemoryError:
        _out_of_memory("")
    except RuntimeError as e:  # torch's allocator: "DefaultCPUAllocator: can't allocate memory: ..."
        if not any(s in str(e) for s in OOM_MESSAGES):
            raise
        _out_of_memory(str(e).split("DefaultCPUAllocator: ")[-1].split(". Error code")[0])


OOM_MESSAGES = ("can't allocate memory", "not enough memory")


def _out_of_memory(detail: str) -> None:
    """One message and exit 3 when an allocation failed (the estimates of validate.py passed, yet the
    machine or its limit had less than the command needed); the writers leave nothing behind."""
    err_console.print(f"[bold red]error:[/] out of memory{' (' + detail + ')' if detail else ''}: this machine "
                      "or its memory limit cannot hold what the command needs; use a smaller model, batch "
                      "(--batch-size) or dataset, or raise the limit.",
                      highlight=False, soft_wrap=True)
    sys.exit(InfeasibleError.exit_code)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes / contexts of `exc`."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _interrupted() -> None:
    """Say so on stderr and exit 130 (128 + SIGINT), as shells do."""
    err_console.print("interrupted", highlight=False)
    sys.exit(130)

if __name__ == "__main__":
    main()
