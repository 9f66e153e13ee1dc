"""What a user sees when a cpu artifact cannot be built or run here: one clear message on stderr and
exit code 2 from the `edgevit` command, for a missing cross compiler or qemu-aarch64 (simulated by
a PATH without them), the host runner asked to run an Arm build, a profile whose ISA this machine
cannot run (a temporary x86-64-v4 + VNNI profile on a host reported as x86-64-v3), and a board the
ssh runner cannot reach or was not told about.

The artifacts are a tiny random ViT built through the Target API (test_end_to_end.build_artifact),
so the module takes seconds, not a zoo-model compile per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgevit.profiles.profile import load_profile, profile_dir
from edgevit.targets.cpu.isa import X86_LEVELS, host_isa
from tests.targets.cpu.runners.sshd import free_port
from tests.targets.cpu.test_end_to_end import build_artifact

ROOT = Path(__file__).resolve().parents[3]
ZOO = ROOT / "models" / "fmnist-tiny"
# Runs the CLI on a host whose ISA is reported as x86-64-v3 (no AVX-512): python -c PRELUDE ARGS...
V3_HOST = ("import sys; import edgevit.targets.cpu.isa as isa; "
           "isa.host_isa = lambda: isa.HostIsa('x86_64', frozenset(isa.X86_LEVELS['x86-64-v3'])); "
           "from edgevit.cli import main; sys.argv[0] = 'edgevit'; main()")


def edgevit(*args: str, path: str | None = None, prelude: str | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (PATH replaced by `path` if given; `prelude`: python -c code that runs it)."""
    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(ROOT)}
    if path is not None:
        env["PATH"] = path
    for name in [k for k in env if k.startswith("EDGEVIT_SSH_")]:
        del env[name]
    cmd = [sys.executable, "-c", prelude, *args] if prelude else [sys.executable, "-m", "edgevit", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def assert_user_error(proc: subprocess.CompletedProcess, *phrases: str) -> str:
    """Exit code 2 and one `error:` message on stderr containing every phrase (no traceback)."""
    err = " ".join(proc.stderr.split())  # Rich may wrap
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr:\n{proc.stderr[-2000:]}"
    assert err.startswith("error:") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for phrase in phrases:
        assert phrase in err, f"{phrase!r} not in: {err}"
    return err


def bin_dir(tmp: Path, *tools: str) -> str:
    """A directory holding only symlinks to `tools` (those installed): a PATH without the others."""
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    for tool in tools:
        if shutil.which(tool):
            os.symlink(shutil.which(tool), d / tool)
    return str(d)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A tiny random float32 ViT built for the `host` and `rpi4` profiles: {profile: artifact dir}."""
    from edgevit.lower import lower_float
    from edgevit.model.spec import ViTSpec
    from edgevit.model.vit import build_model

    spec = ViTSpec.uniform(depth=1, heads=1, head_dim=4, mlp_hidden=4, image_size=4, in_channels=1, patch_size=4,
                           embed_dim=4, num_classes=4, name="err")  # as small as a ViT gets: builds in ~1 s
    program = lower_float(build_model(spec, seed=0))
    root = tmp_path_factory.mktemp("errors")
    return {p: build_artifact(program, p, root / p, count=2) for p in ("host", "rpi4")}


def test_missing_cross_compiler(artifacts, tmp_path) -> None:
    proc = edgevit("run", str(artifacts["rpi4"]), "--runner", "qemu", path=bin_dir(tmp_path, "make", "qemu-aarch64"))
    err = assert_user_error(proc, "the qemu runner needs `aarch64-linux-gnu-gcc` (the profile's cross C compiler)",
                            "apt-get install gcc-aarch64-linux-gnu")
    if shutil.which("qemu-aarch64"):
        assert "`qemu-aarch64`" not in err  # only what is missing is named


def test_missing_qemu_aarch64(artifacts, tmp_path) -> None:
    proc = edgevit("run", str(artifacts["rpi4"]), "--runner", "qemu",
                   path=bin_dir(tmp_path, "make", "aarch64-linux-gnu-gcc"))
    assert_user_error(proc, "the qemu runner needs", "`qemu-aarch64` (qemu user mode)", "apt-get install",
                      "qemu-user")


def test_host_runner_on_an_arm_build_points_to_qemu(artifacts) -> None:
    proc = edgevit("run", str(artifacts["rpi4"]), "--runner", "host")
    assert_user_error(proc, "profile 'rpi4'", "cannot run natively", "missing: arch aarch64",
                      "try `edgevit run DIR --runner qemu`")


@pytest.fixture
def vnni_profile(tmp_path) -> Path:
    """The host profile claiming x86-64-v4 and AVX-512 VNNI, as a temporary YAML."""
    data = yaml.safe_load((profile_dir() / "host.yaml").read_text())
    data.update(name="x86-vnni", description="an x86-64-v4 machine with AVX-512 VNNI",
                isa=["x86-64-v4", "avx512f", "avx512bw", "avx512_vnni"])
    path = tmp_path / "x86-vnni.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_profile(path).isa[0] == "x86-64-v4"
    return path


def _v3_prelude() -> str | None:
    """None when this host really lacks x86-64-v4 (no simulation needed), else V3_HOST."""
    return None if X86_LEVELS["x86-64-v4"] - host_isa().features else V3_HOST


def test_compiling_for_an_isa_this_host_cannot_run(vnni_profile, tmp_path) -> None:
    proc = edgevit("compile", str(ZOO), "--profile", str(vnni_profile), "--out", str(tmp_path / "out"),
                   "--vectors", "1", prelude=_v3_prelude())
    assert_user_error(proc, "profile 'x86-vnni'", "cannot run natively on this x86_64 host", "missing: avx512bw")
    assert not (tmp_path / "out").exists()


def test_running_a_build_this_host_cannot_run(artifacts) -> None:
    """The host profile's build on a host without its x86-64-v3 flags (reported as plain x86-64)."""
    no_v3 = V3_HOST.replace("X86_LEVELS['x86-64-v3']", "X86_LEVELS['x86-64']")
    proc = edgevit("run", str(artifacts["host"]), "--runner", "host", prelude=no_v3)
    assert_user_error(proc, "profile 'host'", "cannot run natively on this x86_64 host", "missing: ", "avx2")


def test_unreachable_board(artifacts) -> None:
    port = free_port()
    proc = edgevit("run", str(artifacts["host"]), "--runner", "ssh", "--ssh-host", "127.0.0.1", "--ssh-port",
                   str(port))
    assert_user_error(proc, f"ssh to the board 127.0.0.1:{port}: connection refused", "Connection refused",
                      "is sshd running on the board")


def test_no_board_given(artifacts) -> None:
    proc = edgevit("run", str(artifacts["host"]), "--runner", "ssh")
    assert_user_error(proc, "--runner ssh needs the board's address", "--ssh-host", "EDGEVIT_SSH_HOST")


def test_ssh_options_without_the_ssh_runner(artifacts) -> None:
    proc = edgevit("run", str(artifacts["host"]), "--ssh-host", "pi")
    assert_user_error(proc, "--ssh-host only apply to --runner ssh")
