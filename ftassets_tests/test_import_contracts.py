"""The import contracts of pyproject.toml ``[tool.importlinter]``, checked with import-linter as part of the suite."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(contract: str) -> subprocess.CompletedProcess:
    code = (
        "from importlinter.cli import lint_imports; "
        f"raise SystemExit(lint_imports(config_filename='pyproject.toml', limit_to_contracts=({contract!r},), "
        "no_cache=True, no_logo=True))"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def module_cycles() -> list[list[str]]:
    """One shortest cycle per tangle of ``ftassets`` modules (function-level imports included), as module lists."""
    import grimp

    graph = grimp.build_graph("ftassets", cache_dir=None)
    imports = {
        module: {i for i in graph.find_modules_directly_imported_by(module) if i.startswith("ftassets")}
        for module in graph.modules
    }
    cycles, covered = [], set()
    for start in sorted(imports):
        if start in covered:
            continue
        previous, queue, last = {}, deque([start]), None
        while queue and last is None:
            module = queue.popleft()
            for imported in sorted(imports[module]):
                if imported == start:
                    last = module
                    break
                if imported not in previous:
                    previous[imported] = module
                    queue.append(imported)
        if last is None:
            continue
        path = [last]
        while path[-1] != start:
            path.append(previous[path[-1]])
        cycles.append([*reversed(path), start])
        covered.update(path)
    return cycles


def test_the_domain_code_imports_nothing_from_dagster_or_its_layer():
    result = lint_imports("domain-without-dagster")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_of_ftassets_imports_itself_through_others():
    cycles = module_cycles()
    assert not cycles, "import cycles (function-level imports included):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_package_of_ftassets_imports_itself_through_others():
    result = lint_imports("acyclic")
    cycles = "\n".join(" -> ".join(cycle) for cycle in module_cycles())
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\nmodule-level cycles:\n{cycles or 'none'}"
