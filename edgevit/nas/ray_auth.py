"""Ray token authentication, checked when `edgevit search --ray-address` starts, not hours later.

A Ray cluster may require a token from every client (Ray's token authentication: `RAY_AUTH_MODE=token`
when it started, or an existing `~/.ray/auth_token` on the head, which makes `ray start` enable it).
A client then needs `RAY_AUTH_MODE=token` and the cluster's token (`RAY_AUTH_TOKEN`, the file named by
`RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`); without them `ray.init` retries for about 20 s and
reports only "Failed to connect to Ray cluster", hiding the cause.

`check_ray_auth(address)` asks the cluster's GCS for its id with Ray's own client, which sends the
token the way `ray.init` would: a refused token is one UserInputError saying where tokens come from
and which of those places this machine has, a GCS that does not answer within `timeout_s` one
saying so. Addresses of Ray Client servers (`ray://...`) and "auto" are not probed.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgevit.errors import UserInputError

PROBE_TIMEOUT_S = 20.0


def token_places() -> str:
    """Where this machine has a Ray token, for messages: e.g. "RAY_AUTH_TOKEN is not set,
    /root/.ray/auth_token exists, RAY_AUTH_MODE is not set"."""
    parts = [f"RAY_AUTH_TOKEN is {'set' if os.environ.get('RAY_AUTH_TOKEN') else 'not set'}"]
    path_var = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path_var:
        parts.append(f"RAY_AUTH_TOKEN_PATH={path_var} ({'exists' if Path(path_var).is_file() else 'missing'})")
    default = Path.home() / ".ray" / "auth_token"
    parts.append(f"{default} {'exists' if default.is_file() else 'does not exist'}")
    mode = os.environ.get("RAY_AUTH_MODE")
    parts.append(f"RAY_AUTH_MODE is {mode!r}" if mode else "RAY_AUTH_MODE is not set")
    return ", ".join(parts)


def _probe(address: str, result: dict) -> None:
    try:
        from ray._raylet import GcsClient  # Ray's GCS client: it adds the token as ray.init does

        GcsClient(address=address)
        result["ok"] = True
    except Exception as e:  # ray.exceptions.AuthenticationError, RpcError (timeouts), anything else
        result["error"] = e


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null for the duration (C++ logging bypasses sys.stderr)."""
    try:
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        yield
        return
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_ray_auth(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """UserInputError when the Ray cluster at `address` ("host:port", its GCS) refuses this client's
    token or does not answer within `timeout_s` (see the module doc); nothing when it accepts it."""
    text = address.strip()
    if text == "auto" or "://" in text:
        return
    result: dict = {}
    probe = threading.Thread(target=_probe, args=(text, result), daemon=True, name="ray-auth-probe")
    with _quiet_stderr():  # Ray's C++ client logs each refused attempt; the error below says it once
        probe.start()
        probe.join(timeout_s)
    if result.get("ok"):
        return
    error = result.get("error")
    if error is None:
        raise UserInputError(f"--ray-address {address}: the port is open but no Ray cluster answered within "
                             f"{timeout_s:.0f} s; pass the address `ray start --head` prints (its GCS port, "
                             "default 6379)")
    if type(error).__name__ == "AuthenticationError":
        raise UserInputError(
            f"--ray-address {address}: the Ray cluster requires token authentication and refused this client "
            f"({str(error).split('.')[0]}). On this machine: {token_places()}. Set RAY_AUTH_MODE=token and give "
            "the cluster's token (the head's ~/.ray/auth_token, or `ray get-auth-token` there) as RAY_AUTH_TOKEN, "
            "in the file named by RAY_AUTH_TOKEN_PATH or in ~/.ray/auth_token; see the README (Ray)") from None
    raise UserInputError(f"--ray-address {address}: no Ray cluster answers there ({error}); pass the address "
                         "`ray start --head` prints") from None
