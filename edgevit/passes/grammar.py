"""The pipeline string grammar, e.g. `tome(r=[4,2,0]),quant(w=8,a=8)` (whitespace ignored between tokens):

    pipeline := pass ("," pass)*
    pass     := NAME [ "(" [ opt ("," opt)* ] ")" ]
    opt      := NAME "=" VALUE            VALUE: an int, a float, a bare word (mixed, minmax)
                                          or a list "[" VALUE ("," VALUE)* "]" (e.g. r=[8,4,2,0])

The quantization pass must come last (nothing runs on a QuantizedViT): `check_order`. Every mistake
is a `UserInputError` naming the pass, the option or the position, with what would have been valid.
"""

from __future__ import annotations

import re
from typing import Any

from edgevit.errors import UserInputError
from edgevit.passes.registry import lookup_pass

QUANT_PASSES = ("quant",)

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<value>[+-]?[\w.+-]+|\[[^\[\]()=]*\])|(?P<punct>[(),=]))")


def parse_pipeline_string(text: str) -> list[tuple[str, dict[str, Any]]]:
    """`"quant(w=8,a=8)"` -> [("quant", {"w": 8, "a": 8, ...defaults})]; UserInputError on any mistake."""
    toks = _tokens(text)
    if not toks:
        raise UserInputError("pipeline is empty; e.g. --passes \"quant(w=8,a=8)\"")
    passes, i = [], 0
    while i < len(toks):
        i = _parse_pass(text, toks, i, passes)
        if i < len(toks):
            _expect(text, toks, i, ",", "',' between passes")
            i += 1
            if i == len(toks):
                raise UserInputError(f"pipeline {text!r}: a pass name must follow the ',' at position {toks[-1][2]}")
    check_order(passes, repr(text))
    return passes


def check_order(passes: list[tuple[str, dict[str, Any]]], where: str) -> None:
    """UserInputError unless a quantization pass, if any, is the last one."""
    for n, (name, _) in enumerate(passes):
        if name in QUANT_PASSES and n != len(passes) - 1:
            raise UserInputError(f"pipeline {where}: {name} must be the last pass "
                                 f"(it returns an integer model no other pass can edit)")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) tokens; UserInputError at the first character that fits none."""
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UserInputError(f"pipeline {text!r}: unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup
        start = m.start(kind)
        out.append((kind, m.group(kind), start))
        pos = m.end()
    return out


def _parse_pass(text: str, toks, i: int, passes: list) -> int:
    """Parse `NAME[(opts)]` at token i; append (name, opts) to passes; return the next token index."""
    kind, name, pos = toks[i]
    if kind != "name":
        raise UserInputError(f"pipeline {text!r}: expected a pass name at position {pos} (got {name!r})")
    pdef, raw, i = lookup_pass(name, f"pipeline {text!r}"), {}, i + 1
    if i < len(toks) and toks[i][1] == "(":
        i += 1
        while i < len(toks) and toks[i][1] != ")":
            if raw:
                _expect(text, toks, i, ",", f"',' or ')' in {name}(...)")
                i += 1
            if i + 3 > len(toks):
                raise UserInputError(f"pipeline {text!r}: unfinished option in {name}(...) at position "
                                     f"{toks[min(i, len(toks) - 1)][2]}; expected name=value")
            (k1, opt, p1), (_, eq, p2), (k3, val, p3) = toks[i:i + 3]
            if k1 != "name" or eq != "=" or k3 == "punct":
                raise UserInputError(f"pipeline {text!r}: expected name=value in {name}(...) at position {p1}")
            option = pdef.option(opt)
            if opt in raw:
                raise UserInputError(f"{name}: option {opt!r} given twice")
            raw[opt] = option.parse(name, opt, val)
            i += 3
        if i >= len(toks):
            raise UserInputError(f"pipeline {text!r}: missing ')' after {name}( "
                                 f"(end of string at position {len(text)})")
        i += 1
    passes.append((name, {**pdef.defaults(), **raw}))
    return i


def _expect(text: str, toks, i: int, want: str, what: str) -> None:
    """UserInputError naming `what` was expected unless token i is `want`."""
    if toks[i][1] != want:
        raise UserInputError(f"pipeline {text!r}: expected {what} at position {toks[i][2]} (got {toks[i][1]!r})")
