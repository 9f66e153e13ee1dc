"""Passes by name and pipeline strings such as `quant(w=8,a=8)`.

A pass is a function `(model, calib, eval_data=None, progress=None, **options) -> (model_or_qmodel,
PassReport)` (`progress(message)` reports what it is doing; `eval_data` adds accuracy) registered
with `register_pass(name, fn, options, doc)`, where `options` maps each option name to an
`Option` (its type, allowed choices, default). It never edits its input in place: the
pipeline hands each pass a deep copy.

Grammar of a pipeline string (whitespace ignored between tokens):

    pipeline := pass ("," pass)*
    pass     := NAME [ "(" [ opt ("," opt)* ] ")" ]
    opt      := NAME "=" VALUE            VALUE: an int, a float, a bare word (mixed, minmax)
                                          or a list "[" VALUE ("," VALUE)* "]" (e.g. r=[8,4,2,0])

A pipeline may also be YAML (a `.yaml`/`.yml` file path, or YAML text): a list, or a mapping
with a `passes:` list, whose items are a pass name, a pipeline string like `tome(r=4)`, or a
one-key mapping `name: {option: value, ...}` (`parse_pipeline_yaml`).

The quantization pass must come last (nothing runs on a QuantizedViT). Every mistake is a
`UserInputError` naming the pass and the option, with what would have been valid.
`run_pipeline(..., profile=P)` also fills each report's peak-memory figures from the MCU
target's estimate (the planned arena) when that backend is available.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from edgevit.errors import EdgevitError, UserInputError

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
        if text.startswith("[") and list in self.kind:
            items = [t.strip() for t in text[1:-1].split(",")] if text[1:-1].strip() else []
            scalar = replace(self, kind=tuple(k for k in self.kind if k is not list))
            return self.check(pass_name, name, [scalar.parse(pass_name, name, t) for t in items], text)
        value = _convert(text, tuple(k for k in self.kind if k is not list))
        if value is None:
            raise UserInputError(f"{pass_name}: {name} must be {self.describe()} (got {text})")
        return self.check(pass_name, name, value, text)

    def check(self, pass_name: str, name: str, value: Any, text: str | None = None) -> Any:
        """`value` if allowed (choices, words, minimum; list items alike); else UserInputError naming the option."""
        if value is None and self.default is None:
            return value
        if isinstance(value, (list, tuple)):
            if list not in self.kind or not value:
                raise UserInputError(f"{pass_name}: {name} must be {self.describe()} (got {text or value})")
            scalar = replace(self, kind=tuple(k for k in self.kind if k is not list))
            return [scalar.check(pass_name, name, v, text) for v in value]
        if float in self.kind and int not in self.kind and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
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
            text = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            kinds = " or ".join({int: "an integer", float: "a number", str: "a word"}[k] for k in self.kind
                                if k is not list and not (k is str and self.words))
            text = kinds + (f" >= {self.minimum:g}" if kinds and self.minimum is not None else "")
            text = " or ".join(t for t in (text, " or ".join(self.words or ())) if t)
        return text + (" (or a comma-separated list of them in [ ])" if list in self.kind else "")


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
    peak_bytes_before: int | None = None  # planned arena on `profile` (MCU target estimate), when given
    peak_bytes_after: int | None = None
    profile: str | None = None
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
    import edgevit.passes.lowrank  # noqa: F401  (registers `lowrank`)
    import edgevit.passes.prune  # noqa: F401  (registers `prune`)
    import edgevit.passes.quantize  # noqa: F401  (registers `quant`)
    import edgevit.passes.token_merge  # noqa: F401  (registers `tome`)

    return PASSES


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<value>[+-]?[\w.+-]+|\[[^\[\]()=]*\])|(?P<punct>[(),=]))")


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
    """`"quant(w=8,a=8)"` -> [("quant", {"w": 8, "a": 8, ...defaults})]; UserInputError on any mistake.

    A `.yaml`/`.yml` path or YAML text (several lines, or starting with `-` or `passes:`) is read
    by `parse_pipeline_yaml`.
    """
    stripped = text.strip()
    if stripped.endswith((".yaml", ".yml")):
        path = Path(stripped)
        if not path.is_file():
            raise UserInputError(f"pipeline file {path} not found")
        return parse_pipeline_yaml(path.read_text(), str(path))
    if "\n" in stripped or stripped.startswith(("-", "passes:")):
        return parse_pipeline_yaml(text)
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
    check_order(passes, repr(text))
    return passes


def check_order(passes: list[tuple[str, dict[str, Any]]], where: str) -> None:
    """UserInputError unless a quantization pass, if any, is the last one."""
    for n, (name, _) in enumerate(passes):
        if name in QUANT_PASSES and n != len(passes) - 1:
            raise UserInputError(f"pipeline {where}: {name} must be the last pass "
                                 f"(it returns an integer model no other pass can edit)")


def parse_pipeline_yaml(text: str, source: str = "YAML pipeline") -> list[tuple[str, dict[str, Any]]]:
    """A YAML pipeline (see the module docstring) -> [(name, options with defaults)]; UserInputError on mistakes."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserInputError(f"{source}: not valid YAML: {e}") from None
    if isinstance(doc, dict) and set(doc) == {"passes"}:
        doc = doc["passes"]
    if not isinstance(doc, list) or not doc:
        raise UserInputError(f"{source}: expected a non-empty list of passes (or `passes:` with one), "
                             "e.g. [{tome: {r: 4}}, quant]")
    passes: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(doc):
        if isinstance(item, str):
            passes.extend(_single(item, f"{source}: passes[{i}]"))
        elif isinstance(item, dict) and len(item) == 1:
            (name, raw), = item.items()
            passes.append((str(name), _yaml_options(str(name), raw, f"{source}: passes[{i}]")))
        else:
            raise UserInputError(f"{source}: passes[{i}] must be a pass name or a one-key mapping "
                                 f"`name: {{option: value}}` (got {item!r})")
    check_order(passes, source)
    return passes


