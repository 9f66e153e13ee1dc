"""The FPGA artifact's drivers: the register map agrees across registers.py, docs/fpga-isa.md and the
generated drivers; the PYNQ driver imports without pynq and, with a stand-in pynq whose overlay is the
functional simulator, runs the bundled vectors bit-exact; the bare-metal C driver compiles (both cache
branches) and, on the host against a plain memory as its register block, programs the registers and
the DDR area as the memory map says."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgevit.targets.fpga import registers
from edgevit.targets.fpga.artifact import DRIVER_FILES, MEMORY_MAP
from tests.targets.fpga.tgt_helpers import tiny_programs, write_artifact

DOC = Path(__file__).resolve().parents[3] / "docs" / "fpga-isa.md"
GCC = shutil.which("gcc")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The tiny int8 Program's artifact for pynq-z2 (3 random vectors)."""
    return write_artifact(tiny_programs()[1], "pynq-z2", tmp_path_factory.mktemp("tgtdrv") / "art")


def doc_registers() -> dict[str, int]:
    """{name: offset} from the table of docs/fpga-isa.md's "Control registers" section."""
    text = DOC.read_text()
    assert "## Control registers" in text, "docs/fpga-isa.md has no Control registers section"
    section = text.split("## Control registers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `0x([0-9A-Fa-f]+)` \| `([A-Z_]+)` \|", section, flags=re.M)
    return {name: int(off, 16) for off, name in rows}


