"""`edgevit run`: run an artifact's bundled test vectors on a runner and check every output.

    result = run_artifact("out/tiny", count=10)      # dict, JSON-able; the artifact's default runner
    art = load_artifact("out/tiny"); runner = pick_runner(art, "host")
    print_result(run_vectors(art, runner), Console(), runner)

Steps: verify the artifact (hashes), pick the runner among those the manifest's `target`
section lists, check its tools, build and run in a temporary directory, parse the EV lines
(protocol.py), compare with `vectors/expected.npy` (the reference interpreter's outputs:
bit-exact for integer outputs; float outputs within 1e-4 relative, see `outputs_match`), top-1
against `vectors/labels.npy`, and, when the runner counts instructions, turn its ticks into an
instruction count and a latency *estimate* at the profile's clock (the runner says what that
estimate is worth: `Runner.latency_note`, `Runner.uncounted_reason`). What a runner measured itself
(`RunOutput.extra`: e.g. a bench program's median / p90 latency, threads, peak RSS; runner.MEASURED_KEYS)
is merged into the result last, its `latency_note` replacing the one above.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from edgevit.errors import UserInputError
from edgevit.validate import finite_number
from edgevit.backend.artifact import Artifact, load_artifact
from edgevit.backend.protocol import DeviceRun, parse_output
from edgevit.backend.runner import Runner, Stage, get_runner
from edgevit.backend.vectors import Vectors

FLOAT_RTOL = 1e-4
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: more is a typo (and overflows some waits)
SHOWN_MISMATCHES = 10


def run_artifact(artifact: str | Path, runner: str | Runner | None = None, count: int | None = None,
                 sanitize: bool = False, timeout: float | None = None, progress: bool = True,
                 keep_build: Path | None = None) -> dict:
    """Build and run the first `count` (default: all) bundled vectors of `artifact` on `runner` (a name
    among the runners of the artifact's target, a Runner instance, or None: the artifact's default
    runner) and return the checked result dict.

    Keys: runner, source, profile, machine, clock_hz, artifact, count, bundled, dtype, matches,
    mismatches (first indices), match_rule, max_abs_error, top1, reference_top1, ticks (per vector),
    instructions_per_tick, instructions_per_inference, estimated_latency_ms, latency_note,
    elapsed_s, sanitize, and what the runner measured (runners that bench: latency_ms_median,
    latency_ms_p90, latency_ms_min, latency_ms_mean, threads, peak_rss_bytes, bench_runs, bench_warmup;
    runners whose ticks are core cycles: cycles_per_inference, latency_ms and its median / p90 / min / mean). Raises ArtifactError / ToolchainError / UserInputError (exit 2) and
    RunFailedError (exit 1) with messages for people."""
    art = load_artifact(artifact)
    art.refuse_inside(keep_build, "keep_build")  # a valid artifact stays valid after a run
    run = runner if isinstance(runner, Runner) else pick_runner(art, runner, sanitize=sanitize, keep_build=keep_build)
    return run_vectors(art, run, count=count, timeout=timeout, progress=progress)


def run_vectors(art: Artifact, run: Runner, count: int | None = None, timeout: float | None = None,
                progress: bool = True) -> dict:
    """Build and run the first `count` (default: all) bundled vectors of the loaded artifact `art`
    on the runner `run` (see pick_runner) and return the checked result dict (run_artifact's keys)."""
    check_timeout(timeout)
    vectors = art.load_vectors()
    count = resolve_count(count, vectors.count, art.root)
    profile = art.profile()
    run.check(art, profile)
    limit = timeout if timeout is not None else run.default_timeout(art, profile, count)
    with _progress(progress) as stage:
        out = run.execute(art, profile, count, limit, stage)
    device = parse_output(out.text, count, vectors.output_bytes, source=f"{out.source} output")
    result = {"runner": run.name, "source": out.source, "profile": profile.name,
              "machine": run.machine(profile), "clock_hz": int(profile.clock_hz), "artifact": str(art.root),
              "bundled": vectors.count, "sanitize": bool(run.sanitize), "elapsed_s": round(out.elapsed_s, 3)}
    result.update(check_outputs(device, vectors))
    if device.step_ticks:  # a profile_steps build (EV-STEPS lines): ticks per plan step, per vector
        result["step_ticks"] = [list(s) for s in device.step_ticks]
    result.update(timing(device.ticks, run, profile))
    result.update(out.extra)
    return result


def pick_runner(art: Artifact, name: str | None, **options) -> Runner:
    """The runner called `name` (None: the artifact's default runner) among those of the artifact's
    target; UserInputError (exit 2) listing the runners that can serve it otherwise."""
    from edgevit.backend.target import get_target

    info = art.target_info()
    target = get_target(info["kind"])
    chosen = name or info.get("default_runner") or target.default_runner
    if chosen not in info["runners"]:
        raise UserInputError(f"--runner {chosen!r} cannot run {art.root} (a {info['kind']} artifact); runners that "
                             f"can: {', '.join(info['runners']) or 'none'}")
    return get_runner(chosen, target, **options)


def check_timeout(timeout: float | None) -> float | None:
    """`timeout` (seconds, None: the runner's default) when it is a finite number in (0, MAX_TIMEOUT_S];
    UserInputError naming --timeout otherwise (nan and inf included)."""
    if timeout is None:
        return None
    try:
        return finite_number(timeout, "--timeout", low=0, low_open=True, high=MAX_TIMEOUT_S)
    except UserInputError:
        raise UserInputError(f"--timeout {timeout!r}: must be a positive number of seconds, at most "
                             f"{MAX_TIMEOUT_S:.0f} (leave it out for the runner's default)") from None


def resolve_count(count: int | None, bundled: int, root: Path) -> int:
    """`count` (default: all bundled vectors), UserInputError when the artifact bundles fewer."""
    if count is None:
        return bundled
    if count < 1:
        raise UserInputError(f"--count must be at least 1 (got {count})")
    if count > bundled:
        raise UserInputError(f"--count {count} but {root} bundles only {bundled} test vector"
                             f"{'s' if bundled != 1 else ''}; run with --count {bundled} or fewer, or recompile "
                             f"with `edgevit compile ... --vectors {count}`")
    return count


def device_outputs(device: DeviceRun, vectors: Vectors) -> np.ndarray:
    """The device's outputs as an array shaped like expected[:count] (same dtype)."""
    dtype, shape = vectors.expected.dtype, vectors.expected.shape[1:]
    return np.stack([np.frombuffer(v.data, dtype=dtype).reshape(shape) for v in device.vectors])


def outputs_match(outputs: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-vector bool [n], max |output - expected|) for outputs/expected of shape [n, ...].

    Integer dtypes: bit-exact. Floats: max |out - ref| <= 1e-4 x max |ref| over the vector
    (NaN never matches)."""
    n = outputs.shape[0]
    out = outputs.reshape(n, -1)
    ref = expected.reshape(n, -1)
    if np.issubdtype(ref.dtype, np.integer):
        diff = np.abs(out.astype(np.int64) - ref.astype(np.int64))
        return np.all(out == ref, axis=1), float(diff.max(initial=0))
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    scale = np.abs(ref.astype(np.float64)).max(axis=1, initial=0.0)
    worst = np.where(np.isnan(diff).any(axis=1), np.inf, diff.max(axis=1, initial=0.0))
    return worst <= FLOAT_RTOL * scale, float(worst.max(initial=0.0))


def check_outputs(device: DeviceRun, vectors: Vectors) -> dict:
    """count, dtype, matches, mismatches, match_rule, max_abs_error, top1, reference_top1."""
    outputs = device_outputs(device, vectors)
    n = outputs.shape[0]
    return compare_outputs(outputs, vectors.expected[:n], vectors.labels[:n])


def compare_outputs(outputs: np.ndarray, expected: np.ndarray, labels: np.ndarray) -> dict:
    """The checked figures of device outputs [n, ...] against the reference outputs [n, ...] (same dtype)
    and labels [n]: count, dtype, matches, mismatches (first indices), match_rule, max_abs_error, top1,
    reference_top1."""
    ok, max_err = outputs_match(outputs, expected)
    integer = np.issubdtype(expected.dtype, np.integer)
    return {"count": int(outputs.shape[0]), "dtype": str(expected.dtype), "matches": int(ok.sum()),
            "mismatches": [int(i) for i in np.flatnonzero(~ok)[:SHOWN_MISMATCHES]],
            "match_rule": "bit-exact" if integer else f"max |out - ref| <= {FLOAT_RTOL:g} x max |ref| per vector",
            "max_abs_error": max_err if not integer else int(max_err),
            "top1": _top1(outputs, labels), "reference_top1": _top1(expected, labels)}


def _top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    flat = outputs.reshape(outputs.shape[0], -1)
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.argmax(flat, axis=1) == labels.astype(np.int64)))


def timing(ticks: list[int], run: Runner, profile) -> dict:
    """ticks (per vector), instructions_per_tick, instructions_per_inference (mean ticks x the
    runner's instructions per tick) and estimated_latency_ms at the profile's clock (1 instruction
    per cycle), with latency_note: what the estimate is, or why there is none (both the runner's).
    When the runner's ticks are core cycles (`Runner.ticks_are_cycles`: a board's DWT CYCCNT) the
    latency is measured instead: cycles_per_inference (mean), latency_ms (mean cycles at the clock
    the core ran at, `Runner.cycle_clock_hz`) and its median / p90 / min / mean (measured_latency)."""
    per_tick = run.instructions_per_tick(profile) if run.counts_instructions else None
    result = {"ticks": ticks, "instructions_per_tick": per_tick, "instructions_per_inference": None,
              "estimated_latency_ms": None}
    if run.ticks_are_cycles and any(ticks):
        return {**result, **measured_latency(ticks, run.cycle_clock_hz(profile)), "latency_note": run.latency_note}
    why = run.uncounted_reason(profile, ticks)
    if why is not None:
        return {**result, "latency_note": f"no instruction count: {why}"}
    instructions = float(np.mean(ticks)) * per_tick
    return {**result, "instructions_per_inference": round(instructions),
            "estimated_latency_ms": instructions / float(profile.clock_hz) * 1e3, "latency_note": run.latency_note}


def measured_latency(cycles: list[int], clock_hz: float) -> dict:
    """cycles_per_inference (mean), latency_ms (mean), latency_ms_median, latency_ms_p90 (nearest rank),
    latency_ms_min and latency_ms_mean of per-inference core cycle counts at `clock_hz`."""
    ms = np.sort(np.asarray(cycles, dtype=np.float64)) / clock_hz * 1e3
    p90 = ms[max(0, int(np.ceil(0.9 * len(ms))) - 1)]
    return {"cycles_per_inference": round(float(np.mean(cycles))), "latency_ms": float(ms.mean()),
            "latency_ms_median": float(np.median(ms)), "latency_ms_p90": float(p90),
            "latency_ms_min": float(ms[0]), "latency_ms_mean": float(ms.mean())}


@contextmanager
def _progress(enabled: bool) -> Iterator[Stage]:
    if not enabled:
        yield lambda message: None
        return
    from rich.console import Console

    with Console(stderr=True).status("starting") as status:
        yield lambda message: status.update(message)


def print_result(result: dict, console, runner: Runner) -> None:
    """Print a run's result (from run_vectors on `runner`) for people on a Rich console."""
    n, ok = result["count"], result["matches"]
    console.print(f"[bold]{result['artifact']}[/] on {result['source']} (profile {result['profile']}), "
                  f"{n} vector{'s' if n != 1 else ''}")
    verdict = "[green]all match[/]" if ok == n else f"[bold red]{n - ok} MISMATCH[/] (first: {result['mismatches']})"
    console.print(f"  outputs        {ok}/{n} {result['match_rule']}  {verdict}  "
                  f"(max |error| {result['max_abs_error']:g})")
    console.print(f"  top-1          {result['top1']:.2%} on the device, {result['reference_top1']:.2%} reference")
    if result.get("streamed"):
        link = result["link"]
        console.print(f"  streamed       {n} images of {result['data']} ({result['resumed']} resumed from "
                      f"{result['results_file']}); {link['retransmissions']} retransmissions, protocol overhead "
                      f"{link['overhead']:.1%} of {link['bytes_sent'] + link['bytes_received']:,} bytes")
    if result["instructions_per_inference"] is not None:
        console.print(f"  instructions   {result['instructions_per_inference']:,} per inference "
                      f"({result['instructions_per_tick']:g} per {runner.tick_name})")
        console.print(f"  latency        ~{result['estimated_latency_ms']:.3f} ms at {result['clock_hz'] / 1e6:g} MHz "
                      "(an estimate, not a measurement)")
        console.print(f"                 [dim]{result['latency_note']}[/]")
    elif result.get("cycles_per_inference") is not None:
        console.print(f"  cycles         {result['cycles_per_inference']:,} per inference (mean, measured)")
        console.print(f"  latency        median {result['latency_ms_median']:.3f} ms, p90 {result['latency_ms_p90']:.3f} ms "
                      f"at {result['clock_hz'] / 1e6:g} MHz (measured)")
        console.print(f"                 [dim]{result['latency_note']}[/]")
        return
    elif result.get("latency_ms_median") is None:
        console.print(f"  latency        [dim]{result['latency_note']}[/]")
    if result.get("latency_ms_median") is not None:
        console.print(f"  latency        median {result['latency_ms_median']:.3f} ms, p90 {result['latency_ms_p90']:.3f} ms"
                      f" ({result['threads']} thread{'s' if result['threads'] != 1 else ''}, measured)")
        if result.get("peak_rss_bytes") is not None:
            console.print(f"  peak RSS       {result['peak_rss_bytes'] / 2**20:.1f} MiB")
        console.print(f"                 [dim]{result['latency_note']}[/]")
