"""reshape: a view (same bytes, new shape). No code: the planner aliases output 0 to input 0's buffer."""

from __future__ import annotations

from edgevit.lower.program import DTYPES
from edgevit.backend.kernels import register_kernel
from edgevit.backend.kernels.base import KernelDef, KernelTraits

KERNEL = register_kernel(KernelDef(op="reshape", traits=KernelTraits(alias=True), generate=None, dtypes=DTYPES))
