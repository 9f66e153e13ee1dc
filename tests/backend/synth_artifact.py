"""A small synthetic artifact that follows docs/mcu-backend.md's layout exactly, for runner tests.

The "model" is one dense layer (int8: int32 accumulate, >> 6, clamp; float32: plain dot
products) so its expected outputs are computed here in NumPy. `build_artifact` writes
src/ (edgevit_model.h, model.c, weights.c, kernels.c, vectors.c/.h), vectors/*.npy,
firmware/ (startup.c, linker.ld from the profile's memory map with the DEVICE's sizes,
Makefile, main.c printing the EV lines with SysTick ticks), host/Makefile and manifest.json
with the sha256 of every other file and its own digest, sealed as `edgevit compile` seals it
(`write_manifest`). Variants exercise the runners' error paths.

The fixtures `int8_artifact` and `float_artifact` are defined here and imported by the
conftest.py of every test directory that runs artifacts (tests/backend, tests/targets/mcu/runners).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgevit.backend.manifest import VERSION, with_digest
from edgevit.profiles.profile import load_profile

IN_SIZE, OUT_SIZE, SHIFT = 24, 4, 6
MAIN_VARIANTS = ("ok", "garbage", "exit3", "hang", "short", "ev-error", "overflow", "ub")

HEADER = """#ifndef EDGEVIT_MODEL_H
#define EDGEVIT_MODEL_H
#include <stdint.h>
#define EDGEVIT_INPUT_SIZE {in_size}
#define EDGEVIT_OUTPUT_SIZE {out_size}
#define EDGEVIT_ARENA_BYTES {arena}
typedef {ctype} edgevit_in_t;
typedef {ctype} edgevit_out_t;
int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output);
#endif
"""

MODEL_C = """#include <string.h>
#include "edgevit_model.h"
extern const {ctype} edgevit_w[EDGEVIT_OUTPUT_SIZE * EDGEVIT_INPUT_SIZE];
void edgevit_dense(const {ctype} *x, const {ctype} *w, {ctype} *y);
static uint8_t edgevit_arena[EDGEVIT_ARENA_BYTES] __attribute__((aligned(8), section(".bss.edgevit_arena")));
int edgevit_run(const edgevit_in_t *input, edgevit_out_t *output) {{
  {ctype} *x = ({ctype} *)edgevit_arena;
  {ctype} *y = ({ctype} *)(edgevit_arena + sizeof({ctype}) * EDGEVIT_INPUT_SIZE);
  memcpy(x, input, sizeof({ctype}) * EDGEVIT_INPUT_SIZE);
  edgevit_dense(x, edgevit_w, y);
  memcpy(output, y, sizeof({ctype}) * EDGEVIT_OUTPUT_SIZE);
  return 0;
}}
"""

KERNEL_INT8 = """#include <stdint.h>
#include "edgevit_model.h"
void edgevit_dense(const int8_t *x, const int8_t *w, int8_t *y) {
  for (int o = 0; o < EDGEVIT_OUTPUT_SIZE; ++o) {
    int32_t acc = 0;
    for (int i = 0; i < EDGEVIT_INPUT_SIZE; ++i) acc += (int32_t)x[i] * w[o * EDGEVIT_INPUT_SIZE + i];
    acc >>= %d;
    y[o] = (int8_t)(acc > 127 ? 127 : acc < -128 ? -128 : acc);
  }
}
""" % SHIFT

KERNEL_FLOAT = """#include "edgevit_model.h"
void edgevit_dense(const float *x, const float *w, float *y) {
  for (int o = 0; o < EDGEVIT_OUTPUT_SIZE; ++o) {
    float acc = 0.0f;
    for (int i = 0; i < EDGEVIT_INPUT_SIZE; ++i) acc += x[i] * w[o * EDGEVIT_INPUT_SIZE + i];
    y[o] = acc;
  }
}
"""

STARTUP_C = """#include <stdint.h>
extern uint32_t __bss_start__, __bss_end__, __stack_top;
extern int main(void);
extern void exit(int);
extern void initialise_monitor_handles(void);
void Reset_Handler(void);
void Default_Handler(void) { for (;;) {} }
volatile uint32_t edgevit_systick_wraps;
void SysTick_Handler(void) { edgevit_systick_wraps++; }
__attribute__((section(".vectors"), used)) void (*const edgevit_vectors[16])(void) = {
  (void (*)(void))&__stack_top, Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
  Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
  SysTick_Handler};
