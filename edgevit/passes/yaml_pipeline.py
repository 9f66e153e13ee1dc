"""Pipelines written in YAML: a list, or a mapping with a `passes:` list, whose items are a pass
name, a pipeline string like `tome(r=4)` (edgevit/passes/grammar.py), or a one-key mapping
`name: {option: value, ...}`:

    passes:
      - tome: {r: [8, 4, 2, 0]}
      - prune: {heads: 0.25, mlp: 0.3}
      - lowrank(ratio=0.5)
      - quant
"""

from __future__ import annotations

from typing import Any

import yaml

from edgevit.errors import UserInputError
from edgevit.passes.grammar import check_order, parse_pipeline_string
from edgevit.passes.registry import lookup_pass


def parse_pipeline_yaml(text: str, source: str = "YAML pipeline") -> list[tuple[str, dict[str, Any]]]:
    """A YAML pipeline (see the module docstring) -> [(name, options with defaults)]; UserInputError on
    mistakes (prefixed by `source`, e.g. the file name)."""
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
            passes.extend(_string_item(item, f"{source}: passes[{i}]"))
        elif isinstance(item, dict) and len(item) == 1:
            (name, raw), = item.items()
            passes.append((str(name), _yaml_options(str(name), raw, f"{source}: passes[{i}]")))
        else:
            raise UserInputError(f"{source}: passes[{i}] must be a pass name or a one-key mapping "
                                 f"`name: {{option: value}}` (got {item!r})")
    check_order(passes, source)
    return passes


def _string_item(text: str, where: str) -> list[tuple[str, dict[str, Any]]]:
    """A list item written as a pipeline string (one pass or several); no nested YAML or files."""
    if "\n" in text or text.strip().startswith("-") or text.strip().endswith((".yaml", ".yml")):
        raise UserInputError(f"{where}: expected a pass like tome(r=4) (got {text!r})")
    return parse_pipeline_string(text)


def _yaml_options(name: str, raw: Any, where: str) -> dict[str, Any]:
    """Typed, checked options of pass `name` from a YAML mapping (None: all defaults)."""
    pdef = lookup_pass(name, where)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: options of {name} must be a mapping like {{option: value}} (got {raw!r})")
    opts = pdef.defaults()
    for key, value in raw.items():
        option = pdef.option(key)
        if isinstance(value, bool) or not isinstance(value, (int, float, str, list)):
            raise UserInputError(f"{name}: {key} must be {option.describe()} (got {value!r})")
        opts[key] = option.check(name, key, value)
    return opts
