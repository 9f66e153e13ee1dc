"""The ssh runner of cpu artifacts: built here with the profile's toolchain, run on a real board over ssh.

    ssh BOARD 'uname -m; uname -n; cat /proc/cpuinfo'   # refuse a board that cannot run the profile's code
    make -C <tmp>                                       # the artifact's Makefile (cross gcc for Arm profiles)
    ssh BOARD 'mktemp -d'; scp check bench BOARD:DIR/   # a fresh directory on the board
    ssh BOARD 'cd DIR && ./check COUNT'                 # the EV lines, checked like the host runner's
    ssh BOARD 'cd DIR && ./bench RUNS 20 [THREADS]'     # one EV-BENCH line: latency measured on the board
    ssh BOARD 'rm -rf DIR'                              # always, also when the run failed

The board: `--ssh-host`, `--ssh-user`, `--ssh-port`, `--ssh-key`, `--ssh-known-hosts`,
`--ssh-host-key-check` (defaults from EDGEVIT_SSH_HOST, EDGEVIT_SSH_USER, EDGEVIT_SSH_PORT,
EDGEVIT_SSH_KEY, EDGEVIT_SSH_KNOWN_HOSTS, EDGEVIT_SSH_HOST_KEY_CHECK; ~/.ssh/config applies as
usual). ssh never prompts (BatchMode=yes: keys or an agent only), gives up connecting after
CONNECT_TIMEOUT_S, and checks host keys with StrictHostKeyChecking=accept-new against its own
known_hosts file in the user cache directory (~/.cache/edgevit/ssh_known_hosts) unless told
otherwise. The board needs a POSIX shell, `mktemp` and an SFTP server (OpenSSH's scp uses SFTP).

Like the host runner it takes `bench_runs` (--bench-runs, default 200; 0: no bench) and `threads`
(--threads) and adds the bench program's figures (targets/cpu/bench.py: latency_ms_median,
latency_ms_p90, ..., peak_rss_bytes) measured on the board to the result. A board that cannot be
reached (refused, unreachable, authentication, host key) is a BoardConnectionError (exit 2)
saying which, with ssh's own message; a board of another architecture, or one lacking an ISA
extension the artifact was compiled for, is refused before anything is built. EV ticks are 0.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from edgevit.backend.errors import RunFailedError
from edgevit.backend.process import ProcessOutput, Tool, run_process, show_command
from edgevit.backend.runner import RunOutput, Stage, build_directory, failed_run
from edgevit.errors import UserInputError
from edgevit.targets.cpu import bench
from edgevit.targets.cpu.isa import ARM64, X86, missing_on_host, missing_target_features, parse_cpuinfo, profile_arch
from edgevit.targets.cpu.runners.cpu_runner import EXECUTABLE, CpuRunner
from edgevit.targets.cpu.runners.qemu import CROSS_PACKAGES

CONNECT_TIMEOUT_S = 10
SSH_STEP_TIMEOUT_S = 60.0  # probing, mkdir, cleanup
COPY_TIMEOUT_S = 300.0
SSH_FAILED = 255  # ssh's own exit status when it (not the remote command) failed
HOST_KEY_CHECKS = ("accept-new", "yes", "no")
ENV = {"host": "EDGEVIT_SSH_HOST", "user": "EDGEVIT_SSH_USER", "port": "EDGEVIT_SSH_PORT", "key": "EDGEVIT_SSH_KEY",
       "known_hosts": "EDGEVIT_SSH_KNOWN_HOSTS", "host_key_check": "EDGEVIT_SSH_HOST_KEY_CHECK"}
UNAME_ARCH = {"x86_64": X86, "amd64": X86, "aarch64": ARM64, "arm64": ARM64}

# (what went wrong, what ssh says, what to do): the first match names a failed connection.
CONNECTION_FAILURES = (
    ("connection refused", ("connection refused",),
     "nothing accepts ssh connections on that port: is sshd running on the board, is --ssh-port right?"),
    ("unknown host name", ("could not resolve hostname", "name or service not known",
                           "temporary failure in name resolution"),
     "check --ssh-host (a name this machine can resolve, or the board's IP address)"),
    ("host unreachable", ("no route to host", "network is unreachable", "connection timed out",
                          "operation timed out"),
     "check --ssh-host, that the board is powered and on the network"),
    ("authentication failed", ("permission denied", "too many authentication failures", "authentication failed",
                               "no supported authentication methods"),
     "ssh runs with BatchMode=yes (no password prompts): pass --ssh-key with a private key whose public half is "
     "in the board's ~/.ssh/authorized_keys, or load it into ssh-agent; check --ssh-user"),
    ("host key verification failed", ("host key verification failed", "remote host identification has changed"),
     "the board's host key is unknown or changed: check the board, then fix its entry in the known_hosts file "
     "(--ssh-known-hosts) or pass --ssh-host-key-check accept-new"),
    ("connection closed", ("connection closed by", "connection reset", "kex_exchange_identification",
                           "broken pipe"),
     "the board closed the connection: check its sshd log and that it allows this user"),
)


class BoardConnectionError(UserInputError):
    """ssh could not reach or log in to the board (the message says which and why). Exit code 2."""


def default_known_hosts() -> Path:
    """The ssh runner's own known_hosts file: $XDG_CACHE_HOME/edgevit/ssh_known_hosts (~/.cache by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "edgevit" / "ssh_known_hosts"


