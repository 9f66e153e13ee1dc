"""A calibration firmware measuring QEMU's executed instructions per SysTick tick under -icount.

SysTick runs from the processor clock (CSR=5, no interrupt) while a `subs; bne` loop of a known
length executes; two loop lengths cancel the fixed overhead: instructions per tick =
2 x (n2 - n1) / (ticks2 - ticks1). Used by test_qemu_calibration.py to re-check the table in
edgevit/targets/mcu/runners/qemu.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.backend.synth_artifact import LINKER_LD, STARTUP_C

N1, N2 = 100_000, 300_000
CAL_C = """#include <stdio.h>
#include <stdint.h>
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
static void spin(uint32_t n) { __asm volatile("1: subs %0, %0, #1\\n bne 1b" : "+r"(n) :: "cc"); }
static uint32_t measure(uint32_t n) {
  SYST_CSR = 0; SYST_RVR = 0xFFFFFF; SYST_CVR = 0; SYST_CSR = 5;
  while (SYST_CVR == 0) {}
  uint32_t a = SYST_CVR; spin(n); uint32_t b = SYST_CVR;
  return (a - b) & 0xFFFFFF;
}
int main(void) {
  uint32_t t1 = measure(N1), t2 = measure(N2);
  printf("CAL %lu %lu\\n", (unsigned long)t1, (unsigned long)t2);
  return 0;
}
""".replace("N1", str(N1)).replace("N2", str(N2))


def measure_instructions_per_tick(profile, workdir: Path) -> float:
    """Build the calibration firmware for `profile` (its cflags, memory map) and run it on its
    QEMU machine; return executed instructions per SysTick tick."""
    from edgevit.targets.mcu.runners.qemu import qemu_command

    mm = profile.emulator.memory_map
    (workdir / "startup.c").write_text(STARTUP_C.replace("edgevit_", "cal_"))
    (workdir / "cal.c").write_text(CAL_C)
    (workdir / "linker.ld").write_text(LINKER_LD.format(code=mm.code_origin, data=mm.data_origin,
                                                        flash=profile.memory.flash_bytes,
                                                        sram=profile.memory.sram_bytes))
    subprocess.run([profile.toolchain.cc, *profile.toolchain.cflags, "-O2", "startup.c", "cal.c", "-T", "linker.ld",
                    "--specs=rdimon.specs", "-lrdimon", "-o", "cal.elf"], cwd=workdir, check=True)
    out = subprocess.run(qemu_command(profile, workdir / "cal.elf"), cwd=workdir, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    t1, t2 = map(int, re.search(r"CAL (\d+) (\d+)", out).groups())
    return 2 * (N2 - N1) / (t2 - t1)
