"""Candidate evaluation: inline, local process pool and Ray tasks give the same accuracies.

The Ray tests start a local Ray instance in this process (`ray.init(num_cpus=1)`) and connect to
it by address, as `--ray-address` does with a real cluster; teardown shuts it down.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevit.data.dataset import ArrayDataset
from edgevit.data.normalize import Normalization
from edgevit.errors import UserInputError
from edgevit.nas.space import SearchSpace
from edgevit.nas.supernet import Supernet, save_supernet
from edgevit.nas.workers import InlineEvaluator, LocalEvaluator, RayEvaluator, make_evaluator

EDGEVIT = shutil.which("edgevit") or str(Path(sys.executable).parent / "edgevit")
SPACE = SearchSpace(in_channels=1, num_classes=4, pool="cls", image_sizes=(16, 12), patch_sizes=(4,),
                    embed_dims=(16, 24), depths=(1, 2), heads=(1, 2), head_dim=8, mlp_ratios=(1.0, 2.0),
                    lowrank_ratios=(1.0, 0.5), merge_rs=(0, 2), name="ray-test")


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory) -> Path:
    """A seeded (untrained) supernet of SPACE, saved like a trained one."""
    out = tmp_path_factory.mktemp("supernet")
    save_supernet(Supernet(SPACE, Normalization(mean=(0.3,), std=(0.25,)), seed=5), out)
    return out


@pytest.fixture(scope="module")
def val() -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (80, 1, 16, 16), dtype=np.uint8)
    return ArrayDataset(images, rng.integers(0, 4, 80), ["a", "b", "c", "d"], name="val")


@pytest.fixture(scope="module")
def specs():
    rng = random.Random(1)
    out = [SPACE.largest(), SPACE.smallest()] + [SPACE.sample(rng) for _ in range(6)]
    assert any(b.ranks for s in out for b in s.blocks) and any(b.merge_r for s in out for b in s.blocks)
    return out


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance started by this test module; its address, as a cluster's would be given."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_local_pool_matches_inline(supernet_dir, val, specs):
    from edgevit.nas.supernet import load_supernet

    inline = InlineEvaluator(load_supernet(supernet_dir), val)(specs)
    with LocalEvaluator(supernet_dir, val, workers=2) as pool:
        assert pool(specs) == inline
        assert pool([]) == []
    assert len(set(inline)) > 1  # the specs really differ


def test_ray_evaluator_matches_the_local_one(supernet_dir, val, specs, ray_address):
    from edgevit.nas.supernet import load_supernet

    with LocalEvaluator(supernet_dir, val, workers=1) as local:
        expected = local(specs)
    with make_evaluator(supernet_dir, val, workers=2, ray_address=ray_address) as remote:
        assert isinstance(remote, RayEvaluator) and ray_address in remote.describe()
        assert remote(specs) == expected
        assert remote(specs[:2]) == expected[:2]  # the worker's cached supernet is reused
    assert expected == InlineEvaluator(load_supernet(supernet_dir), val)(specs)


def test_ray_address_without_ray_installed_says_how_to_install(monkeypatch, supernet_dir, val, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(UserInputError, match=r"pip install 'edgevit\[ray\]'"):
        make_evaluator(supernet_dir, val, ray_address="127.0.0.1:6379")
    from edgevit.nas.search import SearchOptions, run_search

    with pytest.raises(UserInputError, match=r"--ray-address.*pip install 'edgevit\[ray\]'"):
        run_search(SearchOptions(profile="stm32f746-disco", out=tmp_path / "o", ray_address="127.0.0.1:6379"))
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_search_command_evaluates_on_the_ray_cluster(tmp_path, ray_address):
    """`edgevit search --ray-address` end to end (tiny synthetic data, 30 s budget)."""
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=rng.integers(0, 256, (300, 16, 16), dtype=np.uint8), y_train=rng.integers(0, 4, 300),
             x_test=rng.integers(0, 256, (40, 16, 16), dtype=np.uint8), y_test=rng.integers(0, 4, 40))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.to_yaml())
    out = tmp_path / "s"
    r = subprocess.run([EDGEVIT, "search", "--profile", "stm32f746-disco", "--data", str(data), "--space", str(space),
                        "--time-budget", "30s", "--out", str(out), "--population", "4", "--ray-address", ray_address,
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["evaluator"] == f"Ray cluster at {ray_address}" and summary["evaluated"] >= 4
    assert (out / "best.yaml").is_file() and (out / "front.png").is_file()


@pytest.mark.parametrize("address, message", [("127.0.0.1:1", "no Ray cluster answers there"),
                                              ("nonsense", "expected host:port")])
def test_unreachable_or_malformed_ray_address_fails_fast(address, message, tmp_path):
    pytest.importorskip("ray")
    from edgevit.nas.search import SearchOptions, run_search

    with pytest.raises(UserInputError, match=message):
        run_search(SearchOptions(profile="stm32f746-disco", out=tmp_path / "o", ray_address=address))
    assert not (tmp_path / "o").exists()