def _setting(value, name: str):
    """`value`, or the environment variable ENV[name] when value is None (None when unset or empty)."""
    if value is not None:
        return value
    return os.environ.get(ENV[name]) or None


def _port(value) -> int:
    """A TCP port from an option or the environment; UserInputError naming both otherwise."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise UserInputError(f"--ssh-port / {ENV['port']} must be a TCP port 1..65535 (got {value!r})")
    return port


@dataclass(frozen=True)
class SshBoard:
    """Where and how to reach a board over ssh; builds the ssh / scp command lines."""

    host: str
    user: str | None = None
    port: int = 22
    key: Path | None = None
    known_hosts: Path | None = None  # None: default_known_hosts()
    host_key_check: str = "accept-new"
    connect_timeout: int = CONNECT_TIMEOUT_S

    @property
    def destination(self) -> str:
        """user@host (or just host: ssh then uses ~/.ssh/config or the local user name)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        """user@host:port, for messages."""
        return f"{self.destination}:{self.port}"

    def options(self) -> list[str]:
        """The -o options of every ssh and scp call (no prompts, a connect timeout, host keys, the key)."""
        known = self.known_hosts or default_known_hosts()
        opts = {"BatchMode": "yes", "ConnectTimeout": str(self.connect_timeout),
                "StrictHostKeyChecking": self.host_key_check, "UserKnownHostsFile": str(known),
                "LogLevel": "ERROR"}  # errors only: no "Permanently added ... to the list of known hosts"
        if self.key is not None:
            opts["IdentitiesOnly"] = "yes"
        args = [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]
        return args + (["-i", str(self.key)] if self.key is not None else [])

    def ssh_command(self, remote: str) -> list[str]:
        """ssh ... BOARD -- `remote` (run by the board's login shell)."""
        return ["ssh", *self.options(), "-p", str(self.port), self.destination, "--", remote]

    def scp_command(self, files: list[Path], remote_dir: str) -> list[str]:
        """scp ... FILES BOARD:remote_dir/ (IPv6 addresses bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.user}@{host}" if self.user else host
        return ["scp", "-q", *self.options(), "-P", str(self.port), *map(str, files), f"{where}:{remote_dir}/"]

    def prepare(self) -> None:
        """Create the known_hosts file's directory (ssh adds accepted keys to the file itself)."""
        (self.known_hosts or default_known_hosts()).parent.mkdir(parents=True, exist_ok=True)

    def connection_error(self, out: ProcessOutput, known_only: bool = False) -> BoardConnectionError | None:
        """The BoardConnectionError for an ssh/scp call that ssh itself failed (exit 255 and, with
        `known_only`, one of the CONNECTION_FAILURES messages), None for the remote command's own exits."""
        if out.returncode != SSH_FAILED:
            return None
        text = out.stderr.strip()
        lower = text.lower()
        for what, needles, todo in CONNECTION_FAILURES:
            if any(n in lower for n in needles):
                return BoardConnectionError(f"ssh to the board {self.label}: {what} ({_last_line(text)}); {todo}")
        if known_only:
            return None
        return BoardConnectionError(f"ssh to the board {self.label} failed (exit {SSH_FAILED}): "
                                    f"{_last_line(text) or 'no message'}")

    def run(self, remote: str, *, timeout: float, what: str) -> ProcessOutput:
        """Run `remote` (a command that never exits 255 itself) on the board; BoardConnectionError
        when ssh could not connect or log in (other non-zero exits are returned for the caller)."""
        out = run_process(self.ssh_command(remote), cwd=Path.cwd(), timeout=timeout, what=what, check=False)
        error = self.connection_error(out)
        if error is not None:
            raise error
        return out

    def run_program(self, directory: str, argv: list[str], *, timeout: float, what: str) -> ProcessOutput:
        """Run ./argv[0] argv[1:] in `directory` on the board. Its exit status is kept as run_process
        gives it (a death by signal N, which the remote shell reports as 128+N, becomes -N, as for a
        local process); BoardConnectionError when ssh reports a failed connection."""
        words = " ".join(shlex.quote(a) for a in ["./" + argv[0], *argv[1:]])
        # `; exit $?` keeps the shell waiting for the program (no exec), so a crash is 128+N, not ssh's 255
        out = run_process(self.ssh_command(f"cd {shlex.quote(directory)} && {words}; exit $?"), cwd=Path.cwd(),
                          timeout=timeout, what=what, check=False)
        error = self.connection_error(out, known_only=True)
        if error is not None:
            raise error
        if 128 < out.returncode < 128 + 65:
            return ProcessOutput(out.stdout, out.stderr, 128 - out.returncode, out.elapsed_s)
        return out

    def copy(self, files: list[Path], remote_dir: str, *, timeout: float) -> None:
        """scp `files` into `remote_dir` on the board; BoardConnectionError / UserInputError on failure."""
        cmd = self.scp_command(files, remote_dir)
        out = run_process(cmd, cwd=Path.cwd(), timeout=timeout, what="copying to the board", check=False)
        if out.returncode != 0:
            raise self.connection_error(out) or BoardConnectionError(
                f"copying to the board {self.label} failed ({show_command(cmd)}: {_last_line(out.stderr)}); "
                "the board needs an SFTP server (OpenSSH's scp uses SFTP) and space in its temporary directory")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


