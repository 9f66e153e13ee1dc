"""`edgevit flash DIR`: write an artifact onto its physical board through the artifact's target.

The command knows no target: it loads the artifact (verifying every digest), finds the Target
its manifest names and calls `Target.flash(artifact, tool=..., probe=..., stage=..., timeout=...)`.
The MCU target builds the board's UART firmware and runs the profile's flash tool
(targets/mcu/flash.py); targets that have nothing to flash say so (exit 2).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer


@contextmanager
def _status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """stage(message) shows the current step with a spinner on stderr (no-op when disabled)."""
    if not enabled:
        yield lambda message: None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda message: status.update(message)


def flash_cmd(
    artifact: Path = typer.Argument(..., help="Artifact directory written by `edgevit compile`."),
    tool: Optional[str] = typer.Option(None, "--tool", help="Flash tool: pyocd, openocd, st-flash or nrfjprog "
                                       "(default: the first tool of the profile's board.flash that is installed)."),
    probe: Optional[str] = typer.Option(None, "--probe", help="The debug probe's ID / serial number when several "
                                        "are connected (pyocd --uid, openocd adapter serial, st-flash --serial, "
                                        "nrfjprog --snr)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds the flash tool may take (default 300)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Build the artifact's firmware for its real board and flash it through a debug probe."""
    from rich.console import Console

    from edgevit.backend.artifact import load_artifact
    from edgevit.backend.run import check_timeout
    from edgevit.backend.target import get_target

    check_timeout(timeout)  # nan / inf / <= 0: one error before the artifact is read
    art = load_artifact(artifact)
    target = get_target(art.target_info()["kind"])
    options = {k: v for k, v in dict(tool=tool, probe=probe, timeout=timeout).items() if v is not None}
    with _status(not as_json) as stage:
        result = target.flash(art, stage=stage, **options)
    if as_json:
        print(json.dumps(result))
        return
    Console().print(f"[green]flashed[/] {artifact} onto the {result['profile']} board with {result['tool']} "
                    f"({result['image']}, {result['bytes']:,} bytes, {result['seconds']:.1f} s)")
