"""benchmarks/gpu_proof.py as a user runs it, on this CPU with its tiny models: every row measured,
its numbers in range. (On a GPU it runs the released architectures; no test can need one.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def rows(table: str, first_cell: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith(f"| {first_cell}")
    ]


def test_gpu_proof_runs_on_a_cpu_with_tiny_models():
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_proof.py", "--tiny", "--batch", "2", "--batches", "1", "--images", "32"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("CPU; torch")
    (glide,) = rows(result.stdout, "GLIDE")
    dtype, compiled, batch, rate, base_s, up_s, busy = glide[1:8]
    assert (dtype, compiled, batch) == ("float32", "off", "2")
    assert float(rate) > 0 and float(base_s) > 0 and float(up_s) > 0
    assert 0.5 < float(busy) <= 1.0  # on a CPU the sampling loop is all model calls
    clips = rows(result.stdout, "CLIP")
    assert [(row[0], row[1]) for row in clips] == [
        (f"CLIP {model} via the score stage", image_format)
        for model in ("tiny-rn", "tiny")
        for image_format in ("png", "jpg")
    ]
    for row in clips:
        assert float(row[4]) > 0 and 0 < float(row[6]) <= 1.0
    assert "skipped" not in result.stdout
