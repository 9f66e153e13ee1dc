"""Pass options: `Option` says what one option of a pass accepts (types, choices, minimum, bare
words, lists) and turns pipeline text or YAML values into checked, typed values.

Every mistake is a `UserInputError` naming the pass and the option, with what would have been valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from edgevit.errors import UserInputError


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
