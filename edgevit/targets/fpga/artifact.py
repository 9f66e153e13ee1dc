"""The files of an FPGA artifact, in memory (FpgaTarget.build).

    program/instructions.bin   the instruction stream, 32 bytes an instruction (docs/fpga-isa.md)
    program/weights.bin        the weight image the stream LOADs (DDR region `weights`)
    program/memory_map.json    the overlay parameters, the DDR regions (offsets from DDR_BASE), input/output
    rtl/overlay.json           the overlay's parameters and its control registers: what the hardware is
                               generated from
    rtl/overlay.v              the overlay's Verilog (module edgevit_overlay), generated from rtl/*.py for
                               these parameters (when the fpga extra, Amaranth + its Yosys, is installed);
                               cached under ~/.cache/edgevit/ by (parameters, hash of the RTL sources)
    driver/edgevit_overlay.py  PYNQ host driver (driver_pynq.py)
    driver/edgevit_overlay.{c,h}  bare-metal C driver for the Zynq's ARM core (driver_c.py)
    vectors/*.npy, report.md, manifest.json (partial: sealed by backend/artifact_write)

The manifest's `fpga` section records the overlay parameters, the stream's instruction counts per
opcode and the DDR size; runners check that program/memory_map.json and rtl/overlay.json describe the
same overlay. Nothing depends on the output path or the time: same inputs, same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from edgevit.backend.manifest import FORMAT, VERSION, manifest_json, program_summary, reference_top1
from edgevit.backend.vectors import Vectors, vector_npy_files
from edgevit.targets.fpga.config import OverlayConfig
from edgevit.targets.fpga.driver_c import c_header, c_source
from edgevit.targets.fpga.driver_pynq import pynq_driver
from edgevit.targets.fpga.isa import INSN_BYTES
from edgevit.targets.fpga.registers import AXI_LITE_BYTES, REGISTERS

INSTRUCTIONS = "program/instructions.bin"
WEIGHTS = "program/weights.bin"
MEMORY_MAP = "program/memory_map.json"
OVERLAY = "rtl/overlay.json"
VERILOG = "rtl/overlay.v"
# Bundle rtl/overlay.v for overlays up to this many PEs: pynq-z2's (128) converts in ~15 s once, then
# comes from the cache; zcu104's (1,024 PEs, a 64 x 16 array) takes many minutes, too long for a compile.
VERILOG_MAX_PES = 256
DRIVER_FILES = ("driver/edgevit_overlay.py", "driver/edgevit_overlay.c", "driver/edgevit_overlay.h")
PROGRAM_FILES = (INSTRUCTIONS, WEIGHTS, MEMORY_MAP, OVERLAY)


def json_text(data: dict) -> str:
    """Deterministic JSON text (sorted keys, indent 1, trailing newline)."""
    return json.dumps(data, sort_keys=True, indent=1, allow_nan=False) + "\n"


def overlay_verilog_text(cfg: OverlayConfig) -> str | None:
    """rtl/overlay.v for `cfg` (rtl.overlay_sim.overlay_verilog_cached), or None without the fpga extra or
    for an overlay of more than VERILOG_MAX_PES PEs."""
    if cfg.pes > VERILOG_MAX_PES:
        return None
    try:
        from edgevit.targets.fpga.rtl.overlay_sim import overlay_verilog_cached
        from edgevit.targets.fpga.rtl.verilator import ToolMissing
    except ImportError:
        return None
    try:
        return overlay_verilog_cached(cfg)
    except ToolMissing:
        return None


def overlay_json(cfg: OverlayConfig, profile, verilog: bool = False) -> dict:
    """rtl/overlay.json: the part, the overlay parameters and the control register map; `verilog`: whether
    rtl/overlay.v is bundled."""
    return {"part": profile.memory.part, "fabric_clock_hz": int(profile.memory.clock_hz), "overlay": cfg.to_dict(),
            "registers": [{"offset": r.offset, "name": r.name, "access": r.access, "meaning": r.meaning}
                          for r in REGISTERS],
            "axi_lite_bytes": AXI_LITE_BYTES, "verilog": VERILOG if verilog else None,
            "note": ("these are the overlay's parameters; " + (
                "rtl/overlay.v is its Verilog (module edgevit_overlay)" if verilog else
                f"its Verilog is not bundled (no fpga extra at compile time, or more than {VERILOG_MAX_PES} PEs: "
                "the conversion takes minutes): `python -m edgevit.targets.fpga.rtl.overlay rtl/overlay.json -o "
                "overlay.v` writes it") +
                     "; `edgevit run DIR --runner verilator` simulates it")}


def kernel_table(program) -> list[dict]:
    """The manifest's `kernels`: index, name, op and MACs of every Program kernel (all run on the overlay)."""
    from edgevit.lower.ops import get_op

    rows = []
    for i, k in enumerate(program.kernels):
        ins, outs = [program.tensors[t] for t in k.inputs], [program.tensors[t] for t in k.outputs]
        rows.append({"index": i, "name": k.name, "op": k.op, "macs": int(get_op(k.op).count_macs(k, ins, outs))})
    return rows


