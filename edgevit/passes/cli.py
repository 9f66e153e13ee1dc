"""`edgevit passes ...`: document the registered compiler passes and their options.

To be mounted by the main CLI as `edgevit passes` (`app.add_typer(passes_app, name="passes")`).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgevit.errors import UserInputError
from edgevit.passes.options import Option
from edgevit.passes.registry import PassDef, known_passes

app = typer.Typer(
    help="Compiler passes (token merging, pruning, low-rank, quantization): list them and their options.",
    no_args_is_help=True,
    add_completion=False,
)

EXAMPLE = 'edgevit eval MODEL --data fashion-mnist --passes "tome(r=4),prune(heads=0.25,mlp=0.3),quant(w=8,a=8)"'


def allowed(opt: Option) -> str:
    """What values an option accepts, for people."""
    return opt.describe()


def describe_pass(p: PassDef) -> dict[str, Any]:
    """JSON-able description of one pass: name, one-line doc, options (default, allowed values, doc)."""
    return {"name": p.name, "doc": p.doc,
            "options": {n: {"default": o.default, "allowed": allowed(o), "doc": o.doc} for n, o in p.options.items()}}


def describe_all() -> list[dict[str, Any]]:
    """Every registered pass, sorted by name (quant last: it must end a pipeline)."""
    passes = sorted(known_passes().values(), key=lambda p: (p.name == "quant", p.name))
    return [describe_pass(p) for p in passes]


@app.callback()
def main() -> None:
    """Compiler passes: `list` them all, `show` one."""


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print the passes and options as JSON.")) -> None:
    """List every pass with its options: default, allowed values and what it does."""
    passes = describe_all()
    if as_json:
        print(json.dumps(passes, indent=2))
        return
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the tables into 80 columns
        console = Console(width=160)
    for p in passes:
        table = Table(title=f"{p['name']}: {p['doc']}", title_justify="left")
        for col in ("option", "default", "allowed", "meaning"):
            table.add_column(col, no_wrap=col in ("option", "default"))
        for name, o in p["options"].items():
            table.add_row(name, escape(str(o["default"])), escape(o["allowed"]), escape(o["doc"]))
        console.print(table)
    console.print("Pipelines: passes separated by commas, quant last; or a YAML file. Example:", highlight=False)
    console.print(f"  {escape(EXAMPLE)}", highlight=False)


@app.command("show")
def show_cmd(name: str = typer.Argument(..., help="Pass name, e.g. tome.")) -> None:
    """Show one pass: its full description and options."""
    registry = known_passes()
    if name not in registry:
        raise UserInputError(f"unknown pass {name!r}; known passes: {', '.join(sorted(registry))}")
    p = registry[name]
    module = __import__(p.fn.__module__, fromlist=["__doc__"])
    print((module.__doc__ or p.doc).strip() + "\n\nOptions:")
    for opt, o in p.options.items():
        print(f"  {opt} (default {o.default}): {o.doc}; {allowed(o)}")
