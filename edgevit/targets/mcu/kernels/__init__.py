"""The MCU's kernel overrides (TFLite-Micro style, see edgevit/backend/kernels/__init__.py): a file
here named like a generic kernel (`linear.py` for edgevit/backend/kernels/linear.py) replaces it in
MCU builds; every other op uses the generic kernel. `micro/` holds the C headers only these
kernels use (micro/gemm_dsp.h). The driver passes `KERNEL_PACKAGE` as the lookup's `overrides`."""

KERNEL_PACKAGE = __name__