def build_manifest(*, program, profile, cfg: OverlayConfig, compiled, costs, vectors: Vectors, passes,
                   pass_reports) -> dict:
    """Every manifest section but `target` and `files` (added by backend/artifact_write.seal)."""
    stats = compiled.stats
    return {"format": FORMAT, "version": VERSION, "profile": profile.model_dump(mode="json"),
            "spec": program.meta.get("spec"), "passes": passes, "pass_reports": list(pass_reports or []),
            "program": program_summary(program), "kernels": kernel_table(program),
            "memory": {"act_peak_bytes": int(stats["act_peak_bytes"]), "act_bytes": cfg.act_bytes,
                       "weight_image_bytes": len(compiled.weights), "ddr_bytes": int(compiled.memory_map["ddr_bytes"])},
            "pools": [p.to_dict() for p in costs.pools],
            "fpga": {"overlay": cfg.to_dict(), "instructions": int(stats["instructions"]),
                     "op_counts": dict(sorted(stats["op_counts"].items())), "files": list(PROGRAM_FILES)},
            "vectors": {"count": vectors.count, "source": vectors.source, "inputs": "vectors/inputs.npy",
                        "expected": "vectors/expected.npy", "labels": "vectors/labels.npy",
                        "reference_top1": reference_top1(vectors)}}


def report_md(manifest: dict[str, Any]) -> str:
    """report.md: what was built, the overlay, its resources and how to run it."""
    p, f, m = manifest["program"], manifest["fpga"], manifest["memory"]
    o = f["overlay"]
    top1 = manifest["vectors"]["reference_top1"]
    pools = "".join(f"  - {q['name']}: {q['detail']} = {q['used']:,}{' ' + q['unit'] if q['unit'] else ''} of "
                    f"{q['budget']:,}\n" for q in manifest["pools"])
    ops = ", ".join(f"{k} {v}" for k, v in f["op_counts"].items())
    return (f"# {p['name']} on {manifest['profile']['name']} (fpga overlay)\n\n"
            f"- program: {p['lowering']}, {p['kernels']} kernels, {p['macs']:,} MACs; passes: "
            f"{manifest['passes'] or '(none)'}\n"
            f"- overlay: GEMM array {o['bm']} x {o['bk']} PEs, {o['vl']} vector lanes, ACT {o['act_bytes']:,} B, "
            f"WGT {o['wgt_tiles']} tiles, ACC {o['acc_rows']} rows, PARAM {o['param_words']} words, "
            f"{8 * o['bus_bytes']}-bit AXI, {o['clock_hz'] / 1e6:g} MHz\n"
            f"- stream: {f['instructions']:,} instructions ({ops}); weight image {m['weight_image_bytes']:,} B; "
            f"DDR area {m['ddr_bytes']:,} B; ACT peak {m['act_peak_bytes']:,} B\n"
            f"- resources:\n{pools}"
            + (f"- RTL: `{f['verilog']}` (the overlay's Verilog, module edgevit_overlay) and `rtl/overlay.json`\n"
               if f.get("verilog") else "- RTL: `rtl/overlay.json` only (the Verilog is not bundled: no fpga extra "
               f"at compile time, or an overlay of more than {VERILOG_MAX_PES} PEs, whose conversion takes minutes; "
               "`python -m edgevit.targets.fpga.rtl.overlay rtl/overlay.json -o overlay.v` writes it)\n")
            + 
            f"- vectors: {manifest['vectors']['count']} from {manifest['vectors']['source']}"
            + ("" if top1 is None else f" (reference top-1 {100 * top1:.1f}%)") + "\n\n"
            "## Use\n\n`edgevit run DIR` runs the bundled vectors on the functional simulator (`--runner fsim`: "
            "every instruction on NumPy memories, bit-exact with the reference; no timing); `--runner verilator` runs "
            "them on the overlay's RTL (cycles, PE utilization, stalls: docs/fpga-overlay.md). On a board: "
            "`driver/edgevit_overlay.py` (PYNQ: `python3 driver/edgevit_overlay.py BITFILE [COUNT]` prints the EV "
            "lines) or `driver/edgevit_overlay.{c,h}` (bare metal). The bitstream is not generated yet "
            "(docs/fpga-backend.md).\n")


def artifact_files(program, profile, cfg: OverlayConfig, compiled, costs, vectors: Vectors, *,
                   passes: str | None = None, pass_reports: list[dict] | None = None) -> dict[str, str | bytes]:
    """Every file of the FPGA artifact (module docstring) of `program` compiled to `compiled`
    (compiler.compile.CompiledProgram) for overlay `cfg` on `profile`."""
    mm = compiled.memory_map
    instructions = len(compiled.stream) // INSN_BYTES
    verilog = overlay_verilog_text(cfg)
    files: dict[str, str | bytes] = {
        INSTRUCTIONS: bytes(compiled.stream), WEIGHTS: bytes(compiled.weights), MEMORY_MAP: json_text(mm),
        OVERLAY: json_text(overlay_json(cfg, profile, verilog=verilog is not None)),
        **({VERILOG: verilog} if verilog is not None else {}),
        "driver/edgevit_overlay.py": pynq_driver(program.name, profile.name),
        "driver/edgevit_overlay.c": c_source(),
        "driver/edgevit_overlay.h": c_header(mm, instructions, program.name, profile.name),
        **vector_npy_files(vectors)}
    manifest = build_manifest(program=program, profile=profile, cfg=cfg, compiled=compiled, costs=costs,
                              vectors=vectors, passes=passes, pass_reports=pass_reports)
    manifest["fpga"]["verilog"] = VERILOG if verilog is not None else None
    files["report.md"] = report_md(manifest)
    files["manifest.json"] = manifest_json(manifest)
    return files
