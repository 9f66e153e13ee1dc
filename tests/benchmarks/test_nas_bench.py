"""benchmarks/nas.py's pure parts: per-profile fine-tune epochs and the front pick against fmnist-tiny's SRAM."""

from __future__ import annotations

import pytest

from benchmarks.nas import epochs_by_profile, parse_epochs, pick

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
