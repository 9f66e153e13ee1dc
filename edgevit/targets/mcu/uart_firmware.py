"""The UART firmware of an artifact: built for QEMU's board or the real chip, and run on QEMU with
its UART on a TCP socket (docs/serial-protocol.md is what it speaks).

    elf = build_uart_firmware(artifact, profile, Path("build"), for_board=False)   # make uart
    with qemu_uart(profile, elf) as port:                                          # QEMU, UART on a socket
        ...  # socket://127.0.0.1:<port>: transport.open_link(...), FrameClient(...)
    elf = build_uart_firmware(artifact, profile, Path("b"), for_board=True)      # make board: + .bin, .hex

for_board=False uses emulator.uart and QEMU's memory map (linker.ld), SysTick ticks;
for_board=True uses board.uart, the chip's flash at board.load_address (linker_board.ld) and
DWT CYCCNT when board.cycle_counter is dwt. Neither links semihosting (newlib's nosys).

QEMU: `-chardev socket,...,server=on,wait=off,nodelay=on -serial chardev:u0 -icount shift=0`
(../shared/QEMU-NOTES.md): the guest starts at once, so the EV-READY banner is printed before a
client connects and is lost; hosts start a session with HELLO (frame mode) or `RUN n` (text mode).
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from edgevit.backend.errors import RunFailedError, ToolchainError
from edgevit.backend.process import require_tools, run_make
from edgevit.errors import UserInputError
from edgevit.targets.mcu.project import firmware_makefile
from edgevit.targets.mcu.runners.mcu_runner import APT_PACKAGES, mcu_tool
from edgevit.targets.mcu.runners.qemu import emulator_binary
from edgevit.targets.mcu.uart_project import uart_of, uart_project_files

Stage = Callable[[str], None]
QEMU_START_TIMEOUT_S = 10.0
QEMU_STOP_TIMEOUT_S = 5.0
ELF = {False: "firmware_uart.elf", True: "firmware_board.elf"}


def build_uart_firmware(artifact, profile, workdir: Path, *, for_board: bool, stage: Stage | None = None,
                        count: int | None = None, extra_cflags: str = "") -> Path:
    """Copy the artifact's src/ and firmware/ into `workdir` (created), add the UART firmware's files
    for `profile` (uart_project.uart_project_files, firmware/Makefile) and build it: `make uart`
    (for_board=False, QEMU) or `make board` (for_board=True: also firmware_board.bin and .hex beside
    the ELF). Returns the ELF's path.

    `artifact`: an Artifact or its directory; `profile`: a Profile, a shipped name or a YAML path
    (None: the artifact's own). `count`: bundled vectors the firmware holds (default: all);
    `extra_cflags`: added to the compiler flags (e.g. -Werror). UserInputError for a profile without
    the UART the build needs or of another core than the artifact's; ToolchainError for missing
    tools; RunFailedError with the compiler's output when the build fails."""
    from edgevit.backend.artifact import Artifact, load_artifact
    from edgevit.profiles.profile import load_profile

    say = stage or (lambda message: None)
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    prof = load_profile(profile) if profile is not None else art.profile()
    _check_profile(art, prof)
    uart_of(prof, for_board=for_board)
    require_tools([mcu_tool("make", "to build the firmware"),
                   mcu_tool(prof.toolchain.cc, f"the cross compiler of profile {prof.name}")], "UART firmware")
    _require_nosys(prof.toolchain.cc)
    art.require("firmware/Makefile", "src/model.c", why="the UART firmware build")
    bundled = int(art.manifest.get("vectors", {}).get("count", 0))
    if count is not None and not 1 <= count <= bundled:
        raise UserInputError(f"count {count}: the artifact bundles {bundled} test vectors; use 1..{bundled}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    art.copy_build_tree(workdir, ("src", "firmware"))
    memory = art.manifest["memory"]
    files = uart_project_files(prof, memory["arena_bytes"], memory["stack_bytes"])
    files["firmware/Makefile"] = firmware_makefile(prof, bundled)
    for rel, text in files.items():
        (workdir / rel).write_text(text)
    goal = "board" if for_board else "uart"
    say(f"building the {prof.name} UART firmware ({'the real chip' if for_board else 'QEMU'}: make {goal})")
    variables = {"EDGEVIT_COUNT": str(count or bundled)}
    if extra_cflags:
        variables["EXTRA_CFLAGS"] = extra_cflags
    run_make(workdir / "firmware", variables, what=f"UART firmware build (make {goal})", goals=(goal,))
    elf = workdir / "firmware" / ELF[for_board]
    products = [elf] + ([elf.with_suffix(".bin"), elf.with_suffix(".hex")] if for_board else [])
    for path in products:
        if not path.is_file():
            raise RunFailedError(f"`make {goal}` finished without writing firmware/{path.name}")
    return elf


def _check_profile(art, profile) -> None:
    """UserInputError unless `profile` is an MCU profile for the artifact's core and ISA."""
    if profile.kind != "mcu" or profile.emulator.kind != "qemu-system":
        raise UserInputError(f"profile {profile.name!r} is a {profile.kind} profile; the UART firmware is for mcu "
                             "profiles")
    built = art.manifest.get("profile", {})
    if built.get("core") and (built.get("core"), list(built.get("isa", []))) != (profile.core, list(profile.isa)):
        raise UserInputError(f"the artifact was compiled for profile {built.get('name')!r} ({built.get('core')}), "
                             f"not for {profile.name!r} ({profile.core}, isa {', '.join(profile.isa)}); compile it "
                             f"for {profile.name!r} or use a profile of the same core")


def _require_nosys(cc: str) -> None:
    """ToolchainError when the cross compiler has no newlib nosys.specs (the UART firmware links it)."""
    try:
        found = subprocess.run([cc, "-print-file-name=nosys.specs"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return  # the compiler itself reports the problem at build time
    if found in ("", "nosys.specs"):
        raise ToolchainError(f"`{cc}` has no newlib nosys.specs, which the UART firmware links against; install "
                             f"with `sudo apt-get install {APT_PACKAGES.get(cc, cc)}`")


class EmulatedUart:
    """QEMU running a UART firmware with the board's UART on a TCP server socket at 127.0.0.1:`port`.

    start() launches it and waits until the socket listens; wait() blocks while it runs (RunFailedError
    with QEMU's stderr if it exits); stop() ends it."""

    def __init__(self, profile, elf: Path, port: int = 0) -> None:
        if profile.kind != "mcu" or profile.emulator.kind != "qemu-system":
            raise UserInputError(f"profile {profile.name!r} has no QEMU system board to run UART firmware on")
        if not Path(elf).is_file():
            raise UserInputError(f"{elf}: no such firmware ELF (build it with build_uart_firmware)")
        if not 0 <= int(port) <= 65535:
            raise UserInputError(f"--port {port}: a TCP port is 1..65535 (0: any free one)")
        self.profile, self.elf, self.requested_port = profile, Path(elf), int(port)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        """socket://127.0.0.1:PORT, for transport.open_link."""
        return f"socket://127.0.0.1:{self.port}"

    def command(self, port: int) -> list[str]:
        """The QEMU command line with the UART on a TCP server socket at `port`."""
        emu = self.profile.emulator
        cpu = ["-cpu", emu.cpu] if emu.cpu else []
        return [emulator_binary(self.profile), "-M", emu.machine, *cpu, "-display", "none", "-monitor", "none",
                "-icount", "shift=0", "-chardev",
                f"socket,id=uart0,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on",
                "-serial", "chardev:uart0", "-kernel", str(self.elf)]

    def start(self) -> "EmulatedUart":
        """Launch QEMU (retrying with another free port if a picked one was taken meanwhile)."""
        require_tools([mcu_tool(emulator_binary(self.profile), f"the emulator of profile {self.profile.name}")],
                      "qemu UART")
        if self.requested_port and _listening(self.requested_port):
            raise UserInputError(f"--port {self.requested_port}: 127.0.0.1:{self.requested_port} is already in use "
                                 "(another QEMU or server?); pick another port or 0 for any free one")
        for attempt in range(3):
            port = self.requested_port or _free_port()
            self._stderr.seek(0)
            self._stderr.truncate()
            self.process = subprocess.Popen(self.command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=self._stderr, start_new_session=True)
            if self._wait_listening(port):
                self.port = port
                return self
            text = self.stderr()
            if self.requested_port or "in use" not in text.lower() or attempt == 2:
                self.stop()
                raise RunFailedError(f"QEMU did not start with its UART on 127.0.0.1:{port} "
                                     f"({' '.join(self.command(port))}): {text.strip() or 'no message'}")
        raise AssertionError("unreachable")

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + QEMU_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _listening(port):
                return True
            time.sleep(0.02)
        return False

    def stderr(self) -> str:
        """What QEMU printed on stderr so far."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def died(self) -> RunFailedError | None:
        """The error to report if QEMU exited on its own (None while it runs)."""
        if self.process is None or self.process.poll() is None:
            return None
        return RunFailedError(f"QEMU ({self.profile.emulator.machine}, {self.elf.name}) exited with code "
                              f"{self.process.returncode}: {self.stderr().strip() or 'no message'}")

    def wait(self) -> None:
        """Block while QEMU runs; RunFailedError when it exits."""
        while self.process is not None and self.process.poll() is None:
            time.sleep(0.2)
        error = self.died()
        if error is not None:
            raise error

    def stop(self) -> None:
        """Terminate QEMU (kill it if it does not end within QEMU_STOP_TIMEOUT_S)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(QEMU_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def qemu_uart(profile, elf: Path, port: int = 0) -> Iterator[int]:
    """Run `elf` (a UART firmware built with for_board=False) on the profile's QEMU board with its UART
    on a TCP server socket at 127.0.0.1; yields the port (`port`, or a free one when 0). QEMU is stopped
    on exit; RunFailedError with QEMU's stderr if it fails to start or died meanwhile."""
    from edgevit.profiles.profile import load_profile

    board = EmulatedUart(load_profile(profile), elf, port).start()
    try:
        yield board.port
    except Exception as e:
        error = board.died()
        if error is not None:
            raise error from e  # the link failed because QEMU is gone: say why
        raise
    finally:
        board.stop()


def serve_emulated(artifact, port: int = 0, *, ready: Callable[[str], None] | None = None,
                   stage: Stage | None = None) -> None:
    """Build the artifact's UART firmware for its profile's QEMU board and run it with the UART on
    socket://127.0.0.1:`port` until interrupted (Ctrl-C) or QEMU exits (RunFailedError). `ready(url)`
    is called once QEMU listens."""
    from edgevit.backend.artifact import Artifact, load_artifact

    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    profile = art.profile()
    with tempfile.TemporaryDirectory(prefix="edgevit-emulate-") as tmp:
        elf = build_uart_firmware(art, profile, Path(tmp), for_board=False, stage=stage)
        board = EmulatedUart(profile, elf, port).start()
        try:
            (ready or (lambda url: None))(board.url)
            board.wait()
        finally:
            board.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on 127.0.0.1:`port` (from /proc/net/tcp, without connecting: QEMU's
    server takes one client, and a probe would be that client)."""
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return _connectable(port)
    for row in rows:
        fields = row.split()
        if len(fields) > 3 and fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:  # 0A: LISTEN
            return True
    return False


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
