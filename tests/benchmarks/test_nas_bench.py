"""benchmarks/nas.py's pure parts: per-profile fine-tune epochs and the front pick against fmnist-tiny's SRAM."""

from __future__ import annotations

import json

import pytest

from benchmarks.nas import compare, compute_matched, epochs_by_profile, parse_epochs, pick

PROFILES = ["stm32f746-disco", "nrf52840"]


def test_epochs_default_and_per_profile_overrides() -> None:
    assert epochs_by_profile("15+10", PROFILES) == {"stm32f746-disco": "15+10", "nrf52840": "15+10"}
    assert epochs_by_profile("15+10,nrf52840=4+2", PROFILES)["nrf52840"] == "4+2"
    assert epochs_by_profile("nrf52840=3", PROFILES) == {"stm32f746-disco": "15+10", "nrf52840": "3"}
    assert parse_epochs("4+2") == [4, 2]


@pytest.mark.parametrize("text, needle", [("x", "positive counts"), ("1+2+3", "positive counts"),
                                          ("nrf52840=0", "positive counts"), ("foo=1", "'foo' is not one")])
def test_bad_epochs_are_named(text: str, needle: str) -> None:
    with pytest.raises(SystemExit, match=needle):
        epochs_by_profile(text, PROFILES)


def test_pick_is_the_most_accurate_within_the_sram_limit() -> None:
    front = {"front": [{"accuracy": 0.80, "costs": {"sram_bytes": 10_000}},
                       {"accuracy": 0.85, "costs": {"sram_bytes": 20_000}},
                       {"accuracy": 0.90, "costs": {"sram_bytes": 30_000}}]}
    narrow = {"front": [{"accuracy": 0.86, "costs": {"sram_bytes": 24_000}},
                        {"accuracy": 0.85, "costs": {"sram_bytes": 15_000}}]}
    assert pick([front], 25_000)["accuracy"] == 0.85
    assert pick([front], 20_000)["accuracy"] == 0.85
    assert pick([front], 9_999) is None
    assert pick([front, narrow], 25_000)["accuracy"] == 0.86  # the narrow search's better candidate
    assert pick([front, narrow], 23_000)["costs"]["sram_bytes"] == 15_000  # tie on accuracy: smaller SRAM


def test_compute_matched_needs_tiny_macs_within_the_limit(tmp_path) -> None:
    def cand(acc, sram, macs):
        return {"accuracy": acc, "costs": {"sram_bytes": sram, "macs": macs}}

    for name, cands in {"a": [cand(0.86, 12_000, 1_000_000), cand(0.84, 22_000, 9_000_000)],
                        "b": [cand(0.85, 23_000, 8_000_000), cand(0.87, 30_000, 16_000_000)]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "candidates.json").write_text(json.dumps({"candidates": cands}))
    dirs = [tmp_path / "a", tmp_path / "b"]
    assert compute_matched(dirs, 24_000, 7_000_000)["accuracy"] == 0.85
    assert compute_matched(dirs, 24_000, 8_500_000)["accuracy"] == 0.84
    assert compute_matched(dirs, 20_000, 7_000_000) is None


def test_compare_counts_only_at_tinys_epochs() -> None:
    tiny = {"fp32_top1": 0.895, "sram_bytes": 24_392}
    assert compare({"fp32_top1": 0.90, "sram_bytes": 24_000}, tiny, "15+10")["met"] is True
    assert compare({"fp32_top1": 0.89, "sram_bytes": 24_000}, tiny, "15+10")["met"] is False
    short = compare({"fp32_top1": 0.90, "sram_bytes": 24_000}, tiny, "4+2")
    assert short["met"] is None and "indicative" in short["note"]
