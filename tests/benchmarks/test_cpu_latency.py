"""benchmarks/cpu_latency.py: target verdicts and table from rows, the onnxruntime side on fmnist-tiny
(batch-1 export, QDQ int8, child-process timing), and (slow) the --quick path end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import cpu_latency_ort as ortb
from benchmarks.cpu_latency import DEIT, add_ratios, merge_rounds, parse_args, prepare_workdir, round_runs
from benchmarks.cpu_latency_report import compute_targets, status, table_lines

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"zoo": 60.0, DEIT: 300.0}


def _row(model: str, threads: int, ev32, ev8, ort32, ort8, compile_s=10.0, matches=5) -> dict:
    def cell(ms, **extra):
        return {"error": "boom"} if ms is None else {"latency_ms_median": ms, "peak_rss_bytes": 2**20, **extra}

    row = {"model": model, "threads": threads,
           "edgevit_f32": cell(ev32, compile_s=compile_s, matches=5, count=5),
           "edgevit_int8": cell(ev8, compile_s=compile_s, matches=matches, count=5),
           "ort_f32": cell(ort32, agreement=1.0), "ort_int8": cell(ort8, agreement=0.8)}
    add_ratios(row)
    return row


def test_ratios_and_passing_targets() -> None:
    rows = [_row("fmnist-tiny", 1, 0.9, 0.5, 1.0, 0.6), _row("fmnist-tiny", 2, 0.5, 0.3, 0.6, 0.4)]
    assert rows[0]["ratios"] == {"f32_vs_ort_f32": 0.9, "int8_vs_ort_f32": 0.5, "int8_vs_ort_int8": 0.833}
    targets = {t["name"]: t for t in compute_targets(rows, ["fmnist-tiny"], LIMITS, DEIT)}
    assert all(t["status"] == "PASS" for name, t in targets.items() if DEIT not in name), targets
    assert targets[f"compile of {DEIT} < 300 s"]["status"] == "N/A"
    assert set(targets["compile of a zoo model without tuning < 60 s"]["values"]) == {"fmnist-tiny f32",
                                                                                      "fmnist-tiny int8"}


def test_failing_and_missing_measurements() -> None:
    rows = [_row("fmnist-small", 1, 1.2, 0.7, 1.0, 0.6, compile_s=75.0, matches=4),
            _row(DEIT, 1, None, 30.0, 60.0, 40.0, compile_s=200.0)]
    t = {x["name"]: x for x in compute_targets(rows, ["fmnist-small", DEIT], LIMITS, DEIT)}
    assert t["float32 latency <= 1.0x onnxruntime float32"]["status"] == "FAIL"  # 1.2 fails, DeiT missing
    assert t["int8 latency <= 0.6x onnxruntime float32"]["status"] == "FAIL"  # 0.7
    assert t["int8 latency <= 1.0x onnxruntime int8"]["status"] == "FAIL"  # 0.7 / 0.6
    assert t["compile of a zoo model without tuning < 60 s"]["status"] == "FAIL"
    assert t[f"compile of {DEIT} < 300 s"]["status"] == "ERROR"  # its f32 cell has no compile time
    assert t["int8 outputs bit-exact vs the reference interpreter (host)"]["status"] == "FAIL"  # 4/5
    assert t["float32 outputs within 1e-4 relative of the reference (host)"]["status"] == "ERROR"  # DeiT f32 failed
    assert status({}, lambda v: True) == "N/A" and status({"a": None}, lambda v: True) == "ERROR"
    lines = table_lines(rows)
    assert len(lines) == 4 and "ERR" in lines[3] and "1.20x" in lines[2] and "4/5" in lines[2]


def test_parse_args_quick_and_errors(tmp_path) -> None:
    a = parse_args(["--quick", "--models", "fmnist-tiny", "--threads", "1"])
    assert (a.runs, a.vectors, a.models, a.threads) == (20, 8, ["fmnist-tiny"], [1])
    for bad in (["--models", "resnet"], ["--threads", "0"], ["--runs", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(SystemExit, match="not made by cpu_latency"):
        prepare_workdir(tmp_path)
    assert (tmp_path / "mine.txt").is_file()
    work = tmp_path / "w"
    prepare_workdir(work)
    (work / "old").mkdir()
    prepare_workdir(work)  # its own directory is emptied
    assert [p.name for p in work.iterdir()] == [".cpu_latency_workdir"]


def test_onnxruntime_side_on_fmnist_tiny(tmp_path) -> None:
    """Batch-1 export, QDQ int8 (QuantizeLinear / DequantizeLinear around the MatMuls), timing in a
    child whose peak RSS is its own (not its parent's) and whose outputs agree with torch."""
    import onnx
    import torch

    from edgevit.model.checkpoint import load_checkpoint
    from edgevit.model.onnx_export import export_onnx

    net = load_checkpoint(ROOT / "models" / "fmnist-tiny")
    x = np.random.default_rng(0).standard_normal((6, 1, 28, 28)).astype(np.float32)
    f32 = ortb.batch1_onnx(export_onnx(net, tmp_path / "m.onnx"), tmp_path / "f32.onnx")
    proto = onnx.load(str(f32))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1 and proto.ir_version <= 10
    int8 = ortb.quantize_qdq(f32, tmp_path / "int8.onnx", x)
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    np.save(tmp_path / "in.npy", x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    r = ortb.measure(f32, tmp_path / "in.npy", tmp_path / "out.npy", threads=1, runs=5, warmup=1)
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert ortb.top1_agreement(out, ref) == 1.0 and r["threads"] == 1 and r["runs"] == 5
    assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]
    assert 0 < r["baseline_rss_bytes"] <= r["peak_rss_bytes"] < 400 * 2**20  # this pytest process is larger
    assert ortb.top1_agreement(np.eye(3)[[0, 1, 1]], np.eye(3)[[0, 1, 2]]) == pytest.approx(2 / 3)


@pytest.mark.slow
def test_quick_run_on_fmnist_tiny(tmp_path) -> None:
    """The --quick path end to end (compiles and runs edgevit's library on the host): JSON shape."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_latency.py"), "--quick", "--models",
                        "fmnist-tiny", "--threads", "1", "--out", str(out), "--workdir", str(tmp_path / "w")],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["quick"] and doc["host"]["cpu"] and doc["host"]["versions"]["onnxruntime"]
    (row,) = doc["rows"]
    assert (row["model"], row["threads"], row["ort_inputs_equal_artifact"]) == ("fmnist-tiny", 1, True)
    for cell in ("edgevit_f32", "edgevit_int8", "ort_f32", "ort_int8"):
        assert row[cell]["latency_ms_median"] > 0 and row[cell]["peak_rss_bytes"] > 0, row[cell]
    assert row["edgevit_int8"]["matches"] == row["edgevit_int8"]["count"] == 8
    assert 0.0 <= row["ort_int8"]["agreement"] <= 1.0 and row["ort_f32"]["agreement"] == 1.0
    assert all(v is not None for v in row["ratios"].values())
    assert len(doc["targets"]) == 7 and "targets" in r.stdout and "fmnist-tiny" in r.stdout


def test_rounds_split_the_runs_and_merge_to_median_of_round_figures():
    assert round_runs(200, 5) == [40] * 5
    assert round_runs(7, 3) == [3, 2, 2] and sum(round_runs(7, 3)) == 7
    cells = [{"latency_ms_median": m, "latency_ms_p90": m + 1, "latency_ms_min": m - 1, "matches": k,
              "peak_rss_bytes": rss, "runs": 40} for m, k, rss in ((13.0, 50, 10), (17.0, 49, 12), (14.0, 50, 11))]
    merged = merge_rounds(cells)
    assert merged["latency_ms_median"] == 14.0 and merged["latency_ms_p90"] == 15.0
    assert merged["latency_ms_min"] == 12.0
    assert merged["matches"] == 49 and merged["peak_rss_bytes"] == 12  # the worst round counts
    assert merged["rounds_ms"] == [13.0, 17.0, 14.0] and merged["runs"] == 120
    assert merge_rounds(cells[:1] + [{"error": "boom"}])["error"] == "boom"


def test_rounds_option_is_checked():
    assert parse_args(["--rounds", "3"]).rounds == 3
    assert parse_args(["--runs", "2", "--rounds", "5"]).rounds == 2  # never more rounds than runs
    with pytest.raises(SystemExit):
        parse_args(["--rounds", "0"])
