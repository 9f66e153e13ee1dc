"""reshape: a view (same bytes, new shape). No code: the planner aliases output 0 to input 0's buffer."""

from __future__ import annotations

from edgevit.lower.program import DTYPES
from edgevit.backend.kernels.base import KernelDef

KERNEL = KernelDef(op="reshape", generate=None, dtypes=DTYPES)
