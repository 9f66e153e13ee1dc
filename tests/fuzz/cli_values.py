"""Hypothesis strategies for the CLI fuzzer's values: junk scalars, option numbers as typed on a command
line, mutations of YAML trees, of raw bytes and of file contents.

Everything here is pure (no files): cli_inputs.py writes what these strategies draw.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

# numbers as a user might type them: not finite, negative, zero, huge, malformed, of the wrong kind
BAD_NUMBER_TEXT = ("nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0", "0", "-1e9", "1e308", "1e999",
                   "99999999999999999999999", "1.5", "0x10", "1_000", "", " ", "abc", "1e-320", "2**31", "--1")
JUNK_SCALARS = (None, True, False, 0, -1, 1, 2**31, 2**63, 10**30, -10**30, 0.5, -0.5, math.nan, math.inf, -math.inf,
                1e308, 1e-320, "", " ", "abc", "-5KiB", "1e999", "0x", "NaN", "inf", "∞", "ünï", "\x00", "320 KiB",
                "1TiB", "-1", "cortex-z99", "x86-64-v9", "../../etc/passwd", "a" * 300)


def junk_scalar() -> st.SearchStrategy:
    """One junk leaf: a typical bad value, a small or an astronomically large integer, any float, short text.
    Integers between ~100 and ~10**9 are left out on purpose: as a depth or a width they are valid sizes
    that only make a command slow (the size guards refuse what cannot fit, not what takes minutes)."""
    return st.one_of(st.sampled_from(JUNK_SCALARS), st.integers(-3, 64), st.sampled_from([10**10, 2**62, 10**19]),
                     st.floats(-64, 64), st.sampled_from([math.nan, math.inf, -math.inf, 1e300]), st.text(max_size=12))


def junk_value() -> st.SearchStrategy:
    """A junk leaf or a small container of junk (wrong type where a scalar is expected, and vice versa)."""
    return st.one_of(junk_scalar(), st.lists(junk_scalar(), max_size=3),
                     st.dictionaries(st.text(max_size=6), junk_scalar(), max_size=2))


def int_option(valid: st.SearchStrategy, huge: bool = True) -> st.SearchStrategy:
    """Text of an integer option: mostly `valid` values, else a bad number (with `huge`, also integers up
    to 2**70: leave them out for options where a huge valid value means a long run, e.g. --epochs)."""
    bad = [t for t in BAD_NUMBER_TEXT if huge or t not in ("1e308", "99999999999999999999999", "2**31")]
    return st.one_of(valid.map(str), valid.map(str), st.sampled_from(bad),
                     (st.integers(-2**70, 2**70) if huge else st.integers(-2**70, 0)).map(str))


def float_option(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Text of a float option: mostly `valid` values, else a bad number (nan, inf, negative, huge...)."""
    return st.one_of(valid.map(repr), valid.map(repr), st.sampled_from(BAD_NUMBER_TEXT),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) to a node of a YAML tree, the root excluded."""
    out = []
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        return out
    for k, v in items:
        out.append(prefix + (k,))
        out += _paths(v, prefix + (k,))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for k in path:
        tree = tree[k]
    return tree


@st.composite
def mutated_tree(draw, tree: Any, max_mutations: int = 3) -> Any:
    """A deep copy of a YAML tree (dicts, lists, scalars) with 1..max_mutations random edits: a node
    deleted, replaced by junk, a number scaled (huge / negative / 0 / NaN), a list emptied, or an
    unknown key added."""
    import copy

    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(tree)
        if not paths:
            return draw(junk_value())
        path = draw(st.sampled_from(paths))
        parent, key = _get(tree, path[:-1]), path[-1]
        kind = draw(st.sampled_from(["delete", "junk", "number", "empty", "add"]))
        if kind == "delete":
            del parent[key]
        elif kind == "junk":
            parent[key] = draw(junk_value())
        elif kind == "number":
            parent[key] = draw(st.sampled_from([0, -1, -(2**31), 2**64, 10**12, 1e300, math.nan, math.inf, 0.25]))
        elif kind == "empty":
            parent[key] = [] if isinstance(parent[key], list) else {}
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["unknown_field", "kind2", "Name", ""]))] = draw(junk_scalar())
        else:
            parent.append(draw(junk_value()))
    return tree


def yaml_text(tree: Any) -> str:
    """YAML for a tree that may hold NaN / inf / odd strings (PyYAML writes them as .nan / .inf)."""
    import yaml

    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


RAW_YAML = ("", "\n", ":", "[", "{a: 1", "a: [1, 2", "- 1\n- 2\n", "just text", "!!python/object/apply:os.system [ls]",
            "a: &x [1]\nb: *y\n", "\t- tab", "name: x\nname: y\n", "[" * 200 + "]" * 200,
            "a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: [*c,*c,*c,*c,*c,*c,*c,*c]\n", "%YAML 9.9\n---\na: 1", "---\na: 1\n---\nb: 2\n", "null", "42", "~")


def raw_yaml() -> st.SearchStrategy:
    """Text that is not a valid YAML mapping (or not YAML at all), as bytes."""
    return st.one_of(st.sampled_from(RAW_YAML).map(lambda s: s.encode()),
                     st.binary(max_size=64), st.sampled_from([b"\xff\xfe\x00\x01", b"\x00" * 16, "é: ü".encode("latin-1")]))


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """`data` truncated, emptied, with bytes flipped or overwritten, or with junk appended / prepended."""
    kind = draw(st.sampled_from(["truncate", "empty", "flip", "overwrite", "append", "prepend", "header"]))
    n = len(data)
    if kind == "empty" or n == 0:
        return b""
    if kind == "truncate":
        return data[:draw(st.integers(0, n - 1))]
    if kind == "flip":
        out = bytearray(data)
        for i in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8)):
            out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if kind == "overwrite":
        at = draw(st.integers(0, n - 1))
        junk = draw(st.binary(min_size=1, max_size=32))
        return data[:at] + junk + data[at + len(junk):]
    if kind == "header":  # the first bytes (safetensors: the header length; zip: the magic) replaced
        return draw(st.binary(min_size=8, max_size=8)) + data[8:]
    junk = draw(st.binary(min_size=1, max_size=64))
    return data + junk if kind == "append" else junk + data
