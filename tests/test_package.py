"""The package's face and its layers: `import synthvision` and the pure core load no torch, fsspec or
PIL (checked at runtime here; `lint-imports` checks the import graph, pyproject's contracts)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

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
