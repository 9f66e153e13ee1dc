"""`edgevit search` checks its options, the profile, --space, --out and Ray (with token authentication)
before the dataset loads (nas/preflight.py, nas/ray_auth.py; issue #18 item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import edgevit.nas.ray_auth as ray_auth
from edgevit.errors import UserInputError
from edgevit.nas.preflight import preflight
from edgevit.nas.search import SearchOptions, run_search


class AuthenticationError(Exception):
    """Stands in for ray.exceptions.AuthenticationError (matched by name)."""


def test_a_refused_token_is_said_as_such_with_where_tokens_come_from(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setattr(ray_auth, "_probe", lambda address, result: result.update(
        error=AuthenticationError("RPC error: InvalidAuthToken: Authentication token is missing or incorrect. Note")))
    with pytest.raises(UserInputError) as e:
        ray_auth.check_ray_auth("10.0.0.5:6379")
    msg = str(e.value)
    assert msg.startswith("--ray-address 10.0.0.5:6379: the Ray cluster requires token authentication and refused")
    assert "RAY_AUTH_TOKEN is not set" in msg and f"{tmp_path}/.ray/auth_token does not exist" in msg
    assert "RAY_AUTH_MODE is not set" in msg and "Set RAY_AUTH_MODE=token" in msg and "README" in msg


def test_a_silent_port_and_other_errors(monkeypatch) -> None:
    monkeypatch.setattr(ray_auth, "_probe", lambda address, result: time.sleep(5))
    with pytest.raises(UserInputError, match=r"the port is open but no Ray cluster answered within 0 s"):
        ray_auth.check_ray_auth("10.0.0.5:6379", timeout_s=0.2)
    monkeypatch.setattr(ray_auth, "_probe", lambda address, result: result.update(error=RuntimeError("Timed out")))
    with pytest.raises(UserInputError, match=r"no Ray cluster answers there \(Timed out\)"):
        ray_auth.check_ray_auth("10.0.0.5:6379")
    monkeypatch.setattr(ray_auth, "_probe", lambda address, result: result.update(ok=True))
    ray_auth.check_ray_auth("10.0.0.5:6379")
    monkeypatch.setattr(ray_auth, "_probe", lambda address, result: pytest.fail("probed"))
    ray_auth.check_ray_auth("auto")
    ray_auth.check_ray_auth("ray://10.0.0.5:10001")


def test_preflight_runs_before_the_dataset_loads(monkeypatch, tmp_path) -> None:
    import edgevit.data as data

    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("the dataset was loaded"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    opts = SearchOptions(profile="stm32f746-disco", out=tmp_path / "taken", time_budget_s=30)
    with pytest.raises(UserInputError, match="not a search output directory"):
        run_search(opts)
    with pytest.raises(UserInputError, match="--latency-ms nan"):
        run_search(SearchOptions(profile="stm32f746-disco", out=tmp_path / "s", latency_ms=float("nan")))
    preflight(SearchOptions(profile="stm32f746-disco", out=tmp_path / "s"))  # a good set passes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


HEAD = textwrap.dedent("""\
    import sys, ray
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.read()
    ray.shutdown()
""")


@pytest.fixture
def token_cluster(tmp_path):
    """(GCS address, token) of a local Ray head started with token authentication in its own process
    and HOME; stopped (stdin closed -> ray.shutdown) after the test."""
    pytest.importorskip("ray")
    home = tmp_path / "head-home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_AUTH_TOKEN", None)
    head = subprocess.Popen([sys.executable, "-c", HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        address = head.stdout.readline().strip()
        assert address, "the Ray head did not start"
        yield address, (home / ".ray" / "auth_token").read_text().strip()
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            head.kill()


@pytest.mark.slow
def test_search_against_a_token_cluster_fails_up_front_and_says_why(token_cluster, tmp_path) -> None:
    address, token = token_cluster
    client_home = tmp_path / "client-home"
    client_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(client_home)
    out = tmp_path / "search"
    edgevit = str(Path(sys.executable).parent / "edgevit")
    t0 = time.monotonic()
    r = subprocess.run([edgevit, "search", "--profile", "stm32f746-disco", "--data", str(tmp_path / "none.npz"),
                        "--out", str(out), "--time-budget", "30s", "--ray-address", address],
                       capture_output=True, text=True, env=env, timeout=300)
    err = " ".join(r.stderr.split())
    assert r.returncode == 2 and "requires token authentication" in err and "RAY_AUTH_MODE=token" in err, err
    assert "Traceback" not in err and "gcs_client" not in err and not out.exists()
    assert time.monotonic() - t0 < 120  # not ray.init's 20 s of retries per attempt, nor any training
    ok = subprocess.run([sys.executable, "-c", f"from edgevit.nas.ray_auth import check_ray_auth; "
                                               f"check_ray_auth({address!r}); print('accepted')"],
                        capture_output=True, text=True, timeout=300,
                        env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    assert ok.returncode == 0 and "accepted" in ok.stdout, ok.stderr


def test_an_empty_split_is_refused_before_anything_trains() -> None:
    import numpy as np

    from edgevit.data.dataset import ArrayDataset, DatasetSplits
    from edgevit.errors import DataError
    from edgevit.nas.preflight import check_splits

    def ds(n: int, name: str) -> ArrayDataset:
        return ArrayDataset(np.zeros((n, 1, 8, 8), np.uint8), np.zeros(n, np.int64), ["a", "b"], name=name)

    check_splits(DatasetSplits(name="d", train=ds(4, "d/train"), val=ds(2, "d/val"), test=ds(0, "d/test")), "d")
    with pytest.raises(DataError, match=r"--data folder: the val split has no images; .*Nothing was written"):
        check_splits(DatasetSplits(name="d", train=ds(4, "d/train"), val=ds(0, "d/val"), test=ds(2, "d/test")),
                     "folder")
