"""Crash-safe writes of the search outputs: state and result JSON, best.yaml, front.png, the supernet
weights and training state, an adopted supernet. Each writer removes dead writers' leftovers
(keeping live ones) and replaces its target only whole."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch

from edgevit.data.normalize import Normalization
from edgevit.nas.evolve import write_json_atomic, write_state_meta
from edgevit.nas.plot import plot_front
from edgevit.nas.space import SearchSpace
from edgevit.nas.supernet import WEIGHTS_FILE, Supernet, save_supernet, supernet_info
from edgevit.nas.supernet_train import STATE_FILE, _save
from tests.atomic_helpers import check_atomic_writer

SPACE = SearchSpace(in_channels=1, num_classes=3, pool="cls", image_sizes=(8,), patch_sizes=(4,), embed_dims=(8,),
                    depths=(1,), heads=(1,), head_dim=4, mlp_ratios=(1.0,), lowrank_ratios=(1.0,), merge_rs=(0,),
                    name="atomic")


def test_state_and_result_json(tmp_path, monkeypatch):
    path = tmp_path / "front.json"
    check_atomic_writer(tmp_path, "front.json", lambda i: write_json_atomic(path, {"v": i}),
                  lambda: json.loads(path.read_text())["v"], monkeypatch)
    write_state_meta(tmp_path / "search_state.json", "meta", {"v": 1})
    assert json.loads((tmp_path / "search_state.json").read_text()) == {"meta": {"v": 1}}


def test_front_png(tmp_path, monkeypatch):
    path = tmp_path / "front.png"
    pts = [SimpleNamespace(accuracy=0.5 + 0.1 * i, memory_bytes=1024 * (i + 1)) for i in range(3)]

    def write(i):
        plot_front(path, pts, pts[:i], pts[0], 4096, title=f"version {i}")
        (tmp_path / "version").write_text(str(i))  # what the picture shows: recorded beside it

    seen = {}

    def read():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        return seen.setdefault(data, int((tmp_path / "version").read_text()))

    check_atomic_writer(tmp_path, "front.png", write, read, monkeypatch)


def test_supernet_weights_and_training_state(tmp_path, monkeypatch):
    sn = Supernet(SPACE, Normalization((0.5,), (0.25,)), seed=0)
    opt = torch.optim.AdamW(sn.parameters(), lr=1e-3)
    check_atomic_writer(tmp_path, WEIGHTS_FILE, lambda i: save_supernet(sn, tmp_path, {"step": i}),
                  lambda: supernet_info(tmp_path)["step"], monkeypatch)
    check_atomic_writer(tmp_path, STATE_FILE, lambda i: _save(tmp_path, sn, opt, i, 10, [], {}, "running"),
                  lambda: torch.load(tmp_path / STATE_FILE, weights_only=False)["step"], monkeypatch)


def test_adopted_supernet(tmp_path, monkeypatch):
    from edgevit.nas.reuse import adopt_supernet
    from edgevit.nas.search import SUPERNET_DIR

    sources = {}
    for i in (1, 2, 3):
        sources[i] = tmp_path / f"src{i}"
        save_supernet(Supernet(SPACE, Normalization((0.5,), (0.25,)), seed=i), sources[i], {"step": i})
    out = tmp_path / "out"
    dest_dir = out / SUPERNET_DIR
    dest_dir.mkdir(parents=True)
    check_atomic_writer(dest_dir, WEIGHTS_FILE, lambda i: adopt_supernet(sources[i], out, SPACE),
                  lambda: supernet_info(dest_dir)["step"], monkeypatch)
