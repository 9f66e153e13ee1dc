"""reshape has no code: the planner aliases its output to its input."""

from __future__ import annotations

from edgevit.lower.program import DTYPES
from elementwise_cases import kernel_def


def test_reshape_is_an_alias_without_code() -> None:
    kdef = kernel_def("reshape")
    assert kdef.traits.alias and kdef.generate is None and set(kdef.dtypes) == set(DTYPES)
    assert kdef.traits.inplace == () and not kdef.traits.row_wise
