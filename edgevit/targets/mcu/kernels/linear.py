"""linear on the MCU: the generic kernel (edgevit/backend/kernels/linear.py) with the Arm int8 code
of gemm_dsp.py: the fast requantize on SMMLA / SSAT, and on DSP cores (8-bit weights, K % 4 == 0)
each 2x2 output tile's whole reduction by the SXTB16/SMLAD micro-kernel ev_gemm_dsp_RxC of
micro/gemm_dsp.h. float32 kernels are the generic ones."""

from __future__ import annotations

from edgevit.backend.kernels import linear as generic
from edgevit.backend.kernels.base import KernelCode, KernelDef, KernelRequest
from edgevit.backend.kernels.gemm import GemmHooks
from edgevit.targets.mcu.kernels.gemm_dsp import ARM_STEPS, DSP_TILE, gemm_intrin, uses_dsp


def generate(req: KernelRequest) -> KernelCode:
    """C code for one linear kernel (see the module docstring); the function name records whether
    the DSP micro-kernel is used."""
    if req.dtype == "float32":
        return generic.generate(req)
    k = req.in_infos[0].shape[1]
    dsp = req.kernel.attrs.get("weight_bits", 8) == 8 and uses_dsp(req, k)
    micro = (lambda tn, tm: gemm_intrin(tn, tm, k)) if dsp else None
    return generic.generate(req, GemmHooks(ARM_STEPS, micro, DSP_TILE, {"dsp": dsp}))


KERNEL = KernelDef(op="linear", generate=generate, dtypes=generic.KERNEL.dtypes)
