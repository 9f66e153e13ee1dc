"""`edgevit profiles ...`: list the shipped device profiles and show one.

Errors are raised as ProfileError; the main CLI prints them and exits with code 2.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgevit.profiles.board_clock import clock_tree
from edgevit.profiles.machine import this_machine
from edgevit.profiles.profile import Profile, format_hz, list_profiles, load_profile

app = typer.Typer(
    help="Device profiles: list the shipped ones, show one (by name or YAML path).",
    no_args_is_help=True,
    add_completion=False,
)

_COLUMNS = (("name", "name"), ("kind", "kind"), ("core", "core"), ("clock", "clock"),
            ("SRAM/RAM", "ram"), ("flash", "flash"), ("emulator", "emulator"))


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of profile summaries."),
) -> None:
    """List the shipped profiles: name, kind, core, clock, SRAM/RAM, flash, emulator."""
    summaries = [load_profile(name).summary() for name in list_profiles()]
    if as_json:
        print(json.dumps(summaries, indent=2))
        return
    table = Table(title="shipped device profiles", title_justify="left")
    for title, _ in _COLUMNS:
        table.add_column(title, no_wrap=title in ("name", "kind", "clock"))
    for s in summaries:
        table.add_row(*(escape(s[key]) for _, key in _COLUMNS))
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)
    console.print("Show one with: edgevit profiles show NAME_OR_PATH", highlight=False)


def _rows(p: Profile) -> list[tuple[str, str]]:
    """(label, value) rows for `show`, grouped: device, memory, emulator, toolchain."""
    e, t = p.emulator, p.toolchain
    clock_label = "PS clock" if p.kind == "fpga" else "clock"
    rows = [("[bold]device[/]", ""), ("kind", p.kind), ("core", p.core), ("ISA", ", ".join(p.isa) or "-"),
            (clock_label, f"{format_hz(p.clock_hz)} ({p.clock_hz:,} Hz)"), ("[bold]memory[/]", "")]
    rows += [(escape(k), v) for k, v in p.memory_rows()]
    rows += [("[bold]emulator[/]", ""), ("kind", e.kind)]
    rows += [(k, v) for k, v in (("binary", e.binary), ("machine", e.machine), ("cpu", e.cpu)) if v]
    if e.memory_map:
        mm = e.memory_map
        rows += [("code origin", f"0x{mm.code_origin:08X}"), ("data origin", f"0x{mm.data_origin:08X}")]
    if e.uart:
        rows += [("uart", uart_text(e.uart))]
    rows += [("[bold]toolchain[/]", ""), ("cc", t.cc), ("cflags", " ".join(t.cflags) or "-"),
             ("ldflags", " ".join(t.ldflags) or "-")]
    if p.board:
        b = p.board
        rows += [("[bold]board[/]", ""), ("uart", uart_text(b.uart)), ("cycle counter", b.cycle_counter),
                 ("load address", f"0x{b.load_address:08X}")]
        rows += [("core clock", format_hz(b.core_clock_hz))] if b.core_clock_hz else []
        rows += [("clock set-up", f"{b.clock.driver}: {clock_tree(b.clock).describe()}")] if b.clock else []
        rows += [("flash", ", ".join(" ".join([m.tool, m.target or m.config or ""]).strip() for m in b.flash) or "-")]
    return rows


def uart_text(u) -> str:
    """One line for a profile's UART, e.g. "stm32-usart USART1 @ 0x40011000, 16 MHz, 115200 baud, TX PA9 RX PB7"."""
    pins = f", TX {u.tx} RX {u.rx}" if u.tx else ""
    return (f"{u.driver}{' ' + u.instance if u.instance else ''} @ 0x{u.base:08X}, {format_hz(u.clock_hz)}, "
            f"{u.baud} baud{pins}" + (f", IRQ {u.irq}" if u.irq is not None else ""))


@app.command("show")
def show_cmd(
    profile: str = typer.Argument(..., metavar="NAME_OR_PATH", help="A shipped profile name or a profile YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print the validated profile as JSON."),
) -> None:
    """Show one profile: core/ISA, clock, memories (human units and bytes), emulator, toolchain."""
    p = load_profile(profile)
    if as_json:
        print(json.dumps(p.model_dump(mode="json"), indent=2))
        return
    console = Console()
    console.print(f"[bold]{escape(p.name)}[/]" + (f" - {escape(p.description)}" if p.description else ""))
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column()
    for label, value in _rows(p):
        table.add_row(label if label.startswith("[bold]") else f"  {label}", escape(value))
    console.print(table)
    if p.emulator.kind == "native":  # run on this machine, yet described by fixed figures
        console.print(f"this machine: {escape(this_machine())} (not used: the profile's figures are fixed, so "
                      "artifacts are the same bytes on every machine)", highlight=False)
