"""patch_embed on the MCU: the generic kernel (edgevit/backend/kernels/patch_embed.py) with the Arm
int8 code of gemm_dsp.py: the fast requantize on SMMLA / SSAT, and on DSP cores with p % 4 == 0
(kw runs of whole 32-bit words) tiles of one patch x 4 channels (leftover channels 1 x 1), each
tile's whole (c, kh, kw) reduction one call of ev_patch_dsp_1x4 / _1x1 of micro/gemm_dsp.h."""

from __future__ import annotations

from edgevit.backend.kernels import patch_embed as generic
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.gemm import GemmHooks
from edgevit.targets.mcu.kernels.gemm_dsp import ARM_STEPS, PATCH_TILE, patch_intrin, uses_dsp


def generate(req: KernelRequest) -> KernelCode:
    """C code for one patch embedding (see the module docstring); the function name records whether
    the DSP micro-kernel is used."""
    channels, patch = req.in_infos[0].shape[0], int(req.kernel.attrs["patch"])
    dsp = req.dtype == "int8" and uses_dsp(req, patch)
    micro = (lambda tn, tm: patch_intrin(tm, channels, patch)) if dsp else None
    return generic.generate(req, GemmHooks(ARM_STEPS, micro, PATCH_TILE, {"dsp": dsp}))


KERNEL = KernelDef(op="patch_embed", generate=generate, dtypes=generic.KERNEL.dtypes)
