"""Bench configuration validation: a good file loads; every mistake is one clear error naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgevit.bench.config import DEFAULT_CONFIG, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "models" / "fmnist-tiny")


def write(tmp_path: Path, data, name: str = "bench.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def good(**changes) -> dict:
    data = {"version": 1, "vectors": 8, "models": [TINY], "passes": {"int8": "quant(w=8,a=8)"},
            "profiles": [{"profile": "stm32f746-disco", "runners": ["qemu"]},
                         {"profile": "host", "runners": {"host": {"bench_runs": 10, "count": 4}}}]}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_good_config_loads_with_defaults_filled_in(tmp_path):
    cfg = load_config(write(tmp_path, good()))
    assert cfg.name == "bench" and cfg.vectors == 8 and cfg.kernel_profile_count == 3
    assert [m.name for m in cfg.models] == ["fmnist-tiny"] and cfg.passes == (("int8", "quant(w=8,a=8)"),)
    stm, host = cfg.profiles
    assert (stm.target, [(r.name, r.count) for r in stm.runners]) == ("mcu", [("qemu", 8)])
    assert host.target == "cpu" and host.runners[0].count == 4 and host.runners[0].options == {"bench_runs": 10}


def test_profile_without_runners_uses_the_targets_default_runner(tmp_path):
    cfg = load_config(write(tmp_path, good(profiles=["nrf52840", {"profile": "host"}])))
    assert [p.runners[0].name for p in cfg.profiles] == ["qemu", "host"]


def test_relative_model_paths_resolve_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "ckpt").symlink_to(TINY)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(write(tmp_path / "conf", good(models=[{"name": "t", "path": "ckpt"}])))
    assert cfg.models[0].name == "t" and cfg.models[0].path == Path(TINY).resolve()


def test_the_shipped_default_config_validates():
    cfg = load_config(None)
    assert cfg.path == DEFAULT_CONFIG
    assert [m.name for m in cfg.models] == ["fmnist-tiny", "fmnist-small"]
    assert [(p.profile.name, [r.name for r in p.runners]) for p in cfg.profiles] == [
        ("stm32f746-disco", ["qemu"]), ("nrf52840", ["qemu"]), ("host", ["host"])]


@pytest.mark.parametrize("changes, needle", [
    (dict(modles=[TINY]), "modles: unknown key (did you mean 'models'?)"),
    (dict(version=2), "version: this edgevit reads bench configuration version 1"),
    (dict(models=[]), "models: give a non-empty list"),
    (dict(models=["/no/such/checkpoint"]), "models[0]: no directory '/no/such/checkpoint'"),
    (dict(models=[{"name": "a"}]), "models[0]: missing `path`"),
    (dict(models=[TINY, TINY]), "models[1]: a second model named 'fmnist-tiny'"),
    (dict(models=[{"name": "a b", "path": TINY}]), "models[0].name: names may not contain"),
    (dict(passes={"int8": "quant(w=8,a=8"}), "passes.int8:"),
    (dict(passes={"int8": 8}), "passes.int8: a pipeline is a string"),
    (dict(vectors=0), "vectors: a whole number of at least 1"),
    (dict(count=20), "count: 20 but every artifact bundles only `vectors` = 8"),
    (dict(timeout=-1), "timeout: a positive number of seconds"),
    (dict(kernel_profile={"vectors": 2}), "kernel_profile.vectors: unknown key"),
    (dict(kernel_profile="yes"), "kernel_profile: true, false or {count: N}"),
    (dict(profiles=[{"profile": "no-such-board"}]), "profiles[0].profile:"),
    (dict(profiles=[{"profile": "host", "runner": ["host"]}]), "profiles[0].runner: unknown key (did you mean 'runners'?)"),
    (dict(profiles=[{"profile": "host", "runners": ["qemu-system"]}]),
     "profiles[0].runners.qemu-system: the cpu target of profile 'host' has no runner 'qemu-system'"),
    (dict(profiles=[{"profile": "stm32f746-disco", "runners": {"qemu": {"bench_runs": 5}}}]),
     "profiles[0].runners.qemu: --bench-runs: the qemu runner does not bench"),
    (dict(profiles=[{"profile": "stm32f746-disco", "runners": {"qemu": {"colour": 1}}}]),
     "profiles[0].runners.qemu: an option the qemu runner does not take"),
    (dict(profiles=[{"profile": "stm32f746-disco", "runners": {"qemu": {"count": 9}}}]),
     "profiles[0].runners.qemu.count: 9 but every artifact bundles only"),
    (dict(profiles=[{"profile": "stm32f746-disco", "compile": {"schedule": "slow"}}]), "profiles[0].compile:"),
    (dict(profiles=["host", "host"]), "profiles[1]: profile 'host' is listed twice"),
])
def test_mistakes_name_the_field(tmp_path, changes, needle):
    path = write(tmp_path, good(**changes))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert needle in str(e.value) and str(path) in str(e.value)
    assert e.value.exit_code == 2


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="no bench configuration file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "models: [a\n"))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n"))
