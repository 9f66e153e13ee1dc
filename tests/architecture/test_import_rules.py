"""The layer rules of docs/architecture.md, checked on every import statement of the package
(module level and inside functions alike, since edgevit imports heavy modules lazily):

- only `edgevit/targets/<kind>/` may import `edgevit.targets.<kind>` (shared code finds a backend by name);
- `edgevit/passes` imports neither `edgevit.targets` nor `edgevit.backend` (costs are injected);
- `edgevit/model` never imports `edgevit.passes`;
- `edgevit/lower` (the IR, the interpreter and lowering) never imports `edgevit.passes`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "edgevit"


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in `source`, relative imports resolved against `module`
    (the dotted name of the file, e.g. "edgevit.passes.pipeline")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[:-node.level]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violation(module: str, imported: str) -> str | None:
    """Why `module` (dotted) may not import `imported` (dotted), or None when the rules allow it."""
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    parts = imported.split(".")
    if within(imported, "edgevit.targets") and len(parts) >= 3:
        owner = ".".join(parts[:3])
        if not within(module, owner):
            return f"only {owner.replace('.', '/')}/ may import {owner} (find targets with get_target)"
    if within(module, "edgevit.passes") and (within(imported, "edgevit.targets") or within(imported, "edgevit.backend")):
        return "passes import no target or backend code (inject costs instead)"
    if within(module, "edgevit.model") and within(imported, "edgevit.passes"):
        return "model never imports passes"
    if within(module, "edgevit.lower") and within(imported, "edgevit.passes"):
        return "lowering never imports passes"
    return None


def package_modules() -> list[tuple[Path, str]]:
    """(path, dotted module name) of every .py file under edgevit/."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] + ["__init__"]
        out.append((path, ".".join(parts)))
    return out


def test_the_package_follows_the_layer_rules() -> None:
    problems = []
    for path, module in package_modules():
        for line, imported in imported_modules(path.read_text(), module):
            why = violation(module, imported)
            if why:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}: {why}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, source, bad", [
    ("edgevit.backend.compile", "from edgevit.targets.mcu.emit import artifact_files", True),
    ("edgevit.backend.compile", "def f():\n    import edgevit.targets.mcu\n", True),
    ("edgevit.nas.estimate", "from edgevit.targets.mcu import latency", True),
    ("edgevit.targets.cpu.target", "from edgevit.targets.mcu.codesize import x", True),
    ("edgevit.passes.pipeline", "from edgevit.targets.mcu.target import McuTarget", True),
    ("edgevit.passes.pipeline", "from edgevit.backend.target import get_target", True),
    ("edgevit.passes.pipeline", "from ..backend import planner", True),
    ("edgevit.model.evaluate", "def f():\n    from edgevit.passes.pipeline import run_pipeline\n", True),
    ("edgevit.lower.from_quantized", "from edgevit.passes.qconfig import QuantConfig", True),
    ("edgevit.lower.from_quantized", "from ..passes import qconfig", True),
    ("edgevit.targets.mcu.emit", "from edgevit.targets.mcu import driver", False),
    ("edgevit.targets.mcu.emit", "from edgevit.backend.planner import plan_program", False),
    ("edgevit.backend.compile", "from edgevit.passes.pipeline import run_pipeline", False),
    ("edgevit.passes.quantize", "from edgevit.lower.qconfig import QuantConfig", False),
    ("edgevit.backend.target", "import importlib\nimportlib.import_module('edgevit.targets.' + name)", False),
])
def test_the_rule_checker_catches_each_kind_of_violation(module, source, bad) -> None:
    found = [violation(module, imported) for _, imported in imported_modules(source, module)]
    assert any(found) == bad, found
