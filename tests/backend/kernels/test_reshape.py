"""reshape has no code: the planner aliases its output to its input."""

from __future__ import annotations

from edgevit.lower.program import DTYPES
from edgevit.lower.ops import get_op
from elementwise_cases import kernel_def


def test_reshape_is_an_alias_without_code() -> None:
    kdef = kernel_def("reshape")
    assert get_op("reshape").traits.alias and kdef.generate is None and set(kdef.dtypes) == set(DTYPES)
    assert get_op("reshape").traits.inplace == () and not get_op("reshape").traits.row_wise
