"""The ssh runner of cpu artifacts (edgevit/targets/cpu/runners/ssh.py) against a real sshd that the
test starts on 127.0.0.1 (tests/targets/cpu/runners/sshd.py): fmnist-tiny int8 for the `host` profile
runs bit-exact through ssh/scp (in Python and through `edgevit run --runner ssh`), the board's
directory is removed afterwards (also after a failed run), and every way of not reaching the board
is one clear error; without sshd: options and environment defaults, ssh's options, the board
checks (architecture, ISA) and the classification of ssh's messages."""

from __future__ import annotations

import json
import os
import re
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgevit.backend.artifact import load_artifact
from edgevit.backend.compile import compile_artifact
from edgevit.backend.errors import RunFailedError, ToolchainError
from edgevit.backend.process import ProcessOutput
from edgevit.backend.run import run_vectors
from edgevit.errors import UserInputError
from edgevit.profiles.profile import load_profile
from edgevit.targets.cpu.isa import X86_LEVELS, missing_on_host
from edgevit.targets.cpu.runners.ssh import (BoardConnectionError, BoardInfo, CpuSshRunner, SshBoard, check_board,
                                             default_known_hosts, parse_probe)
from tests.targets.cpu.runners.sshd import LocalSshd, free_port, local_sshd

ROOT = Path(__file__).resolve().parents[4]
ZOO = ROOT / "models" / "fmnist-tiny"
COUNT = 6
ENV_VARS = ("EDGEVIT_SSH_HOST", "EDGEVIT_SSH_USER", "EDGEVIT_SSH_PORT", "EDGEVIT_SSH_KEY", "EDGEVIT_SSH_KNOWN_HOSTS",
            "EDGEVIT_SSH_HOST_KEY_CHECK")

needs_host = pytest.mark.skipif(bool(missing_on_host(load_profile("host"))) or shutil.which("gcc") is None,
                                reason="this machine cannot run the host profile's code (x86-64-v3 + gcc)")


@pytest.fixture(autouse=True)
def _no_ssh_environment(monkeypatch):
    """The developer's EDGEVIT_SSH_* variables must not leak into the tests."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """fmnist-tiny, quant(w=8,a=8), for the host profile with COUNT vectors (compiled once)."""
    out = tmp_path_factory.mktemp("ssh") / "tiny-int8"
    compile_artifact(ZOO, "host", out, passes="quant(w=8,a=8)", vectors=COUNT, progress=False)
    return out


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A local sshd for the whole module; the board's $TMPDIR is <root>/board-tmp."""
    with local_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def board_tmp(sshd: LocalSshd) -> Path:
    """The directory the board's runs are made in (sshd sets TMPDIR there)."""
    return sshd.log.parent / "board-tmp"


@needs_host
def test_host_artifact_runs_bit_exact_over_ssh_and_is_timed_there(artifact, sshd) -> None:
    runner = CpuSshRunner(**sshd.runner_options(), bench_runs=15, threads=1)
    result = run_vectors(load_artifact(artifact), runner, count=COUNT, progress=False)
    assert result["runner"] == "ssh" and result["dtype"] == "int8" and result["match_rule"] == "bit-exact"
    assert result["count"] == COUNT and result["matches"] == COUNT and result["max_abs_error"] == 0
    assert result["top1"] == result["reference_top1"]
    assert result["machine"] == f"{platform.machine()} {platform.node()}"
    assert result["source"] == f"ssh {sshd.user}@127.0.0.1:{sshd.port} check"
    assert board_tmp(sshd).is_dir() and not list(board_tmp(sshd).iterdir())  # the run's directory is gone
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(sshd.known_hosts)],
                           capture_output=True, text=True).stdout  # accept-new recorded the board's key
    assert (sshd.log.parent / "host_key.pub").read_text().split()[1] in found
    assert result["bench_runs"] == 15 and result["bench_warmup"] == 20 and result["threads"] == 1
    assert 0 < result["latency_ms_min"] <= result["latency_ms_median"] <= result["latency_ms_p90"]
    assert result["peak_rss_bytes"] > 0
    assert result["latency_note"].startswith(f"measured on the board {sshd.user}@127.0.0.1:{sshd.port} (x86_64 ")


