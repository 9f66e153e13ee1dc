"""`edgevit emulate DIR --port PORT`: run an artifact on its emulated board with the board's serial
port on a TCP socket, for the serial runner, the fault proxy or a terminal to talk to.

    edgevit emulate out/tiny --port 5555      # listening on socket://127.0.0.1:5555 (Ctrl-C stops it)
    edgevit run out/tiny --runner serial --port socket://127.0.0.1:5555

The command knows no target: it loads the artifact, finds the Target its manifest names and
calls `Target.serve_emulated(artifact, port, ready=..., stage=...)` (the MCU target builds the
UART firmware and runs it on QEMU; others raise UserInputError, exit 2).
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer


def emulate_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory written by `edgevit compile`."),
    port: int = typer.Option(0, "--port", min=0, max=65535,
                             help="TCP port on 127.0.0.1 for the board's serial port (0: any free port)."),
) -> None:
    """Run the artifact's firmware on its emulated board, serial port on socket://127.0.0.1:PORT, until Ctrl-C."""
    from rich.console import Console

    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.target import get_target

    console, err = Console(), Console(stderr=True)
    art = load_artifact(artifact)
    target = get_target(art.target_info()["kind"])

    def ready(url: str) -> None:
        status.stop()
        console.print(f"listening on {url}", highlight=False)
        err.print("Ctrl-C stops the board", style="dim")

    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the board as Ctrl-C does
    try:
        with err.status("starting") as status:
            target.serve_emulated(art, port, ready=ready, stage=status.update)
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
