"""The generated `cls_concat` kernel: class token row 0, then the tokens (a copy, any dtype)."""

from __future__ import annotations

import numpy as np
import pytest

from edgevit.lower.ops import get_op
from elementwise_cases import assert_no_tvm, c_source, check, cls_concat_case


@pytest.mark.parametrize("dtype, schedule, p, d", [("int8", "fast", 7, 5), ("int16", "reference", 3, 4),
                                                   ("float32", "fast", 4, 3), ("int8", "reference", 1, 1)])
def test_cls_concat_copies_exactly(dtype, schedule, p, d) -> None:
    case = cls_concat_case(np.random.default_rng(p), p, d, dtype)
    check(case, schedule=schedule)
    assert_no_tvm(c_source(case, schedule=schedule))


def test_traits() -> None:
    t = get_op("cls_concat").traits
    assert t.inplace == () and not t.row_wise and not t.alias