@needs_host
def test_edgevit_run_cli_with_ssh_options(artifact, sshd) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert "ssh" in manifest["target"]["runners"]
    proc = subprocess.run([sys.executable, "-m", "edgevit", "run", str(artifact), "--runner", "ssh", "--count", "2",
                           "--bench-runs", "3", "--json", *sshd.cli_args()], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["runner"] == "ssh" and result["count"] == 2 and result["matches"] == 2
    assert result["bench_runs"] == 3 and result["latency_ms_median"] > 0


@needs_host
def test_environment_variables_name_the_board(artifact, sshd, monkeypatch) -> None:
    for name, value in zip(ENV_VARS, ("127.0.0.1", sshd.user, str(sshd.port), str(sshd.client_key),
                                      str(sshd.known_hosts), "accept-new")):
        monkeypatch.setenv(name, value)
    result = run_vectors(load_artifact(artifact), CpuSshRunner(bench_runs=0), count=1, progress=False)
    assert result["matches"] == 1 and result["source"].startswith(f"ssh {sshd.user}@127.0.0.1:{sshd.port}")
    assert result["bench_runs"] == 0 and "latency_ms_median" not in result and "--bench-runs 0" in result["latency_note"]


@needs_host
def test_a_failing_program_is_a_run_failure_and_the_board_is_cleaned(artifact, sshd) -> None:
    """`check 99` on a 6-vector artifact exits 2 on the board: RunFailedError with its message."""
    art = load_artifact(artifact)
    with pytest.raises(RunFailedError, match=r"(?s)ssh .*check exited with code 2.*COUNT must be 0\.\.6"):
        CpuSshRunner(**sshd.runner_options()).execute(art, art.profile(), 99, 60.0, lambda msg: None)
    assert not list(board_tmp(sshd).iterdir())


def test_a_crash_on_the_board_is_a_signal_not_a_connection_failure(sshd, tmp_path) -> None:
    """ssh exits 255 when the remote program dies by a signal; run_program reports the signal."""
    for name, body in (("crash", "kill -SEGV $$"), ("minus1", "exit 255")):
        (tmp_path / name).write_text(f"#!/bin/sh\necho before\n{body}\n")
        (tmp_path / name).chmod(0o755)
    board = CpuSshRunner(**sshd.runner_options()).board
    crash = board.run_program(str(tmp_path), ["crash"], timeout=60, what="crash")
    assert crash.returncode == -11 and crash.stdout == "before\n"
    assert board.run_program(str(tmp_path), ["minus1"], timeout=60, what="exit 255").returncode == 255


def test_a_closed_port_is_connection_refused(artifact, sshd) -> None:
    runner = CpuSshRunner(**sshd.runner_options(ssh_port=free_port()))
    with pytest.raises(BoardConnectionError, match=r"127\.0\.0\.1:\d+: connection refused \(ssh: connect to host "
                                                   r".*Connection refused\); .*--ssh-port"):
        run_vectors(load_artifact(artifact), runner, count=1, progress=False)


def test_a_key_the_board_does_not_know_is_an_authentication_failure(artifact, sshd) -> None:
    runner = CpuSshRunner(**sshd.runner_options(ssh_key=sshd.wrong_key))
    with pytest.raises(BoardConnectionError, match=r"authentication failed \(.*Permission denied \(publickey\).*"
                                                   r"BatchMode=yes.*--ssh-key"):
        run_vectors(load_artifact(artifact), runner, count=1, progress=False)


def test_a_changed_host_key_is_refused(artifact, sshd, tmp_path) -> None:
    known = tmp_path / "known_hosts"
    other = (sshd.log.parent / "client_key.pub").read_text().split()[:2]  # some other key, as the board's
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other)}\n")
    runner = CpuSshRunner(**sshd.runner_options(ssh_known_hosts=known, ssh_host_key_check="yes"))
    with pytest.raises(BoardConnectionError, match="host key verification failed"):
        run_vectors(load_artifact(artifact), runner, count=1, progress=False)


def test_a_board_of_another_architecture_is_refused_before_building(artifact, sshd) -> None:
    """The loopback board is x86-64: an rpi4 (aarch64) build is refused after `uname -m`."""
    with pytest.raises(UserInputError, match=r"the board .* is x86_64 but profile 'rpi4' compiles aarch64 code"):
        CpuSshRunner(**sshd.runner_options()).execute(load_artifact(artifact), load_profile("rpi4"), 1, 60.0,
                                                      lambda msg: None)


# --- without sshd -------------------------------------------------------------------------------------------------


def test_no_board_is_a_clear_error() -> None:
    with pytest.raises(UserInputError, match="--runner ssh needs the board's address: pass --ssh-host .*"
                                             "EDGEVIT_SSH_HOST"):
        CpuSshRunner().check(None, load_profile("host"))


def test_bad_options_name_the_option(tmp_path, monkeypatch) -> None:
    with pytest.raises(UserInputError, match=r"--ssh-port / EDGEVIT_SSH_PORT must be a TCP port 1\.\.65535"):
        CpuSshRunner(ssh_host="b", ssh_port=70000)
    monkeypatch.setenv("EDGEVIT_SSH_PORT", "ssh")
    with pytest.raises(UserInputError, match="EDGEVIT_SSH_PORT must be a TCP port .*'ssh'"):
        CpuSshRunner(ssh_host="b")
    with pytest.raises(UserInputError, match="--ssh-key / EDGEVIT_SSH_KEY: no such private key file"):
        CpuSshRunner(ssh_host="b", ssh_port=22, ssh_key=tmp_path / "nope")
    with pytest.raises(UserInputError, match="--ssh-host-key-check .* accept-new, yes, no .*'maybe'"):
        CpuSshRunner(ssh_host="b", ssh_port=22, ssh_host_key_check="maybe")
    with pytest.raises(UserInputError, match="--threads must be a whole number >= 1"):
        CpuSshRunner(ssh_host="b", threads=0)


