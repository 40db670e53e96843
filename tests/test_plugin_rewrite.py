"""trigrad's own modules are not assertion-rewritten under pytest: a rewritten import runs
``ast.parse``, which CPython 3.11 cannot run in two threads at once, and a process's first
check imports the torch and jax references side by side (a first check inside a test died
with "SystemError: AST constructor recursion depth mismatch")."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["harness.compare", "reference_models._result", "reference_models.jax_losses"])
def test_trigrad_modules_are_imported_as_they_are(module: str) -> None:
    loaded = importlib.import_module(module)
    assert type(loaded.__loader__).__name__ != "AssertionRewritingHook", module
    assert "@py_assert" not in " ".join(loaded.__dict__)  # no rewritten-assert temporaries either
