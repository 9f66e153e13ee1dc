"""A throw-away OpenSSH server for the ssh runner's tests: `/usr/sbin/sshd -D` on 127.0.0.1 at a free
port, as the current user, with its own host key, a client key in its AuthorizedKeysFile and a
second key that it does not accept; all files in a temporary directory.

    with local_sshd(tmp_path) as sshd:
        runner = CpuSshRunner(**sshd.runner_options())

`sshd_or_skip()` skips the calling test when sshd / ssh-keygen are not installed (Debian:
openssh-server, openssh-client) or the server does not come up.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # sshd started by root insists on it
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LocalSshd:
    """A running local sshd: where it listens and the client-side files to reach it."""

    port: int
    user: str
    client_key: Path  # accepted (in AuthorizedKeysFile)
    wrong_key: Path  # a valid key the server does not accept
    known_hosts: Path  # the test's own known_hosts file (never the user's)
    log: Path

    def runner_options(self, **overrides) -> dict:
        """Keyword arguments of CpuSshRunner that reach this server (`overrides` replace some)."""
        opts = {"ssh_host": "127.0.0.1", "ssh_port": self.port, "ssh_user": self.user, "ssh_key": self.client_key,
                "ssh_known_hosts": self.known_hosts, "ssh_host_key_check": "accept-new"}
        return {**opts, **overrides}

    def cli_args(self, **overrides) -> list[str]:
        """The `edgevit run` options that reach this server."""
        return [a for k, v in self.runner_options(**overrides).items() for a in (f"--{k.replace('_', '-')}", str(v))]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    """A new passphrase-less ed25519 key pair at `path` (+ .pub); returns `path`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgevit-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def sshd_config(root: Path, port: int) -> str:
    """The server's configuration: 127.0.0.1:port, keys only, everything under `root` (the sessions'
    $TMPDIR too: <root>/board-tmp)."""
    return "\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "StrictModes no", "UsePAM no",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", f"SetEnv TMPDIR={root / 'board-tmp'}",
        "LogLevel VERBOSE", ""])


def _wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd exited with {proc.returncode} at start: {log.read_text()[-500:] if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.skip(f"sshd did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s")


@contextmanager
def local_sshd(root: Path) -> Iterator[LocalSshd]:
    """Start sshd for the current user with files under `root`; stop it (this process only) afterwards."""
    sshd_or_skip()
    root.mkdir(parents=True, exist_ok=True)
    keygen(root / "host_key")
    client = keygen(root / "client_key")
    wrong = keygen(root / "wrong_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(sshd_config(root, port))
    (root / "board-tmp").mkdir()
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log = root / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-f", str(root / "sshd_config"), "-E", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(proc, port, log)
        yield LocalSshd(port, getpass.getuser(), client, wrong, root / "known_hosts", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sshd_or_skip() -> None:
    """Skip unless sshd, ssh, scp and ssh-keygen are installed."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is not installed (Debian: apt-get install openssh-server)")
    missing = [t for t in ("ssh", "scp", "ssh-keygen") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install openssh-client)")
