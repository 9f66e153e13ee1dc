"""The generated-code fuzzer: random ViTSpecs x random pass pipelines x random inputs, compiled for every
backend that exists and run, every output compared with the reference interpreter (codegen_cases.py).

Default run: two programs per host backend (the MCU's C firmware under ASan/UBSan on this machine's
gcc, and the CPU library likewise). Slow run (`make test-all`): EDGEVIT_CODEGEN_FUZZ_PROGRAMS programs
(default 1000) over the host backends and the emulators (the MCU firmware on qemu-system-arm, the
Arm CPU library on qemu-aarch64); the test fails if fewer programs were checked than asked for.
EDGEVIT_FUZZ_LOG=FILE appends one JSON line per case; with EDGEVIT_FUZZ_FINDINGS set (any value) the
slow run goes on after a failing program, logs it and fails at the end (without it, the first failure
fails the test and hypothesis shrinks it). docs/reliability.md gives the figures of the long runs.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import edgevit.targets
from tests.conftest import vit_specs
from tests.fuzz.codegen_cases import BACKENDS, CaseLog, Rejected, available_backends, check_case, draw_case

SHORT_PROGRAMS_PER_BACKEND = 2
LONG_PROGRAMS = int(os.environ.get("EDGEVIT_CODEGEN_FUZZ_PROGRAMS", "1000"))
FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz(tmp_factory, backends, programs: int, log: CaseLog, collect: bool = False) -> None:
    """Check `programs` hypothesis examples over `backends`, each a fresh case in its own directory; a
    case a pass refuses (UserInputError) is logged and does not count (hypothesis draws another). A
    failing case fails the test (hypothesis shrinks it), or with `collect` is logged and counted only."""

    @settings(max_examples=programs, **FUZZ_SETTINGS)
    @given(spec=vit_specs(), data=st.data())
    def one(spec, data) -> None:
        case = draw_case(data, spec, backends)
        try:
            log.add(check_case(case, tmp_factory.mktemp("case")))
        except Rejected as e:
            log.reject(case, str(e))
            assume(False)
        except Exception as e:  # noqa: BLE001 - a wrong output, a build or run failure: all findings
            log.fail(case, e)
            if not collect:
                raise

    one()


def _log_path() -> Path | None:
    path = os.environ.get("EDGEVIT_FUZZ_LOG")
    return Path(path) if path else None


def test_every_target_has_a_fuzzed_backend() -> None:
    """A new target under edgevit/targets/ must be added to the fuzzer's BACKENDS."""
    kinds = {m.name for m in pkgutil.iter_modules(edgevit.targets.__path__)
             if m.ispkg and getattr(importlib.import_module(f"edgevit.targets.{m.name}"), "TARGET", None)}
    assert kinds and kinds <= {b.target for b in BACKENDS}
    assert {b.target for b in BACKENDS if not b.slow_only} == kinds  # each also in the default run


@pytest.mark.parametrize("backend", [b for b in BACKENDS if not b.slow_only], ids=lambda b: b.name)
def test_random_programs_match_the_reference(tmp_path_factory, backend) -> None:
    if backend.missing():
        pytest.skip(f"{backend.name} needs {', '.join(backend.missing())}")
    log = CaseLog(_log_path())
    fuzz(tmp_path_factory, [backend], SHORT_PROGRAMS_PER_BACKEND, log)
    assert log.programs == SHORT_PROGRAMS_PER_BACKEND


@pytest.mark.slow
def test_many_random_programs_on_every_backend(tmp_path_factory) -> None:
    backends = available_backends(slow=True)
    log = CaseLog(_log_path())
    collect = bool(os.environ.get("EDGEVIT_FUZZ_FINDINGS"))
    fuzz(tmp_path_factory, backends, LONG_PROGRAMS, log, collect=collect)
    print(f"codegen fuzz: {log.programs} programs matched the reference {log.checked} ({log.ill_conditioned} of them "
          f"float32 with ill-conditioned vectors judged against float64), {len(log.failed)} did not, "
          f"{len(log.rejected)} rejected by a pass")
    assert not log.failed, f"{len(log.failed)} programs differ from the reference or failed to build / run: " + \
        "; ".join(log.failed[:5])
    assert log.programs >= LONG_PROGRAMS
    assert len(log.rejected) <= LONG_PROGRAMS // 20, log.rejected[:5]  # the strategy draws valid pipelines
