"""Passes by name and pipeline strings such as `quant(w=8,a=8)`.

A pass is a function `(model, calib, eval_data=None, progress=None, **options) -> (model_or_qmodel,
PassReport)` (`progress(message)` reports what it is doing; `eval_data` adds accuracy) registered
with `register_pass(name, fn, options, doc)`, where `options` maps each option name to an
`Option` (its type, allowed choices, default). It never edits its input in place: the
pipeline hands each pass a deep copy.

Grammar of a pipeline string (whitespace ignored between tokens):

    pipeline := pass ("," pass)*
    pass     := NAME [ "(" [ opt ("," opt)* ] ")" ]
    opt      := NAME "=" VALUE            VALUE: an int, a float or a bare word (mixed, minmax)

The quantization pass must come last (nothing runs on a QuantizedViT). Every mistake is a
`UserInputError` naming the pass and the option, with what would have been valid.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from edgevit.errors import UserInputError

QUANT_PASSES = ("quant",)


@dataclass(frozen=True)
class Option:
    """One pass option: `kind` (int | float | str | "int|str" ...), allowed `choices` (None: any), default."""

    kind: tuple[type, ...]
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    words: tuple[str, ...] | None = None  # bare words allowed beside numbers (e.g. "auto")
    doc: str = ""

    def parse(self, pass_name: str, name: str, text: str) -> Any:
        """The typed value of `text`; UserInputError naming the pass and option if it does not fit."""
        value = _convert(text, self.kind)
        if value is None:
            raise UserInputError(f"{pass_name}: {name} must be {self.describe()} (got {text})")
        return self.check(pass_name, name, value, text)

    def check(self, pass_name: str, name: str, value: Any, text: str | None = None) -> Any:
        """`value` if allowed (choices, words, minimum); else UserInputError naming the pass and option."""
        if value is None and self.default is None:
            return value
        if self.choices is not None:
            ok = value in self.choices
        elif isinstance(value, str):
            ok = str in self.kind and (self.words is None or value in self.words)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                (int in self.kind or float in self.kind) and (self.minimum is None or value >= self.minimum)
            ok = ok and (float in self.kind or isinstance(value, int))
        if not ok:
            raise UserInputError(f"{pass_name}: {name} must be {self.describe()} (got {text or value})")
        return value

    def describe(self) -> str:
        """What a valid value looks like, for messages."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kinds = " or ".join({int: "an integer", float: "a number", str: "a word"}[k] for k in self.kind
                            if not (k is str and self.words))
        text = kinds + (f" >= {self.minimum:g}" if self.minimum is not None else "")
        return text + (" or " + " or ".join(self.words) if self.words else "")


def _convert(text: str, kinds: tuple[type, ...]) -> Any:
    """text as the first of `kinds` that fits (int, float, str); None if none does."""
    for kind in kinds:
        if kind is int and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if kind is float and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            return float(text)
        if kind is str and re.fullmatch(r"[A-Za-z_][\w.-]*", text):
            return text
    return None


@dataclass(frozen=True)
class PassDef:
    """A registered pass."""

    name: str
    fn: Callable[..., tuple[Any, "PassReport"]]
    options: dict[str, Option]
    doc: str = ""


@dataclass
class PassReport:
    """What one pass did: costs before/after, optional accuracy, notes and wall time."""

    name: str
    options: dict[str, Any]
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    seconds: float = 0.0
    top1_before: float | None = None
    top1_after: float | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


PASSES: dict[str, PassDef] = {}


def register_pass(name: str, fn: Callable[..., Any], options: dict[str, Option], doc: str = "") -> PassDef:
    """Register pass `name` (re-registering the same function is a no-op; another one is an error)."""
    if name in PASSES and PASSES[name].fn is not fn:
        raise ValueError(f"pass {name!r} is already registered")
    PASSES[name] = PassDef(name, fn, dict(options), doc)
    return PASSES[name]


def known_passes() -> dict[str, PassDef]:
    """All registered passes (importing the built-in ones first)."""
    import edgevit.passes.quantize  # noqa: F401  (registers `quant`)

    return PASSES


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<value>[+-]?[\w.+-]+)|(?P<punct>[(),=]))")


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


def parse_pipeline(text: str) -> list[tuple[str, dict[str, Any]]]:
    """`"quant(w=8,a=8)"` -> [("quant", {"w": 8, "a": 8, ...defaults})]; UserInputError on any mistake."""
    toks = _tokens(text)
    if not toks:
        raise UserInputError("pipeline is empty; e.g. --passes \"quant(w=8,a=8)\"")
    passes, i = [], 0
    while i < len(toks):
        name, i = _parse_pass(text, toks, i, passes)
        if i < len(toks):
            _expect(text, toks, i, ",", "',' between passes")
            i += 1
            if i == len(toks):
                raise UserInputError(f"pipeline {text!r}: a pass name must follow the ',' at position {toks[-1][2]}")
    for n, (name, _) in enumerate(passes):
        if name in QUANT_PASSES and n != len(passes) - 1:
            raise UserInputError(f"pipeline {text!r}: {name} must be the last pass "
                                 f"(it returns an integer model no other pass can edit)")
    return passes


def _parse_pass(text: str, toks, i: int, passes: list) -> tuple[str, int]:
    """Parse `NAME[(opts)]` at token i; append (name, opts) to passes; return the next token index."""
    kind, name, pos = toks[i]
    if kind != "name":
        raise UserInputError(f"pipeline {text!r}: expected a pass name at position {pos} (got {name!r})")
    registry = known_passes()
    if name not in registry:
        raise UserInputError(f"pipeline {text!r}: unknown pass {name!r}; known passes: {', '.join(sorted(registry))}")
    pdef, raw, i = registry[name], {}, i + 1
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
            if opt not in pdef.options:
                raise UserInputError(f"{name}: unknown option {opt!r}; valid options: {', '.join(pdef.options)}")
            if opt in raw:
                raise UserInputError(f"{name}: option {opt!r} given twice")
            raw[opt] = pdef.options[opt].parse(name, opt, val)
            i += 3
        if i >= len(toks):
            raise UserInputError(f"pipeline {text!r}: missing ')' after {name}( (end of string at position {len(text)})")
        i += 1
    opts = {k: o.default for k, o in pdef.options.items()}
    opts.update(raw)
    passes.append((name, opts))
    return name, i


def _expect(text: str, toks, i: int, want: str, what: str) -> None:
    if toks[i][1] != want:
        raise UserInputError(f"pipeline {text!r}: expected {what} at position {toks[i][2]} (got {toks[i][1]!r})")


def run_pipeline(model: Any, passes: str | Sequence[tuple[str, dict[str, Any]]], calib: Any,
                 eval_data: Any = None, progress: Callable[[str], None] | None = None) -> tuple[Any, list[PassReport]]:
    """Run the passes of a pipeline string (or parsed list) in order on a deep copy of `model`.

    `calib` is the calibration dataset (an ArrayDataset, training split); `eval_data` (optional)
    makes each report carry top-1 before and after. Returns (model or QuantizedViT, reports).
    """
    steps = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
    registry, reports, current = known_passes(), [], model
    for name, opts in steps:
        say = None if progress is None else (lambda msg, name=name: progress(f"{name}: {msg}"))
        if say is not None:
            say("starting")
        t0 = time.perf_counter()
        current, report = registry[name].fn(copy.deepcopy(current), calib, eval_data=eval_data, progress=say,
                                            **opts)
        report.seconds = round(time.perf_counter() - t0, 3)
        reports.append(report)
    return current, reports
