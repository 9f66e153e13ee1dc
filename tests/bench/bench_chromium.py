"""Open an HTML file in headless Chromium (Debian's `chromium`): the DOM it built and every console
message (errors, uncaught exceptions) it logged."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CONSOLE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)$")  # e.g. "[...:INFO:CONSOLE:1] \"boom\", source: ..."


def chromium_binary() -> str | None:
    """The chromium executable on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The chromium binary; skips the test (with the reason) when it is not installed."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("headless Chromium is not installed (`sudo apt-get install chromium`; `make setup` installs it)")
    return binary


@dataclass(frozen=True)
class Page:
    """What Chromium made of a file: the serialised DOM, console messages and its stderr."""

    dom: str
    console: list[str]
    stderr: str


def open_page(path: Path, timeout: float = 180.0) -> Page:
    """Load `path` in headless Chromium with --dump-dom and console logging to stderr."""
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="edgevit-chromium-") as profile:
        proc = subprocess.run([binary, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
                               "--v=0", f"--user-data-dir={profile}", "--no-first-run", "--dump-dom",
                               Path(path).resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    messages = [m.group(1) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line))]
    return Page(proc.stdout, messages, proc.stderr)
