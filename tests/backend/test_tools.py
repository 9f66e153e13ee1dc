"""Running external programs for the runners (edgevit/backend/process.py): missing tools are one
clear error naming each binary and its package; time limits kill the whole process group."""

from __future__ import annotations

import sys

import pytest

from edgevit.backend.errors import RunFailedError, RunTimeoutError, ToolchainError
from edgevit.backend.process import Tool, exit_status, require_tools, run_process


def test_missing_tools_are_named_with_their_packages(tmp_path):
    tools = [Tool("edgevit-no-such-cc", "the cross compiler", "pkg-cc pkg-lib"),
             Tool("edgevit-no-such-emu", "the emulator"), Tool("sh", "a shell")]
    with pytest.raises(ToolchainError) as e:
        require_tools(tools, "demo", install_hint="everything: pkg-all")
    msg = str(e.value)
    assert "the demo runner needs `edgevit-no-such-cc` (the cross compiler), `edgevit-no-such-emu` (the emulator)" in msg
    assert "`sudo apt-get install pkg-cc pkg-lib edgevit-no-such-emu` (everything: pkg-all)" in msg
    assert "`sh`" not in msg and e.value.exit_code == 2


def test_found_tools_map_to_their_paths():
    found = require_tools([Tool("sh", "a shell")], "demo")
    assert found["sh"].endswith("/sh")


def test_timeout_kills_the_process_group_and_keeps_partial_output(tmp_path):
    script = "import subprocess, sys; print('started', flush=True); subprocess.run(['sleep', '60'])"
    with pytest.raises(RunTimeoutError, match=r"did not finish within 1 s(.|\n)*started") as e:
        run_process([sys.executable, "-c", script], cwd=tmp_path, timeout=1, what="the demo run")
    assert e.value.exit_code == 1


def test_nonzero_exit_is_a_failure_with_the_tail_unless_unchecked(tmp_path):
    cmd = [sys.executable, "-c", "import sys; print('last words'); sys.exit(3)"]
    with pytest.raises(RunFailedError, match=r"the demo run failed: .* exited with code 3(.|\n)*last words"):
        run_process(cmd, cwd=tmp_path, timeout=30, what="the demo run")
    out = run_process(cmd, cwd=tmp_path, timeout=30, what="the demo run", check=False)
    assert out.returncode == 3 and out.stdout == "last words\n"
    assert exit_status(-11) == "signal SIGSEGV" and exit_status(3) == "code 3"
