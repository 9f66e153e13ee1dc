"""Candidate evaluation for the search: supernet-inherited top-1 of many specs, in parallel.

An evaluator is a callable `evaluate([spec, ...]) -> [accuracy, ...]` (same order, each in
[0, 1]: `subnet_accuracy` on a fixed validation subset) with a `close()`; use it as a context
manager. Three kinds, chosen by `make_evaluator`:

- `InlineEvaluator` (`--workers 1`): this process, no pool.
- `LocalEvaluator` (default, `--workers N`): a `concurrent.futures.ProcessPoolExecutor`
  (forkserver context, spawn where forkserver does not exist); each worker loads the supernet
  checkpoint once in its initializer and runs torch with 1 thread; one task per spec.
- `RayEvaluator` (`--ray-address ADDR`): `ray.init(address=ADDR)` (an already initialised Ray
  is reused), the supernet is shipped ONCE with `ray.put` as an in-memory payload (remote nodes
  do not share our disk) and every spec is a `@ray.remote` task; each Ray worker process rebuilds
  the supernet once per payload and caches it. Ray is optional: `pip install 'edgevit[ray]'`; the
  Ray workers need edgevit installed in the same version.

All three give the same accuracies for the same specs (inference only, deterministic).
The pool starts lazily on the first call, so a search that has nothing left to evaluate
never pays for it.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgevit.data.dataset import ArrayDataset
from edgevit.errors import UserInputError
from edgevit.model.spec import ViTSpec

RAY_HINT = "pip install 'edgevit[ray]'"

# ---- worker-process side (module globals: one supernet per worker process) -------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(supernet_path: str, images: np.ndarray, labels: np.ndarray, threads: int) -> None:
    """ProcessPool initializer: torch threads, load the supernet once, keep the validation subset."""
    from edgevit.nas.supernet import load_supernet
    from edgevit.threads import apply_thread_policy

    apply_thread_policy(max(1, threads))  # this worker's share of the cores; BLAS on one thread
    _WORKER["supernet"] = load_supernet(Path(supernet_path))
    _WORKER["val"] = _dataset(images, labels)


def _worker_accuracy(spec: ViTSpec) -> float:
    """Top-1 of `spec` in a pool worker (after `_init_worker`)."""
    from edgevit.nas.supernet import subnet_accuracy

    return subnet_accuracy(_WORKER["supernet"], spec, _WORKER["val"])


def _dataset(images: np.ndarray, labels: np.ndarray) -> ArrayDataset:
    """An ArrayDataset over uint8 [N, C, H, W] images and int64 [N] labels (class names are not needed)."""
    classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 1)]
    return ArrayDataset(images, labels, classes, name="nas-val")


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


# ---- evaluators ---------------------------------------------------------------------------------------
class _Evaluator:
    """Base: context manager, `close()`; subclasses implement `__call__(specs) -> list[float]`."""

    kind = "base"
    parallelism = 1  # evaluations that can run at once

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release workers / connections (idempotent)."""

    def describe(self) -> str:
        """One line for the summary, e.g. "local pool of 2 processes"."""
        return self.kind


class InlineEvaluator(_Evaluator):
    """Evaluates specs in this process with an already loaded supernet."""

    kind = "inline"

    def __init__(self, supernet, val: ArrayDataset) -> None:
        self.supernet, self.val = supernet, val

    def __call__(self, specs: Sequence[ViTSpec]) -> list[float]:
        """Top-1 of each spec on the validation subset, in order."""
        from edgevit.nas.supernet import subnet_accuracy

        return [subnet_accuracy(self.supernet, s, self.val) for s in specs]

    def describe(self) -> str:
        return "inline (this process)"


class LocalEvaluator(_Evaluator):
    """A local process pool: `workers` processes, each loading the checkpoint at `supernet_path` once."""

    kind = "local"

    def __init__(self, supernet_path: Path, val: ArrayDataset, workers: int = 2, threads: int = 1) -> None:
        if workers < 1:
            raise UserInputError(f"--workers must be >= 1 (got {workers})")
        self.supernet_path, self.val, self.workers, self.threads = Path(supernet_path), val, workers, threads
        self.parallelism = workers
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_mp_context(), initializer=_init_worker,
                initargs=(str(self.supernet_path), self.val.images, self.val.labels, self.threads))
        return self._pool

    def __call__(self, specs: Sequence[ViTSpec]) -> list[float]:
        """Top-1 of each spec (one pool task per spec), in order."""
        if not specs:
            return []
        pool = self._ensure_pool()
        return [f.result() for f in [pool.submit(_worker_accuracy, s) for s in specs]]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> str:
        return f"local pool of {self.workers} processes"