void Reset_Handler(void) {
  for (uint32_t *p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20);
  __asm volatile("dsb; isb");
#endif
  initialise_monitor_handles();
  exit(main());
}
"""

LINKER_LD = """MEMORY {{
  CODE (rx) : ORIGIN = {code:#x}, LENGTH = {flash}
  RAM (rwx) : ORIGIN = {data:#x}, LENGTH = {sram}
}}
ENTRY(Reset_Handler)
SECTIONS {{
  .text : {{ KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(8); }} > CODE
  .ARM.exidx : {{ *(.ARM.exidx*) }} > CODE
  .data : {{ *(.data*) . = ALIGN(8); }} > RAM
  .bss (NOLOAD) : {{ __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(8); __bss_end__ = .; }} > RAM
  . = ALIGN(8); end = .; __end__ = .;
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}}
"""

FIRMWARE_MAKEFILE = """CC = {cc}
EDGEVIT_COUNT ?= {count}
CFLAGS = {cflags} -O2 -std=c99 -Wall -Wextra -Werror -I../src -DEDGEVIT_COUNT=$(EDGEVIT_COUNT)
SRCS = ../src/model.c ../src/weights.c ../src/kernels.c ../src/vectors.c startup.c main.c
firmware.elf: $(SRCS) linker.ld
\t$(CC) $(CFLAGS) $(SRCS) -T linker.ld --specs=rdimon.specs -lrdimon -o $@
"""

HOST_MAKEFILE = """CC ?= gcc
EDGEVIT_COUNT ?= {count}
CFLAGS = -O2 -std=c99 -Wall -Wextra -Werror -I../src -DEDGEVIT_HOST -DEDGEVIT_COUNT=$(EDGEVIT_COUNT) $(EXTRA_CFLAGS)
SRCS = ../src/model.c ../src/weights.c ../src/kernels.c ../src/vectors.c ../firmware/main.c
model_host: $(SRCS)
\t$(CC) $(CFLAGS) $(SRCS) -o $@ -lm
"""

MAIN_C = """#include <stdio.h>
#include <stdint.h>
#include "edgevit_model.h"
#include "vectors.h"
#ifdef EDGEVIT_HOST
static void ticks_start(void) {}
static uint32_t ticks_now(void) { return 0; }
#else
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
extern volatile uint32_t edgevit_systick_wraps;
static void ticks_start(void) { SYST_RVR = 0xFFFFFF; SYST_CVR = 0; SYST_CSR = 7; while (SYST_CVR == 0) {} }
static uint32_t ticks_now(void) {
  uint32_t w, v;
  do { w = edgevit_systick_wraps; v = SYST_CVR; } while (w != edgevit_systick_wraps);
  return (w << 24) + (0xFFFFFFu - v);
}
#endif
static edgevit_out_t out[EDGEVIT_OUTPUT_SIZE];
int main(void) {
  ticks_start();
  for (int i = 0; i < EDGEVIT_COUNT; ++i) {
    uint32_t t0 = ticks_now();
    if (edgevit_run(edgevit_vector_inputs[i], out) != 0) return 1;
    uint32_t t1 = ticks_now();
    printf("EV %d %lu ", i, (unsigned long)(t1 - t0));
    const uint8_t *b = (const uint8_t *)out;
    for (unsigned j = 0; j < sizeof out; ++j) printf("%02x", b[j]);
    printf("\\n");
    fflush(stdout);  /* a killed (timed-out) run still shows its last lines */
  }
  VARIANT
  printf("EV-END %d\\n", EDGEVIT_COUNT);
  return 0;
}
"""

VARIANT_CODE = {
    "ok": "",
    "garbage": 'printf("EV 999 1 zz\\n");',
    "exit3": 'printf("EV-END %d\\n", EDGEVIT_COUNT); return 3;',
    "hang": "for (;;) { __asm volatile(\"\"); }",
    "short": "return 0;",  # stops before EV-END
    "overflow": 'const edgevit_out_t *volatile q = out; printf("debug %d\\n", (int)q[EDGEVIT_OUTPUT_SIZE + 16]);',  # ASan
    "ub": 'volatile int s = 40; printf("debug %d\\n", 1 << s);',  # UBSan: shift exponent too large
    "ev-error": 'printf("EV-ERROR 2 7\\n"); return 1;',  # what the emitted main prints when edgevit_run fails
}


def dense_reference(x: np.ndarray, w: np.ndarray, dtype: str) -> np.ndarray:
    """What model.c computes for inputs x [n, IN] and weights w [OUT, IN]."""
    if dtype == "int8":
        acc = x.astype(np.int32) @ w.astype(np.int32).T
        return np.clip(acc >> SHIFT, -128, 127).astype(np.int8)
    out = np.zeros((x.shape[0], w.shape[0]), np.float32)
    for i in range(w.shape[1]):  # same summation order as the C loop
        out += x[:, i:i + 1] * w[None, :, i]
    return out


def _c_values(a: np.ndarray) -> str:
    if a.dtype == np.float32:
        return ", ".join(f"{float(v).hex()}f" if v != 0 else "0.0f" for v in a.reshape(-1).tolist())
    return ", ".join(str(int(v)) for v in a.reshape(-1).tolist())


def _sources(dtype: str, x: np.ndarray, w: np.ndarray, variant: str) -> dict[str, str]:
    ctype = "int8_t" if dtype == "int8" else "float"
    arena = (IN_SIZE + OUT_SIZE) * np.dtype(dtype).itemsize
    n = x.shape[0]
    return {
        "src/edgevit_model.h": HEADER.format(in_size=IN_SIZE, out_size=OUT_SIZE, arena=(arena + 7) // 8 * 8,
                                             ctype=ctype),
        "src/model.c": MODEL_C.format(ctype=ctype),
        "src/weights.c": f'#include <stdint.h>\nconst {ctype} edgevit_w[{w.size}] __attribute__((aligned(8))) = '
                         f'{{{_c_values(w)}}};\n',
        "src/kernels.c": KERNEL_INT8 if dtype == "int8" else KERNEL_FLOAT,
        "src/vectors.h": f'#include "edgevit_model.h"\n#define EDGEVIT_VECTOR_COUNT {n}\n'
                         f"extern const edgevit_in_t edgevit_vector_inputs[{n}][EDGEVIT_INPUT_SIZE];\n",
        "src/vectors.c": f'#include "vectors.h"\nconst edgevit_in_t edgevit_vector_inputs[{n}][EDGEVIT_INPUT_SIZE] '
                         f"= {{{', '.join('{' + _c_values(row) + '}' for row in x)}}};\n",
        "firmware/main.c": MAIN_C.replace("VARIANT", VARIANT_CODE[variant]),
        "firmware/startup.c": STARTUP_C,
    }


def _project_files(profile, n: int) -> dict[str, str]:
    mm = profile.emulator.memory_map
    return {
        "firmware/linker.ld": LINKER_LD.format(code=mm.code_origin, data=mm.data_origin,
                                               flash=profile.memory.flash_bytes, sram=profile.memory.sram_bytes),
        "firmware/Makefile": FIRMWARE_MAKEFILE.format(cc=profile.toolchain.cc, count=n,
                                                      cflags=" ".join(profile.toolchain.cflags)),
        "host/Makefile": HOST_MAKEFILE.format(count=n),
    }


def _data(dtype: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if dtype == "int8":
        x = rng.integers(-128, 128, (n, IN_SIZE)).astype(np.int8)
        w = rng.integers(-128, 128, (OUT_SIZE, IN_SIZE)).astype(np.int8)
    else:
        x = rng.standard_normal((n, IN_SIZE)).astype(np.float32)
        w = rng.standard_normal((OUT_SIZE, IN_SIZE)).astype(np.float32)
    expected = dense_reference(x, w, dtype)
    labels = np.argmax(expected.astype(np.float64), axis=1)
    labels[1::2] = (labels[1::2] + 1) % OUT_SIZE  # every other label wrong: reference top-1 < 1
    return x, w, expected, labels.astype(np.int64)


def write_manifest(root: Path, manifest: dict) -> None:
    """(Re)write manifest.json with the sha256 of every other file under `root` and the manifest's
    digest (a manifest edited by a test and re-sealed, as a compile would have written it)."""
    files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    sealed = with_digest({**manifest, "files": files})
    (root / "manifest.json").write_text(json.dumps(sealed, indent=1, sort_keys=True))


def build_artifact(root: Path, *, dtype: str = "int8", n: int = 5, profile: str = "stm32f746-disco",
                   variant: str = "ok", wrong_expected: tuple[int, ...] = (), seed: int = 0) -> Path:
    """Write a synthetic artifact to `root` (created); `wrong_expected` indices get a wrong
    expected output (but correct hashes); `variant` selects a misbehaving main.c."""
    prof = load_profile(profile)
    x, w, expected, labels = _data(dtype, n, seed)
    for i in wrong_expected:
        expected[i, 0] = expected[i, 0] + (1 if dtype == "int8" else 0.5)
    root.mkdir(parents=True)
    for rel, text in {**_sources(dtype, x, w, variant), **_project_files(prof, n)}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "vectors").mkdir()
    for name, arr in (("inputs", x), ("expected", expected), ("labels", labels)):
        np.save(root / "vectors" / f"{name}.npy", arr)
    (root / "report.md").write_text("# synthetic artifact\n")
    manifest = {"format": "edgevit-artifact", "version": VERSION, "profile": prof.model_dump(mode="json"),
                "target": {"kind": "mcu", "runners": ["host", "qemu", "serial"], "default_runner": "qemu"},
                "program": {"name": "synthetic-dense", "output": {"name": "logits", "shape": [OUT_SIZE],
                                                                  "dtype": dtype}},
                "kernels": [{"name": "dense", "op": "linear", "macs": IN_SIZE * OUT_SIZE}],
                "vectors": {"count": n, "source": "synthetic"}}
    write_manifest(root, manifest)
    return root


@pytest.fixture
def int8_artifact(tmp_path):
    """A 5-vector int8 artifact for stm32f746-disco (QEMU mps2-an500)."""
    return build_artifact(tmp_path / "int8")


@pytest.fixture
def float_artifact(tmp_path):
    """A 5-vector float32 artifact for stm32f746-disco."""
    return build_artifact(tmp_path / "float", dtype="float32")
