"""The scripts in ``benchmarks/`` and ``examples/`` are not run by the suite (they are slow by design),
but each must at least import: a renamed helper otherwise breaks them silently."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/*.py")])


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_imports_and_has_a_main(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs the imports and definitions, not main(): each guards it
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