def import_driver(path: Path, name: str = "edgevit_overlay_under_test"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_driver_files_exist(artifact):
    for rel in DRIVER_FILES:
        assert (artifact / rel).is_file() and (artifact / rel).stat().st_size > 500, rel


def test_the_pynq_driver_imports_without_pynq_and_its_offsets_are_the_docs(artifact, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)  # `import pynq` raises ImportError
    drv = import_driver(artifact / "driver/edgevit_overlay.py")
    assert drv.REGISTERS == doc_registers() == registers.offsets()
    assert (drv.CTRL_START, drv.CTRL_DONE, drv.CTRL_RESET_COUNTERS) == (registers.CTRL_START, registers.CTRL_DONE,
                                                                      registers.CTRL_RESET_COUNTERS)
    assert list(drv.COUNTERS) == list(registers.COUNTERS)
    with pytest.raises(ImportError):
        drv.EdgevitOverlay("overlay.bit")


def test_the_c_header_offsets_are_the_docs(artifact):
    header = (artifact / "driver/edgevit_overlay.h").read_text()
    found = {m[0]: int(m[1]) for m in re.findall(r"#define EDGEVIT_REG_([A-Z_]+) (\d+)u", header)}
    assert found == doc_registers()


class FakeBuffer(np.ndarray):
    """pynq.allocate's buffer: an ndarray with a physical address, flush and invalidate."""

    def flush(self):
        self.flushed = True

    def invalidate(self):
        pass

    def freebuffer(self):
        pass


def fake_pynq(artifact: Path) -> types.ModuleType:
    """A pynq stand-in: allocate gives FakeBuffers at a made-up physical address; the overlay's IP runs
    the stream on the functional simulator when CTRL.start is written (checking the registers)."""
    from edgevit.targets.fpga.config import OverlayConfig
    from edgevit.targets.fpga.fsim import run_stream

    memory_map = json.loads((artifact / MEMORY_MAP).read_text())
    cfg = OverlayConfig.from_dict(memory_map["overlay"])
    buffers = []

    def allocate(shape, dtype):
        buf = np.zeros(shape, dtype).view(FakeBuffer)
        buf.physical_address, buf.flushed = 0x1000_0000 + 0x100_0000 * len(buffers), False
        buffers.append(buf)
        return buf

    class Ip:
        def __init__(self):
            self.regs = {}

        def write(self, offset, value):
            self.regs[offset] = value
            r = registers.offsets()
            if offset == r["CTRL"] and value & registers.CTRL_START:
                (ddr,) = buffers
                assert ddr.flushed and self.regs[r["DDR_BASE"]] == ddr.physical_address
                start = self.regs[r["INSN_BASE"]] - ddr.physical_address
                assert start == memory_map["regions"]["instructions"]["offset"]
                stream = bytes(ddr[start:start + 32 * self.regs[r["INSN_COUNT"]]])
                stats = run_stream(cfg, stream, ddr.view(np.ndarray))
                self.regs[r["CTRL"]] = registers.CTRL_DONE
                self.regs[r["CYCLES"]] = stats.instructions

        def read(self, offset):
            return self.regs.get(offset, 0)

    class Overlay:
        def __init__(self, bitfile):
            self.bitfile, self.edgevit_overlay_0 = bitfile, Ip()

    module = types.ModuleType("pynq")
    module.Overlay, module.allocate = Overlay, allocate
    return module


def test_the_pynq_driver_runs_the_vectors_bit_exact_on_a_simulated_overlay(artifact, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(artifact))
    drv = import_driver(artifact / "driver/edgevit_overlay.py", "edgevit_overlay_fake")
    assert drv.main(["edgevit_overlay.py", "overlay.bit"]) == 0
    expected = np.load(artifact / "vectors/expected.npy")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(expected) + 1 and lines[-1] == f"EV-END {len(expected)}"
    for i, line in enumerate(lines[:-1]):
        _, index, ticks, data = line.split()
        assert int(index) == i and int(ticks) > 0
        assert bytes.fromhex(data) == expected[i].tobytes()


@pytest.mark.skipif(GCC is None, reason="needs gcc")
@pytest.mark.parametrize("xil", [False, True], ids=["no-xil-cache", "xil-cache-stub"])
def test_the_c_driver_compiles(artifact, tmp_path, xil):
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"]
    if xil:  # the Xilinx BSP's cache calls, declared by a stand-in xil_cache.h
        (tmp_path / "xil_cache.h").write_text("#include <stdint.h>\ntypedef uintptr_t INTPTR;\n"
                                              "void Xil_DCacheFlushRange(INTPTR a, INTPTR n);\n"
                                              "void Xil_DCacheInvalidateRange(INTPTR a, INTPTR n);\n")
    else:
        flags.append("-DEDGEVIT_NO_XIL_CACHE")
    out = subprocess.run([GCC, *flags, f"-I{tmp_path}", str(artifact / "driver/edgevit_overlay.c")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "edgevit_overlay.h"

static uint8_t *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) exit(10);
  fseek(f, 0, SEEK_END); *n = (size_t)ftell(f); fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc(*n + 1);
  if (fread(p, 1, *n, f) != *n) exit(11);
  fclose(f);
  return p;
}

static uint32_t regs[16];
static uint8_t ddr[EDGEVIT_DDR_BYTES] __attribute__((aligned(64)));

int main(int argc, char **argv) {
  size_t ni, nw;
  uint8_t *insns = read_file(argv[1], &ni), *weights = read_file(argv[2], &nw);
  int8_t input[EDGEVIT_INPUT_BYTES], output[EDGEVIT_OUTPUT_BYTES];
  for (size_t i = 0; i < sizeof input; i++) input[i] = (int8_t)(i * 7);
  edgevit_overlay_t ov;
  edgevit_overlay_init(&ov, (uintptr_t)regs, ddr, 0x20000000u);
  if (edgevit_overlay_load(&ov, insns, ni, weights, nw + 1) != EDGEVIT_EV_SIZE) return 1;
  if (edgevit_overlay_load(&ov, insns, ni, weights, nw) != EDGEVIT_EV_OK) return 2;
  if (edgevit_overlay_run(&ov, input, output, 5) != EDGEVIT_EV_TIMEOUT) return 3; /* nothing sets done */
  if (memcmp(ddr + EDGEVIT_INSN_OFFSET, insns, ni) || memcmp(ddr + EDGEVIT_WEIGHTS_OFFSET, weights, nw)) return 4;
  if (memcmp(ddr + EDGEVIT_INPUT_OFFSET, input, sizeof input)) return 5;
  printf("%u %u %u %u\n", regs[EDGEVIT_REG_INSN_BASE / 4], regs[EDGEVIT_REG_INSN_COUNT / 4],
         regs[EDGEVIT_REG_DDR_BASE / 4], regs[EDGEVIT_REG_CTRL / 4]);
  return 0;
}
"""


@pytest.mark.skipif(GCC is None, reason="needs gcc")
def test_the_c_driver_programs_the_registers_and_the_ddr_area(artifact, tmp_path):
    (tmp_path / "harness.c").write_text(HARNESS)
    exe = tmp_path / "harness"
    build = subprocess.run([GCC, "-std=c99", "-O1", "-Wall", "-Werror", "-DEDGEVIT_NO_XIL_CACHE",
                            f"-I{artifact / 'driver'}", str(tmp_path / "harness.c"),
                            str(artifact / "driver/edgevit_overlay.c"), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), str(artifact / "program/instructions.bin"), str(artifact / "program/weights.bin")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)
    regions = json.loads((artifact / MEMORY_MAP).read_text())["regions"]
    insn_base, count, ddr_base, ctrl = map(int, run.stdout.split())
    assert insn_base == 0x20000000 + regions["instructions"]["offset"] and ddr_base == 0x20000000
    assert count * 32 == regions["instructions"]["bytes"] and ctrl == registers.CTRL_START
