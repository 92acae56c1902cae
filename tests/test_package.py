"""The package's face and its layers: `import synthvision` and the pure core load no torch, fsspec or
PIL (checked at runtime here; `lint-imports` checks the import graph, pyproject's contracts), and no
module imports itself back, counting the imports inside functions and for type hints."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from graphlib import CycleError, TopologicalSorter

import pytest

from tests.conftest import REPO


def pure_core() -> list[str]:
    """The modules pyproject's import-linter contract keeps free of torch, fsspec and PIL."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(c["source_modules"] for c in contracts if c.get("forbidden_modules", [])[:1] == ["torch"])


def loaded_after(code: str) -> set[str]:
    script = (
        f"import sys\n{code}\nprint(' '.join(sorted(m for m in ('torch', 'fsspec', 'PIL', 'prefect') if m "
        "in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    return set(result.stdout.split())


def test_the_pure_core_and_the_package_face_load_no_heavy_library():
    imports = "\n".join(f"import {name}" for name in pure_core())
    assert loaded_after(f"import synthvision\n{imports}\nsynthvision.load_config('configs/demo.yaml')") == set()
    assert loaded_after("from synthvision import Run, STAGES, load_config\nRun(load_config('configs/demo.yaml'))") == {
        "torch",
        "fsspec",
        "PIL",
    }


def test_the_face_names_what_it_exports():
    import synthvision
    from synthvision.run import Run

    assert synthvision.Run is Run and [s.name for s in synthvision.STAGES][:3] == ["prompts", "generate", "score"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        synthvision.nothing  # noqa: B018


def library_imports() -> dict[str, set[str]]:
    """Each library module's imports of library modules, wherever they stand (inside a function, under
    TYPE_CHECKING), read from its source: what lint-imports leaves out or may be told to exclude."""
    files = {}
    for path in (REPO / "synthvision").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:  # `from a.b import c`: c may be a function of a.b
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def test_no_library_module_imports_itself_back_wherever_its_imports_stand():
    graph = library_imports()
    # read wherever they stand: at the top, inside a function, for type hints only
    assert "synthvision.storage.store" in graph["synthvision.run"]
    assert "synthvision.models.generators" in graph["synthvision.run"]
    assert "synthvision.run" in graph["synthvision.stages.generate"]
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")