def _single(text: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    if "\n" in text or text.strip().startswith("-") or text.strip().endswith((".yaml", ".yml")):
        raise UserInputError(f"{where}: expected a pass like tome(r=4) (got {text!r})")
    return parse_pipeline(text)


def _yaml_options(name: str, raw: Any, where: str) -> dict[str, Any]:
    """Typed, checked options of pass `name` from a YAML mapping (None: all defaults)."""
    registry = known_passes()
    if name not in registry:
        raise UserInputError(f"{where}: unknown pass {name!r}; known passes: {', '.join(sorted(registry))}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: options of {name} must be a mapping like {{option: value}} (got {raw!r})")
    pdef = registry[name]
    opts = {k: o.default for k, o in pdef.options.items()}
    for key, value in raw.items():
        if key not in pdef.options:
            raise UserInputError(f"{name}: unknown option {key!r}; valid options: {', '.join(pdef.options)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, str, list)):
            raise UserInputError(f"{name}: {key} must be {pdef.options[key].describe()} (got {value!r})")
        opts[key] = pdef.options[key].check(name, key, value)
    return opts


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
                 eval_data: Any = None, progress: Callable[[str], None] | None = None,
                 memory_of: Callable[[Any], int] | None = None) -> tuple[Any, list[PassReport]]:
    """Run the passes of a pipeline string (or parsed list) in order on a deep copy of `model`.

    `calib` is the calibration dataset (an ArrayDataset, training split); `eval_data` (optional)
    makes each report carry top-1 before and after; `memory_of(program) -> bytes` (a target's
    peak activation memory, injected by the caller) adds the peak memory before and after each pass. Returns (model or QuantizedViT, reports).
    """
    steps = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
    check_order(steps, "given as a list")
    registry, reports, current = known_passes(), [], model
    peak = PeakMemory(memory_of) if memory_of is not None else None
    for name, opts in steps:
        say = None if progress is None else (lambda msg, name=name: progress(f"{name}: {msg}"))
        if say is not None:
            say("starting")
        t0 = time.perf_counter()
        current, report = registry[name].fn(copy.deepcopy(current), calib, eval_data=eval_data, progress=say,
                                            **opts)
        report.seconds = round(time.perf_counter() - t0, 3)
        if peak is not None:
            peak.fill(report, before=reports[-1].peak_bytes_after if reports else peak.of(model), after=current)
        reports.append(report)
    return current, reports


class PeakMemory:
    """Peak memory of models through an injected `memory_of(program) -> bytes` (passes import no target)."""

    def __init__(self, memory_of: Callable[[Any], int]) -> None:
        self.memory_of = memory_of
        self.reason: str | None = None

    def of(self, model: Any) -> int | None:
        """Peak bytes of `model`'s Program (float or int8); None (with a reason) if it cannot be estimated."""
        from edgevit.lower import lower

        try:
            return int(self.memory_of(lower(model)))
        except (EdgevitError, NotImplementedError) as e:
            self.reason = f"peak memory not estimated: {e}"
            return None

    def fill(self, report: PassReport, before: int | None, after: Any) -> None:
        """Set the report's peak bytes before / after (a note says why when missing)."""
        report.peak_bytes_before, report.peak_bytes_after = before, self.of(after)
        if report.peak_bytes_after is None and self.reason:
            report.notes.append(self.reason)


def structural_report(name: str, options: dict[str, Any], before: Any, after: Any, eval_data: Any = None,
                      notes: list[str] | None = None, details: dict[str, Any] | None = None) -> PassReport:
    """PassReport of a float-to-float pass: analytic MACs / params of both specs, fp32 weight bytes and,
    with `eval_data`, top-1 of both models (torch)."""
    from edgevit.model.counts import count_macs, count_params

    pb, pa = count_params(before.spec), count_params(after.spec)
    report = PassReport(name=name, options=dict(options), macs_before=count_macs(before.spec),
                        macs_after=count_macs(after.spec), params_before=pb, params_after=pa,
                        weight_bytes_before=4 * pb, weight_bytes_after=4 * pa, notes=list(notes or []),
                        details=dict(details or {}))
    if eval_data is not None and len(eval_data):
        from edgevit.model.evaluate import accuracy

        report.top1_before = round(accuracy(before, eval_data), 6)
        report.top1_after = round(accuracy(after, eval_data), 6)
    return report
