"""edgevit/validate.py: numbers, ranges, output places and the memory this process may still use."""

from __future__ import annotations

import math
import resource

import pytest

import edgevit.validate as validate
from edgevit.errors import InfeasibleError, UserInputError
from edgevit.validate import check_fits_memory, check_out, finite_number, int_in_range


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, float("1e999"), "abc", None])
def test_non_finite_numbers_are_refused_naming_the_option(value) -> None:
    with pytest.raises(UserInputError, match=r"^--lr .*: must be a finite number"):
        finite_number(value, "--lr")


@pytest.mark.parametrize("value, ok", [(0.0, False), (1e-9, True), (1.0, False), (0.5, True), (-0.1, False)])
def test_open_ranges(value, ok) -> None:
    if ok:
        assert finite_number(value, "--share", low=0, high=1, low_open=True, high_open=True) == value
    else:
        with pytest.raises(UserInputError, match=r"--share .*: must be a finite number in \(0, 1\)"):
            finite_number(value, "--share", low=0, high=1, low_open=True, high_open=True)


def test_closed_ranges_and_hints() -> None:
    assert finite_number(0, "--wd", low=0) == 0.0
    with pytest.raises(UserInputError, match=r"--timeout 10000000.0: must be a finite number <= 100; seconds"):
        finite_number(1e7, "--timeout", high=100, hint="seconds")


@pytest.mark.parametrize("value", [-1, 65536, True, 1.5, "3"])
def test_integers_out_of_range(value) -> None:
    with pytest.raises(UserInputError, match=r"--port .*: must be an integer in 1..65535"):
        int_in_range(value, "--port", low=1, high=65535)
    assert int_in_range(80, "--port", low=1, high=65535) == 80


def test_check_out_refuses_what_cannot_be_written(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserInputError, match="--out .*f: exists and is not a directory"):
        check_out(tmp_path / "f", "dir")
    with pytest.raises(UserInputError, match="is a directory"):
        check_out(tmp_path, "file")
    with pytest.raises(UserInputError, match="--out: give a path"):
        check_out("", "dir")
    assert check_out(tmp_path / "new" / "deeper", "dir") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probe left nothing, created nothing


def test_available_memory_takes_the_smallest_limit(monkeypatch) -> None:
    monkeypatch.setattr(validate, "_meminfo_available", lambda: 20 << 30)
    monkeypatch.setattr(validate, "_cgroup_room", lambda: 3 << 30)
    monkeypatch.setattr(validate, "_address_space_room", lambda: None)
    assert validate.available_memory() == (3 << 30, "the cgroup memory limit")
    monkeypatch.setattr(validate, "_address_space_room", lambda: 1 << 30)
    assert validate.available_memory() == (1 << 30, "the address-space limit (ulimit -v)")
    monkeypatch.setattr(validate, "_cgroup_room", lambda: None)
    monkeypatch.setattr(validate, "_address_space_room", lambda: None)
    assert validate.available_memory() == (20 << 30, "MemAvailable in /proc/meminfo")


def test_available_memory_on_this_machine_is_plausible() -> None:
    room, source = validate.available_memory()
    assert room is not None and room > 0 and source


def test_the_address_space_limit_is_seen(monkeypatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (50 << 30, resource.RLIM_INFINITY))
    room = validate._address_space_room()
    assert room is not None and 0 < room < 50 << 30


def test_cgroup_v1_and_v2_limits_are_read(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    real_path = Path

    def fake(where: str):
        where = str(where)
        if where == "/proc/self/cgroup":
            return real_path(tmp_path / "cgroup")
        if where.startswith("/sys/fs/cgroup"):
            return real_path(str(tmp_path / "sys") + where[len("/sys/fs/cgroup"):])
        return real_path(where)

    monkeypatch.setattr(validate, "Path", fake)
    (tmp_path / "cgroup").write_text("4:memory:/job\n0::/job\n")
    v1 = tmp_path / "sys" / "memory" / "job"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(4 << 30))
    (v1 / "memory.usage_in_bytes").write_text(str(1 << 30))
    assert validate._cgroup_room() == 3 << 30
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "no limit"
    v2 = tmp_path / "sys" / "job"
    v2.mkdir(parents=True)
    (v2 / "memory.max").write_text(str(2 << 30))
    (v2 / "memory.current").write_text(str(512 << 20))
    assert validate._cgroup_room() == (2 << 30) - (512 << 20)
    (v2 / "memory.max").write_text("max\n")
    assert validate._cgroup_room() is None


def test_check_fits_memory_gives_every_figure(monkeypatch) -> None:
    monkeypatch.setattr(validate, "available_memory", lambda: (1 << 30, "MemAvailable in /proc/meminfo"))
    check_fits_memory(1 << 29, "x")
    with pytest.raises(InfeasibleError, match=r"^big: training needs at least 2 GiB \(2,147,483,648 B: a \+ b\) but "
                                              r"this machine has 1 GiB available \(MemAvailable in /proc/meminfo\)\. "
                                              r"Shrink it\. Nothing was written\.$") as e:
        check_fits_memory(2 << 30, "big: training", "a + b", "Shrink it.")
    assert e.value.exit_code == 3
