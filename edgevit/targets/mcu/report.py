"""report.md and memory.png: the human report of an artifact, rendered from its manifest (one
source of truth).

What was built (model, passes, program, device), the memory table against the naive plan and
the lower bound and against the device's budget, the per-kernel table, and how to build and run;
the arena timeline plot against the arena budget (SRAM - stack).
"""

from __future__ import annotations

from edgevit.backend.memory_plot import memory_png, planned_per_kernel


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B ({n / 1024:.1f} KiB)"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def memory_table(manifest: dict) -> str:
    """Markdown table of the memory figures (planner's numbers) vs naive, lower bound and budget."""
    m, b = manifest["memory"], manifest["budget"]
    sram = m["arena_bytes"] + m["stack_bytes"]
    rows = [
        ("arena (planned, allocated by model.c)", _kib(m["arena_bytes"]), _pct(m["arena_bytes"], m["naive_bytes"])
         + " of naive"),
        ("lower bound (largest live set)", _kib(m["lower_bound_bytes"]), _pct(m["lower_bound_bytes"], m["arena_bytes"])
         + " of arena"),
        ("naive plan (TFLite-Micro style)", _kib(m["naive_bytes"]), ""),
        ("stack (reserved)", _kib(m["stack_bytes"]), ""),
        ("**SRAM needed** (arena + stack)", _kib(sram), _pct(sram, b["sram_bytes"]) + f" of {_kib(b['sram_bytes'])}"),
        ("weights (flash, padded to 8)", _kib(m["weight_bytes"]), ""),
        ("code (estimate)", _kib(m["code_bytes"]), ""),
        ("**flash needed** (weights + code)", _kib(m["flash_bytes"]),
         _pct(m["flash_bytes"], b["flash_bytes"]) + f" of {_kib(b['flash_bytes'])}"),
    ]
    lines = ["| memory | bytes | |", "|---|---:|---|"]
    lines += [f"| {a} | {v} | {c} |" for a, v, c in rows]
    return "\n".join(lines)


def kernel_table(manifest: dict) -> str:
    """Markdown table: one row per Program kernel (step, op, MACs, bytes, arena offsets, C function)."""
    lines = ["| step | kernel | op | MACs | bytes (in+out+scratch) | arena offsets | C function |",
             "|---:|---|---|---:|---:|---|---|"]
    for k in manifest["kernels"]:
        offsets = ", ".join(f"{t}@{o}" for t, o in k["offsets"].items())
        funcs = ", ".join(f"`{f}`" for f in k["functions"]) or "(alias, no code)"
        step = "-" if k["step"] is None else str(k["step"])
        lines.append(f"| {step} | {k['name']} | {k['op']} | {k['macs']:,} | {k['bytes']:,} | {offsets} | {funcs} |")
    return "\n".join(lines)


def steps_table(manifest: dict) -> str:
    """Markdown table of the driver's steps (chains with their chunking)."""
    lines = ["| step | kernels | chunking | live bytes |", "|---:|---|---|---:|"]
    for s in manifest["steps"]:
        chunk = f"{s['chunk_rows']} of {s['rows']} rows" if s["chunk_rows"] else "whole tensors"
        live = "-" if s["live_bytes"] is None else f"{s['live_bytes']:,}"
        lines.append(f"| {s['index']} | {', '.join(s['kernels'])} | {chunk} | {live} |")
    return "\n".join(lines)


def _io(t: dict) -> str:
    q = f", scale {t['quant']['scale']:.6g}, zero point {t['quant']['zero_point']}" if t.get("quant") else ""
    return f"`{t['name']}` {t['shape']} {t['dtype']}{q}"


def how_to_run(manifest: dict) -> str:
    """The build and run instructions for the artifact's firmware and host builds."""
    p = manifest["profile"]
    emu = p["emulator"]
    n = manifest["vectors"]["count"]
    return "\n".join([
        "DIR is this directory. Check every bundled vector against the reference interpreter:", "",
        "    edgevit run DIR --runner qemu      # the firmware on the emulated board",
        "    edgevit run DIR --runner host      # the same C on this machine", "",
        "By hand:", "",
        f"    make -C DIR/firmware                    # firmware.elf with {p['toolchain']['cc']}, all {n} vectors",
        f"    {emu.get('binary') or 'qemu-system-arm'} -M {emu.get('machine')} -display none -monitor none "
        "-semihosting -icount shift=0 -kernel DIR/firmware/firmware.elf",
        "    make -C DIR/host && DIR/host/model_host  # the same with gcc (EDGEVIT_COUNT=n: the first n)", "",
        "Each vector prints `EV <index> <ticks> <output bytes in hex>`, then `EV-END <count>`; "
        "`vectors/expected.npy` holds the reference outputs, `vectors/labels.npy` the labels.",
        "To use the model in your own firmware, add `src/` to your build, include `edgevit_model.h` and call "
        "`edgevit_run(input, output)` (model.c includes kernels.c; do not compile kernels.c on its own).",
    ])


def render_memory_png(manifest: dict, naive_timeline: list[int]) -> bytes:
    """memory.png from a manifest: live bytes per kernel of its `steps` and of `naive_timeline` (the
    plan's naive timeline), the arena and the arena budget, SRAM - stack."""
    kernels, mem = manifest["kernels"], manifest["memory"]
    index = {k["name"]: i for i, k in enumerate(kernels)}
    return memory_png(title=f"{manifest['program']['name']} on {manifest['profile']['name']}: activation memory",
                      planned=planned_per_kernel(manifest["steps"], len(kernels), index), naive=list(naive_timeline),
                      arena_bytes=mem["arena_bytes"], naive_bytes=mem["naive_bytes"],
                      budget_bytes=manifest["budget"]["sram_bytes"] - mem["stack_bytes"], budget_what="SRAM - stack")


def render_report(manifest: dict) -> str:
    """report.md text from a manifest (without its `files` section)."""
    prog, p, v = manifest["program"], manifest["profile"], manifest["vectors"]
    m = manifest["memory"]
    top1 = "" if v.get("reference_top1") is None else f"; reference top-1 on them: {100 * v['reference_top1']:.1f}%"
    spec = (manifest.get("spec") or "").strip()
    parts = [
        f"# {prog['name']} for {p['name']}", "",
        f"- device: {p['name']} ({p['core']}, {p['memory']['sram_bytes'] / 1024:.0f} KiB SRAM, "
        f"{p['memory']['flash_bytes'] / 1024:.0f} KiB flash); emulator: {p['emulator'].get('machine')}",
        f"- passes: `{manifest['passes'] or '(none)'}`; lowering: {prog['lowering']}; kernel schedule: "
        f"{manifest['schedule']}",
        f"- program: {prog['kernels']} kernels, {prog['constants']} constants, {prog['macs']:,} MACs per image; "
        f"fingerprint `{prog['fingerprint'][:16]}`",
        f"- input {_io(prog['input'])}; output {_io(prog['output'])}",
        f"- test vectors: {v['count']} from {v['source']}{top1}", "",
        "## Memory", "",
        f"The arena is {_pct(m['naive_bytes'] - m['arena_bytes'], m['naive_bytes'])} smaller than the naive plan's. "
        "All figures are the static memory planner's; model.c allocates exactly the planned arena.", "",
        memory_table(manifest), "", "![arena timeline](memory.png)", "",
        "## Steps", "", steps_table(manifest), "",
        "## Kernels", "", kernel_table(manifest), "",
        "## Build and run", "", how_to_run(manifest), "",
    ]
    if spec:
        parts += ["## Architecture", "", "```yaml", spec, "```", ""]
    return "\n".join(parts)