@dataclass(frozen=True)
class BoardInfo:
    """What `uname -m`, `uname -n` and /proc/cpuinfo say about the board."""

    uname_m: str
    hostname: str
    cpuinfo: str

    @property
    def machine(self) -> str:
        """e.g. "aarch64 raspberrypi", the result's `machine`."""
        return f"{self.uname_m} {self.hostname}"


PROBE = "uname -m; uname -n; cat /proc/cpuinfo 2>/dev/null; true"


def parse_probe(text: str) -> BoardInfo:
    """BoardInfo from the output of PROBE (first line uname -m, second the hostname, then cpuinfo)."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise BoardConnectionError(f"the board answered `{PROBE}` with nothing usable: {text[:200]!r}")
    hostname = lines[1].strip() if len(lines) > 1 else "?"
    return BoardInfo(lines[0].strip(), hostname, "\n".join(lines[2:]))


def check_board(board: BoardInfo, profile, label: str, llvm_target: dict | None = None) -> None:
    """UserInputError when the board cannot run code compiled for `profile`: another architecture
    (`uname -m`), or an ISA extension / psABI level of the profile (or an x86 feature of the
    artifact's `llvm_target`, its manifest's) its /proc/cpuinfo lacks."""
    want = profile_arch(profile)
    arch = UNAME_ARCH.get(board.uname_m.lower())
    if arch != want:
        hint = (" (a 32-bit OS on a 64-bit Arm board? the cpu backend needs a 64-bit OS)"
                if board.uname_m.lower().startswith("arm") and want == ARM64 else "")
        raise UserInputError(f"the board {label} is {board.uname_m}{hint} but profile {profile.name!r} compiles "
                             f"{want} code; compile for a profile of the board's architecture (`edgevit profiles`) "
                             "or choose another --ssh-host")
    isa = parse_cpuinfo(board.cpuinfo, board.uname_m)
    if not isa.features:
        return  # no readable /proc/cpuinfo: the architecture is all we can check
    missing = missing_on_host(profile, isa) + missing_target_features(llvm_target or {}, isa)
    if missing:
        raise UserInputError(f"the board {label} ({board.machine}) lacks {', '.join(missing)}, which the artifact "
                             f"(profile {profile.name!r}, isa {profile.isa}) was compiled for; compile for a profile "
                             "that matches the board (e.g. rpi4 for a Cortex-A72), on x86 on a machine no newer "
                             "than the board")


class CpuSshRunner(CpuRunner):
    """Build locally with the profile's toolchain, run check and bench on a board over ssh."""

    name = "ssh"
    description = "a real board over ssh/scp (--ssh-host ...): built here, check and bench run there"

    def __init__(self, *, ssh_host: str | None = None, ssh_user: str | None = None, ssh_port: int | None = None,
                 ssh_key: str | Path | None = None, ssh_known_hosts: str | Path | None = None,
                 ssh_host_key_check: str | None = None, bench_runs: int = bench.DEFAULT_RUNS,
                 threads: int | None = None, **options) -> None:
        """The board's address and credentials; each None falls back to its EDGEVIT_SSH_* variable
        (ssh_port: 22, ssh_host_key_check: accept-new). bench_runs: timed runs of the bench program
        on the board (0: none); threads: its thread count (None: the artifact's default). Bad values
        are UserInputErrors here; a missing host is reported by `check`."""
        bench.check_bench_options(bench_runs, threads)
        super().__init__(**options)
        self.bench_runs, self.threads = bench_runs, threads
        key = _setting(ssh_key, "key")
        known = _setting(ssh_known_hosts, "known_hosts")
        mode = _setting(ssh_host_key_check, "host_key_check") or "accept-new"
        if mode not in HOST_KEY_CHECKS:
            raise UserInputError(f"--ssh-host-key-check / {ENV['host_key_check']} must be one of "
                                 f"{', '.join(HOST_KEY_CHECKS)} (got {mode!r})")
        if key is not None and not Path(key).expanduser().is_file():
            raise UserInputError(f"--ssh-key / {ENV['key']}: no such private key file {str(key)!r}")
        host = _setting(ssh_host, "host")
        self.board = None if host is None else SshBoard(
            host=host, user=_setting(ssh_user, "user"), port=_port(_setting(ssh_port, "port") or 22),
            key=Path(key).expanduser() if key is not None else None,
            known_hosts=Path(known).expanduser() if known is not None else None, host_key_check=mode)
        self._machine: str | None = None

    @classmethod
    def supports_bench(cls) -> bool:
        """The ssh runner measures latency on the board with the artifact's bench program."""
        return True

    def tools(self, profile) -> list[Tool]:
        """make, the profile's C compiler (cross for Arm profiles), ssh and scp."""
        cc = profile.toolchain.cc
        return [Tool("make", "to build the library", "make"),
                Tool(cc, "the profile's C compiler", CROSS_PACKAGES.get(cc, "gcc")),
                Tool("ssh", "to run on the board", "openssh-client"),
                Tool("scp", "to copy the programs to the board", "openssh-client")]

    def check(self, artifact, profile) -> None:
        """UserInputError without a board (--ssh-host / EDGEVIT_SSH_HOST), then the tools and files."""
        if self.board is None:
            raise UserInputError(f"--runner ssh needs the board's address: pass --ssh-host HOST (and --ssh-user, "
                                 f"--ssh-port, --ssh-key as needed) or set {ENV['host']}")
        profile_arch(profile)
        super().check(artifact, profile)

    def execute(self, artifact, profile, count: int, timeout: float, stage: Stage) -> RunOutput:
        """Probe the board, build here, copy check (and bench) to a fresh directory on the board, run
        them there and remove the directory. BoardConnectionError / UserInputError (exit 2),
        RunFailedError (exit 1)."""
        board = self.board
        board.prepare()
        stage(f"connecting to {board.label}")
        probe = board.run(PROBE, timeout=SSH_STEP_TIMEOUT_S, what=f"probing the board {board.label}")
        info = parse_probe(probe.stdout)
        check_board(info, profile, board.label, artifact.manifest.get("llvm_target"))
        self._machine = info.machine
        with build_directory(self.keep_build) as workdir:
            artifact.copy_build_tree(workdir, self.build_dirs)
            stage(f"building for {info.uname_m}")
            programs = [self.make_check(workdir, {}, "library build (Makefile)")] + self._bench_program(workdir)
            remote = self._remote_dir(board)
            try:
                stage(f"copying {' and '.join(p.name for p in programs)} to {board.label}:{remote}")
                board.copy(programs, remote, timeout=COPY_TIMEOUT_S)
                stage(f"running {count} vector{'s' if count != 1 else ''} on {board.label}")
                out = board.run_program(remote, [EXECUTABLE, str(int(count))], timeout=timeout,
                                        what=f"the run on {board.label}")
                if out.returncode != 0:
                    raise failed_run(self.source(profile), out)
                extra = self._bench(board, remote, info, timeout, stage)
            finally:
                self._remove(board, remote)
        return RunOutput(out.stdout, self.source(profile), out.elapsed_s, self.keep_build, extra)

    def _bench_program(self, workdir: Path) -> list[Path]:
        """[the built bench program], [] with bench_runs 0; RunFailedError when the Makefile made none."""
        if self.bench_runs == 0:
            return []
        exe = workdir / bench.EXECUTABLE
        if not exe.is_file():
            raise RunFailedError(f"the Makefile finished without producing {bench.EXECUTABLE}; the artifact is broken "
                                 "or older than the bench program: recompile it with `edgevit compile`")
        return [exe]

    def _bench(self, board: SshBoard, remote: str, info: BoardInfo, timeout: float, stage: Stage) -> dict:
        """Run the copied bench program on the board; its figures as result keys (bench.bench_result)."""
        if self.bench_runs == 0:
            return {"bench_runs": 0, "latency_note": "not measured: --bench-runs 0 skipped the bench program"}
        stage(f"timing {self.bench_runs} runs on {board.label}")
        args = bench.bench_command(self.bench_runs, bench.DEFAULT_WARMUP, self.threads)
        out = board.run_program(remote, [bench.EXECUTABLE, *args], timeout=timeout, what=f"the bench on {board.label}")
        source = f"ssh {board.label} {bench.EXECUTABLE}"
        if out.returncode != 0:
            raise failed_run(source, out)
        return bench.bench_result(bench.parse_bench(out.stdout, source=f"{source} output"),
                                  f"the board {board.label} ({info.machine})")

    def _remote_dir(self, board: SshBoard) -> str:
        """A fresh directory on the board (mktemp -d under $TMPDIR or /tmp)."""
        out = board.run('mktemp -d "${TMPDIR:-/tmp}/edgevit-run.XXXXXX"', timeout=SSH_STEP_TIMEOUT_S,
                        what="making a directory on the board")
        path = out.stdout.strip()
        if out.returncode != 0 or not path.startswith("/"):
            raise BoardConnectionError(f"could not make a temporary directory on the board {board.label} "
                                       f"(`mktemp -d`: {_last_line(out.stderr + out.stdout) or 'no output'})")
        return path

    @staticmethod
    def _remove(board: SshBoard, remote: str) -> None:
        """rm -rf the run's directory on the board (best effort: a failure here must not hide the run's)."""
        try:
            board.run(f"rm -rf {shlex.quote(remote)}", timeout=SSH_STEP_TIMEOUT_S, what="cleaning up the board")
        except Exception:  # noqa: BLE001 - the directory is in the board's temp dir anyway
            pass

    def machine(self, profile) -> str | None:
        """The board's `uname -m` and hostname, e.g. "aarch64 raspberrypi" (known once it ran)."""
        return self._machine

    def source(self, profile) -> str:
        """e.g. "ssh pi@board:22 check"."""
        return f"ssh {self.board.label if self.board else '?'} {EXECUTABLE}"
