"""The bench matrix: expansion order and keys, grouping by artifact, and cells whose runner cannot run
here skipped with the reason (before anything is compiled)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgevit.bench.config import load_config
from edgevit.bench.execute import run_cells
from edgevit.bench.matrix import expand, groups, unavailable_reason
from edgevit.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "edgevit" / "profiles"


def config(tmp_path: Path, profiles: list, passes=None, models=("fmnist-tiny", "fmnist-small")):
    data = {"vectors": 4, "models": [str(ROOT / "models" / m) for m in models],
            "passes": passes or {"int8": "quant(w=8,a=8)"}, "profiles": profiles}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def broken_board(tmp_path: Path, **replace: str) -> str:
    """The stm32f746-disco profile renamed 'broken-board' with text replaced (e.g. its compiler)."""
    text = (PROFILES / "stm32f746-disco.yaml").read_text().replace("name: stm32f746-disco", "name: broken-board")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "broken-board.yaml"
    path.write_text(text)
    return str(path)


def test_expansion_is_models_x_passes_x_profiles_x_runners_in_config_order(tmp_path):
    cfg = config(tmp_path, [{"profile": "stm32f746-disco", "runners": ["qemu", "host"]}, "host"],
                 passes={"int8": "quant(w=8,a=8)", "fp32": None})
    keys = [c.key for c in expand(cfg)]
    assert len(keys) == 2 * 2 * 3 == len(set(keys))
    assert keys[:4] == ["fmnist-tiny/int8/stm32f746-disco/qemu", "fmnist-tiny/int8/stm32f746-disco/host",
                        "fmnist-tiny/int8/host/host", "fmnist-tiny/fp32/stm32f746-disco/qemu"]
    assert keys[-1] == "fmnist-small/fp32/host/host"
    grouped = groups(expand(cfg))
    assert [len(g) for g in grouped] == [2, 1] * 4  # the MCU artifact is shared by its two runners
    assert {c.artifact_key for c in grouped[0]} == {"fmnist-tiny/int8/stm32f746-disco"}
    fields = expand(cfg)[0].fields()
    assert fields["target"] == "mcu" and fields["passes"] == "quant(w=8,a=8)" and fields["runner"] == "qemu"


def test_a_missing_cross_compiler_or_emulator_is_a_skip_reason(tmp_path):
    cfg = config(tmp_path, [broken_board(tmp_path, **{"cc: arm-none-eabi-gcc": "cc: no-such-arm-gcc"})])
    reason = unavailable_reason(expand(cfg)[0])
    assert "no-such-arm-gcc" in reason and "not found on PATH" in reason
    cfg = config(tmp_path, [broken_board(tmp_path, **{"binary: qemu-system-arm": "binary: qemu-system-nope"})])
    assert "qemu-system-nope" in unavailable_reason(expand(cfg)[0])
    assert unavailable_reason(expand(config(tmp_path, ["stm32f746-disco"]))[0]) is None


@pytest.mark.parametrize("jobs", [1, 2])
def test_unavailable_cells_are_skipped_with_the_reason_and_nothing_is_compiled(tmp_path, jobs):
    board = broken_board(tmp_path, **{"cc: arm-none-eabi-gcc": "cc: no-such-arm-gcc"})
    cfg = config(tmp_path, [{"profile": board, "runners": ["qemu"]}])
    said = []
    records = run_cells(cfg, tmp_path / "artifacts", jobs=jobs, say=said.append)
    assert [(r["key"], r["status"]) for r in records] == [("fmnist-tiny/int8/broken-board/qemu", "skipped"),
                                                          ("fmnist-small/int8/broken-board/qemu", "skipped")]
    assert all("no-such-arm-gcc" in r["reason"] and r["latency"] is None for r in records)
    assert not (tmp_path / "artifacts").exists()
    assert sum("skipped" in line and "no-such-arm-gcc" in line for line in said) == 2
    with pytest.raises(UserInputError, match="--jobs"):
        run_cells(cfg, tmp_path / "artifacts", jobs=0)