def test_ssh_options_never_prompt_and_keep_their_own_known_hosts(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    key = tmp_path / "id"
    key.write_text("k")
    monkeypatch.setenv("EDGEVIT_SSH_HOST", "pi.local")
    monkeypatch.setenv("EDGEVIT_SSH_USER", "pi")
    board = CpuSshRunner(ssh_port=2222, ssh_key=key).board  # an option beats the environment
    assert board == SshBoard("pi.local", "pi", 2222, key)
    cmd = board.ssh_command("uname -m")
    assert cmd[0] == "ssh" and cmd[-3:] == ["pi@pi.local", "--", "uname -m"]
    text = " ".join(cmd)
    for option in ("BatchMode=yes", "ConnectTimeout=10", "StrictHostKeyChecking=accept-new", "IdentitiesOnly=yes",
                   f"UserKnownHostsFile={tmp_path / 'cache' / 'edgevit' / 'ssh_known_hosts'}", f"-i {key}", "-p 2222"):
        assert option in text
    assert default_known_hosts() == tmp_path / "cache" / "edgevit" / "ssh_known_hosts"
    scp = SshBoard("fe80::1", "pi", 22).scp_command([Path("/x/check")], "/tmp/d")
    assert scp[0] == "scp" and "-P" in scp and scp[-2:] == ["/x/check", "pi@[fe80::1]:/tmp/d/"]


@pytest.mark.parametrize("stderr, what", [
    ("ssh: connect to host b port 22: Connection timed out", "host unreachable"),
    ("ssh: connect to host b port 22: No route to host", "host unreachable"),
    ("ssh: Could not resolve hostname b: Name or service not known", "unknown host name"),
    ("Host key verification failed.", "host key verification failed"),
    ("kex_exchange_identification: Connection closed by remote host", "connection closed"),
    ("pi@b: Permission denied (publickey,password).", "authentication failed"),
    ("something new", "failed \\(exit 255\\): something new"),
])
def test_ssh_failures_are_named(stderr, what) -> None:
    error = SshBoard("b", "pi").connection_error(ProcessOutput("", stderr + "\n", 255, 0.1))
    assert isinstance(error, BoardConnectionError) and error.exit_code == 2
    assert re.search(f"ssh to the board pi@b:22:? {what}", str(error)), str(error)
    assert SshBoard("b").connection_error(ProcessOutput("", "Permission denied", 1, 0.1)) is None  # the program's


AARCH64_A72 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU part\t: 0xd08\n"


def test_board_checks_architecture_and_isa() -> None:
    check_board(BoardInfo("aarch64", "pi", AARCH64_A72), load_profile("rpi4"), "pi@b:22")
    check_board(BoardInfo("aarch64", "pi", ""), load_profile("cortex-a76"), "pi@b:22")  # no cpuinfo: arch only
    with pytest.raises(UserInputError, match=r"\(aarch64 pi\) lacks dotprod, which the artifact \(profile 'cortex-a76'"):
        check_board(BoardInfo("aarch64", "pi", AARCH64_A72), load_profile("cortex-a76"), "pi@b:22")
    with pytest.raises(UserInputError, match="is armv7l \\(a 32-bit OS .*64-bit OS\\) but profile 'rpi4'"):
        check_board(BoardInfo("armv7l", "pi", AARCH64_A72), load_profile("rpi4"), "pi@b:22")
    with pytest.raises(UserInputError, match="is aarch64 but profile 'host' compiles x86_64 code"):
        check_board(BoardInfo("aarch64", "pi", AARCH64_A72), load_profile("host"), "pi@b:22")
    vnni = {"mtriple": "x86_64-linux-gnu", "mattr": ["+avx2", "+avx512vnni"]}  # compiled on a newer machine
    x86 = "flags\t: " + " ".join(sorted(X86_LEVELS["x86-64-v3"] | {"sse4_2", "avx2", "fma"})) + "\n"
    check_board(BoardInfo("x86_64", "pc", x86), load_profile("host"), "pc:22", {"mattr": ["+avx2"]})
    with pytest.raises(UserInputError, match=r"\(x86_64 pc\) lacks avx512_vnni, which the artifact"):
        check_board(BoardInfo("x86_64", "pc", x86), load_profile("host"), "pc:22", vnni)
    info = parse_probe("aarch64\nraspberrypi\n" + AARCH64_A72)
    assert info.machine == "aarch64 raspberrypi" and "asimd" in info.cpuinfo


def test_missing_ssh_or_scp_names_the_package(tmp_path, monkeypatch) -> None:
    """Only make and gcc on PATH: ToolchainError naming ssh, scp and openssh-client."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "gcc"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ToolchainError, match=r"the ssh runner needs `ssh` .*`scp` .*apt-get install openssh-client"):
        CpuSshRunner(ssh_host="b").check(None, load_profile("host"))
