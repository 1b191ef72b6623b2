"""A short soak inside make test: load, killed connections, cancelled statements; no violation."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_short_soak_under_faults_breaks_no_invariant():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    result = subprocess.run(
        [sys.executable, "-m", "soak", "--seconds", "8", "--workers", "3", "--accounts", "20", "--seed", "11"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = {
        name.strip(): int(value.replace(",", ""))
        for name, value in (line.rsplit(None, 1) for line in result.stdout.splitlines() if line.startswith("  "))
    }
    assert figures["violations"] == 0
    assert figures["succeeded"] > 0 and figures["invariants checked"] == 9
    assert "with 0 violations" in result.stdout
