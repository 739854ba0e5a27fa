"""The architecture (ARCHITECTURE.md) holds: imports point down the layers, light modules stay light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "flax", "optax", "ray")


def test_import_linter_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


@pytest.mark.parametrize(
    "module", ["operations.registry", "metacurio.core.program_io", "search.enumerate", "search.store", "search.predictor"]
)
def test_light_modules_import_without_jax_or_ray(module):
    # A fresh interpreter: this test process has long since imported JAX.
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {module} loads {result.stdout.strip()}"


def test_ray_pools_live_only_in_the_executor():
    users = sorted(
        str(path.relative_to(ROOT))
        for package in ("metacurio", "operations", "search", "envs")
        for path in (ROOT / package).rglob("*.py")
        if "ray.remote" in path.read_text(encoding="utf-8")
    )
    assert users == ["search/executor.py"]
