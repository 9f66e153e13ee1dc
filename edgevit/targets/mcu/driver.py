"""The MCU's part of the generated C: the firmware's header sizes and kernels.c.

The driver itself (model.c, weights.c, the header's API, the kernel requests) is shared by the
C-emitting targets (edgevit/backend/cdriver.py); the MCU asks it for kernels with its kernel
package (`KERNEL_PACKAGE`, the Cortex-M DSP overrides), adds the firmware's stack and flash sizes
to edgevit_model.h and lowers every distinct function to C in one TVM build (kernels/tvmc.py)
into kernels.c, which model.c includes (`KERNELS_INCLUDE`; its functions are `static`).
"""

from __future__ import annotations

from edgevit.backend import cdriver
from edgevit.backend.cdriver import HEADER, StepCode, distinct_codes
from edgevit.backend.kernels.harness import kernel_source
from edgevit.lower.program import Program
from edgevit.targets.mcu.kernels import KERNEL_PACKAGE
from edgevit.targets.mcu.memory import STACK_BYTES, weight_bytes

KERNELS_INCLUDE = "kernels.c"


def request_kernels(program: Program, plan, schedule: str = "fast", isa: tuple[str, ...] = ()) -> list[StepCode]:
    """cdriver.request_kernels with the MCU kernel overrides (KERNEL_PACKAGE)."""
    return cdriver.request_kernels(program, plan, schedule, isa, overrides=KERNEL_PACKAGE)


def model_h(program: Program, plan) -> str:
    """src/edgevit_model.h: the shared API and sizes plus the firmware's stack and weight bytes."""
    return cdriver.model_h(program, plan, (("EDGEVIT_STACK_BYTES", STACK_BYTES, "stack reserved by the firmware"),
                                           ("EDGEVIT_WEIGHT_BYTES", weight_bytes(program),
                                            "constants in flash (padded to 8)")))


def lower_kernels(steps: list[StepCode]) -> dict[str, str]:
    """C definition of every distinct function, from one TVM build: {func: "static ... {...}"}."""
    from edgevit.backend.kernels.tvmc import lower_to_c

    return lower_to_c({c.func: c.prim_func for c in distinct_codes(steps)})


def kernels_c(program: Program, steps: list[StepCode], definitions: dict[str, str]) -> str:
    """src/kernels.c: standard headers, the micro-kernel helpers, each function once (static)."""
    return HEADER.format(what="TVM-generated kernels", name=program.name) + kernel_source(
        distinct_codes(steps), definitions, KERNEL_PACKAGE)