# ---- Ray ------------------------------------------------------------------------------------------------
_RAY_CACHE: dict[str, Any] = {}  # payload id -> Supernet, per Ray worker process


def ray_module():
    """The `ray` module, or UserInputError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise UserInputError(f"--ray-address needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """UserInputError unless a TCP connection to `address` ("host:port" or "ray://host:port"; "auto" is
    not checked) opens within `timeout_s` — `ray.init` itself retries an unreachable address for minutes."""
    import socket

    text = address.split("://", 1)[-1].strip()
    if address.strip() == "auto":
        return
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserInputError(f"--ray-address {address!r}: expected host:port (the address `ray start --head` "
                             "prints, e.g. 10.0.0.5:6379) or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserInputError(f"--ray-address {address}: no Ray cluster answers there ({e.strerror or e}); start "
                             "one with `ray start --head` and pass the address it prints") from None


def _ray_accuracy(payload_id: str, payload: dict, images: np.ndarray, labels: np.ndarray, spec: ViTSpec) -> float:
    """Body of the Ray task: top-1 of `spec`; the supernet is rebuilt once per worker process and payload."""
    import torch

    from edgevit.nas.supernet import Supernet, subnet_accuracy

    supernet = _RAY_CACHE.get(payload_id)
    if supernet is None:
        torch.set_num_threads(1)
        _RAY_CACHE.clear()
        supernet = _RAY_CACHE[payload_id] = Supernet.from_payload(payload)
    return subnet_accuracy(supernet, spec, _dataset(images, labels))


class RayEvaluator(_Evaluator):
    """Runs every spec as a Ray task on the cluster at `address` (see the module doc)."""

    kind = "ray"

    def __init__(self, address: str, supernet, val: ArrayDataset) -> None:
        ray = self.ray = ray_module()
        self.address = address
        self._owns = not ray.is_initialized()
        if self._owns:
            from edgevit.nas.ray_auth import check_ray_auth

            check_ray_address(address)
            check_ray_auth(address)  # a refused token said as such, not as "cannot connect"
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR")
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserInputError(f"--ray-address {address}: cannot connect to a Ray cluster ({e}); start one "
                                     "with `ray start --head` and pass the address it prints") from None
        import hashlib

        payload = supernet.to_payload()
        digest = hashlib.sha1(b"".join(v.numpy().tobytes() for v in payload["state"].values())).hexdigest()[:16]
        self._payload_id = f"{digest}-{id(self)}"
        self._payload_ref = ray.put(payload)
        self._images_ref, self._labels_ref = ray.put(val.images), ray.put(val.labels)
        self._task = ray.remote(num_cpus=1)(_ray_accuracy)
        self.parallelism = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def __call__(self, specs: Sequence[ViTSpec]) -> list[float]:
        """Top-1 of each spec (one Ray task per spec), in order."""
        refs = [self._task.remote(self._payload_id, self._payload_ref, self._images_ref, self._labels_ref, s)
                for s in specs]
        return [float(a) for a in self.ray.get(refs)]

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns = False

    def describe(self) -> str:
        return f"Ray cluster at {self.address}"


def make_evaluator(supernet_path: Path, val: ArrayDataset, workers: int = 2, ray_address: str | None = None,
                   supernet=None) -> _Evaluator:
    """The evaluator for the options: Ray with `ray_address`, else inline for 1 worker, else a local pool.

    `supernet` (already loaded) saves a reload for the inline and Ray evaluators.
    """
    if ray_address:
        ray_module()
    if ray_address or workers == 1:
        if supernet is None:
            from edgevit.nas.supernet import load_supernet

            supernet = load_supernet(Path(supernet_path))
        if ray_address:
            return RayEvaluator(ray_address, supernet, val)
        return InlineEvaluator(supernet, val)
    return LocalEvaluator(supernet_path, val, workers)
