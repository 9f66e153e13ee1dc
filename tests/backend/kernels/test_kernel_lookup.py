"""Kernel lookup by op name (edgevit/backend/kernels/__init__.py): a target's kernel package
overrides the generic kernel of the same name and the micro headers of the same name; everything
it does not provide stays generic; ops without a kernel are refused."""

from __future__ import annotations

import importlib

import pytest

from edgevit.backend.kernels import UnsupportedKernelError, get_kernel, helper_header
from edgevit.backend.kernels import add as generic_add
from edgevit.backend.kernels import gelu as generic_gelu
from edgevit.backend.kernels.base import KernelCode
from edgevit.backend.kernels.harness import kernel_source

OVERRIDE_ADD = '''from edgevit.backend.kernels import add as generic
from edgevit.backend.kernels.base import KernelDef

KERNEL = KernelDef(op="add", generate=generic.generate, dtypes=("int8",))
'''
TARGET_F32BITS = "/* the target's f32bits.h */\n"


@pytest.fixture
def target_package(tmp_path, monkeypatch) -> str:
    """A throw-away target kernel package on sys.path: add.py (int8 only), micro/f32bits.h and
    notes.py (a module that is not a kernel)."""
    name = f"evtest_{tmp_path.name}"
    pkg = tmp_path / name
    (pkg / "micro").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "add.py").write_text(OVERRIDE_ADD)
    (pkg / "notes.py").write_text("TEXT = 'not a kernel'\n")
    (pkg / "micro" / "f32bits.h").write_text(TARGET_F32BITS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_the_target_kernel_of_the_same_name_wins(target_package) -> None:
    override = get_kernel("add", overrides=target_package)
    assert override is importlib.import_module(f"{target_package}.add").KERNEL
    assert override is not generic_add.KERNEL and override.dtypes == ("int8",)
    assert get_kernel("add") is generic_add.KERNEL                            # without the override: generic
    assert get_kernel("gelu", overrides=target_package) is generic_gelu.KERNEL  # not overridden: generic
    with pytest.raises(UnsupportedKernelError, match="no float32 kernel"):
        get_kernel("add", "float32", overrides=target_package)               # the override's dtypes count
    with pytest.raises(UnsupportedKernelError, match="'notes'"):
        get_kernel("notes", overrides=target_package)                       # a module without KERNEL


def test_the_target_header_of_the_same_name_wins(target_package) -> None:
    generic = helper_header("f32bits")
    assert helper_header("f32bits", overrides=target_package) == TARGET_F32BITS != generic
    assert helper_header("isqrt64", overrides=target_package) == helper_header("isqrt64")
    code = KernelCode("f", None, (), helpers=("f32bits",))
    source = kernel_source([code], {"f": "static void f(void) {}\n"}, target_package)
    assert TARGET_F32BITS in source and generic not in source


def test_ops_and_headers_without_a_kernel_are_refused() -> None:
    with pytest.raises(UnsupportedKernelError, match="'conv3d' has no kernel"):
        get_kernel("conv3d")
    with pytest.raises(UnsupportedKernelError, match="'gemm'"):
        get_kernel("gemm")                          # shared GEMM code, not a kernel
    with pytest.raises(FileNotFoundError, match="gemm_dsp.h"):
        helper_header("gemm_dsp")                   # a target's header is not generic
