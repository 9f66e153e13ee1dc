"""The CLI fuzzer: random and mutated inputs through every `edgevit` command, in-process.

Each hypothesis example gets its own directories (cli_strategies.World), draws one command line
(cli_strategies.py over the inputs of cli_inputs.py) and runs it through the console entry point
(cli_harness.run_invocation). The property (cli_harness.problems): exit 0, 2 or 3, never a
traceback, no bad value accepted with exit 0, nothing left in the output place unless the exit was 0,
nothing left in cwd or TMPDIR; and no command ever changes its inputs (compared at the end).

Default run: a short budget over the cheap commands and a couple of `run`s. Slow run:
EDGEVIT_CLI_FUZZ_EXAMPLES examples (default 2000) over every command, compile with full TVM builds
allowed; with EDGEVIT_FUZZ_FINDINGS=FILE it keeps going after a finding, writes each distinct one to
FILE (JSON lines) and fails at the end with their count (without it, the first finding fails the test
with its command line). EDGEVIT_FUZZ_TRACE=FILE logs every command line with its exit code and
time. docs/reliability.md records the long runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.cli_harness import describe, problems, run_invocation, snapshot
from tests.fuzz.cli_inputs import Assets
from tests.fuzz.cli_strategies import COMMANDS, World, draw_invocation

SHORT_EXAMPLES = 50
SHORT_RUN_EXAMPLES = 4
LONG_EXAMPLES = int(os.environ.get("EDGEVIT_CLI_FUZZ_EXAMPLES", "2000"))
CHEAP_COMMANDS = tuple(c for c in COMMANDS if c != "run")
TRACE = os.environ.get("EDGEVIT_FUZZ_TRACE")  # a file: one JSON line per command line run
# no shrinking: a finding is reported as its whole command line (cli_harness.describe), which is already
# a reproduction, and shrinking examples that each run a command can take many minutes
FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True,
                     phases=[Phase.explicit, Phase.reuse, Phase.generate])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """The valid base inputs (built once); the test fails if any command changed them."""
    a = Assets.build(tmp_path_factory.mktemp("fuzz-assets"))
    before = snapshot(a.root)
    yield a
    assert snapshot(a.root) == before, "a fuzzed command modified one of its input files"


class Findings:
    """Distinct findings of a collecting run (keyed by command and the first line of the problem)."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.seen = path, Counter()

    def add(self, outcome, found: list[str]) -> None:
        """Record one failing outcome (its first occurrence in detail)."""
        first = found[0].strip().splitlines()
        key = f"{outcome.invocation.command}: {first[0][:160]}"
        if found[0].startswith("exception escaped"):
            key = f"{outcome.invocation.command}: {first[-1][:160]}"
        elif found[0].startswith("exit 0 although"):
            flags = sorted({m.split()[0] for m in outcome.invocation.must_fail})
            key = f"{outcome.invocation.command}: accepted a bad {', '.join(flags)}"
        key = re.sub(r"x{20,}", "x...", re.sub(r"/tmp/edgevit-fuzz-\w+", "<example>", key))
        self.seen[key] += 1
        if self.seen[key] == 1 and self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps({"key": key, "command": describe(outcome), "problems": found}) + "\n")


def fuzz_cli(assets, monkeypatch, capsys, examples: int, commands, full_builds: bool,
             findings: Findings | None = None) -> Counter:
    """Run `examples` fuzzed command lines of `commands`; assert the property on each (or, with
    `findings`, record the problems and go on). Returns the count of examples per command and exit code."""
    tally = Counter()

    @settings(max_examples=examples, **FUZZ_SETTINGS)
    @given(data=st.data())
    def one(data) -> None:
        root = Path(tempfile.mkdtemp(prefix="edgevit-fuzz-"))
        try:
            world = World(root, assets)
            inv = draw_invocation(data, world, commands, full_builds)
            t0 = time.perf_counter()
            outcome = run_invocation(inv, world, monkeypatch, capsys)
            tally[(inv.command, outcome.code)] += 1
            found = problems(outcome)
            if TRACE:
                with open(TRACE, "a") as f:
                    f.write(json.dumps({"argv": inv.argv, "faults": inv.faults, "code": outcome.code,
                                        "seconds": round(time.perf_counter() - t0, 2),
                                        "err": outcome.err.strip().splitlines()[-1:], "problems": len(found)}) + "\n")
            if found and findings is not None:
                findings.add(outcome, found)
            else:
                assert not found, describe(outcome) + "\n\n" + "\n".join(found)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    one()
    return tally


def test_cheap_commands_never_crash(assets, monkeypatch, capsys) -> None:
    tally = fuzz_cli(assets, monkeypatch, capsys, SHORT_EXAMPLES, CHEAP_COMMANDS, full_builds=False)
    assert sum(tally.values()) == SHORT_EXAMPLES


def test_run_never_crashes(assets, monkeypatch, capsys) -> None:
    tally = fuzz_cli(assets, monkeypatch, capsys, SHORT_RUN_EXAMPLES, ("run",), full_builds=False)
    assert sum(tally.values()) == SHORT_RUN_EXAMPLES


@pytest.mark.slow
def test_long_cli_fuzz(assets, monkeypatch, capsys) -> None:
    path = os.environ.get("EDGEVIT_FUZZ_FINDINGS")
    findings = Findings(Path(path)) if path else None
    tally = fuzz_cli(assets, monkeypatch, capsys, LONG_EXAMPLES, tuple(COMMANDS), full_builds=True,
                     findings=findings)
    by_command, by_code = Counter(), Counter()
    for (command, code), n in tally.items():
        by_command[command] += n
        by_code[code] += n
    print(f"cli fuzz: {sum(tally.values())} command lines {dict(by_command)}; exit codes {dict(by_code)}")
    if findings is not None:
        print(f"distinct findings: {len(findings.seen)}")
        for key, n in findings.seen.most_common():
            print(f"  {n:5d}  {key}")
        assert not findings.seen, f"{len(findings.seen)} distinct findings, see {path}"
