"""The public API in harness/__init__.py: every name in ``__all__`` resolves, to the object of
the module it comes from (also after that module is unloaded and imported again, as pytest's
pytester does between in-process runs), and ``import harness`` loads no numpy, torch or jax."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parent.parent


def test_every_public_name_resolves_to_its_modules_object() -> None:
    import importlib

    for name in harness.__all__:
        module, attr = harness._EXPORTS[name]
        assert getattr(harness, name) is getattr(importlib.import_module(module, "harness"), attr), name
    assert set(harness.__all__) <= set(dir(harness))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        harness.check_layers  # noqa: B018
    except AttributeError as e:
        assert "check_layers" in str(e)
    else:
        raise AssertionError("no AttributeError")


def test_a_reimported_module_is_seen_not_a_stale_class() -> None:
    old = harness.Layout
    saved = {k: v for k, v in sys.modules.items() if k.startswith("harness.adapters.layouts")}
    try:
        for k in saved:
            del sys.modules[k]
        fresh = harness.Layout
        assert fresh is not old and fresh is sys.modules["harness.adapters.layouts"].Layout
    finally:
        sys.modules.update(saved)
    assert harness.Layout is old


def test_import_harness_loads_no_numpy_or_framework() -> None:
    code = "import harness, harness.cli, sys; print(sorted({'numpy', 'torch', 'jax'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
