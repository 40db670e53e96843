"""harness/warm.py: where the caches go, that JAX's persistent compilation cache is turned on
only in processes trigrad owns (never a library caller's) and never over the user's own
folder, and that a command-line check leaves its compiled programs there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import warm

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, os, sys
import harness as tg
from harness.warm import use_compilation_cache
import jax
import numpy as np
before = jax.config.jax_compilation_cache_dir
if "check" in sys.argv:  # a whole check, both references run, before the explicit call
    fwd = lambda x, w: (x @ w.T, (x, w))
    bwd = lambda g, cache: (g @ cache[1], g.T @ cache[0])
    layer = tg.wrap_functions(fwd, bwd, tg.Linear("fc", 3, 2, bias=False), params={"weight": np.ones((2, 3))})
    assert tg.check_layer(layer, input_shape=(4, 3)).ok
after_check = jax.config.jax_compilation_cache_dir
folder = use_compilation_cache() if sys.argv[1] == "turn-on" else None
print(json.dumps([before, after_check, None if folder is None else str(folder), jax.config.jax_compilation_cache_dir]))
"""


def _probe(env: dict[str, str], *actions: str) -> list:
    done = subprocess.run([sys.executable, "-c", PROBE, *actions], env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRIGRAD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert warm.cache_dir() == tmp_path / "xdg" / "trigrad"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert warm.cache_dir() == tmp_path / "home" / ".cache" / "trigrad"
    monkeypatch.setenv("TRIGRAD_CACHE_DIR", str(tmp_path / "mine"))
    assert warm.cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("value,on", [("", True), ("0", True), ("1", False), ("yes", False)])
def test_caching_enabled(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("TRIGRAD_NO_CACHE", value)
    assert warm.caching_enabled() is on


def test_library_calls_leave_jax_settings_alone(tmp_path: Path) -> None:
    before, after_check, folder, now = _probe({"TRIGRAD_CACHE_DIR": str(tmp_path)}, "turn-on", "check")
    assert before is None and after_check is None  # building and using trigrad changed nothing
    assert folder == now == str(tmp_path / "jax")  # only the explicit call (the CLI's child) does


def test_the_users_own_cache_folder_wins(tmp_path: Path) -> None:
    env = {"TRIGRAD_CACHE_DIR": str(tmp_path / "ours"), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "theirs")}
    _, _, folder, now = _probe(env, "turn-on")
    assert folder is None and now == str(tmp_path / "theirs")


def test_no_cache_and_unwritable_folder_mean_no_cache(tmp_path: Path) -> None:
    assert _probe({"TRIGRAD_CACHE_DIR": str(tmp_path), "TRIGRAD_NO_CACHE": "1"}, "turn-on")[2] is None
    blocker = tmp_path / "file"
    blocker.write_text("")
    _, _, folder, now = _probe({"TRIGRAD_CACHE_DIR": str(blocker / "sub")}, "turn-on")
    assert folder is None and now is None  # the check runs without the cache rather than failing


def test_a_command_line_check_fills_the_cache(tmp_path: Path) -> None:
    user = tmp_path / "user.py"
    user.write_text(
        "import numpy as np, harness as tg\n"
        "def layer():\n"
        "    w = np.random.default_rng(0).standard_normal((2, 3))\n"
        "    fwd = lambda x, w: (x @ w.T, (x, w))\n"
        "    bwd = lambda g, cache: (g @ cache[1], g.T @ cache[0])\n"
        "    return tg.wrap_functions(fwd, bwd, tg.Linear('fc', 3, 2, bias=False), params={'weight': w})\n"
    )
    env = {**os.environ, "TRIGRAD_CACHE_DIR": str(tmp_path / "cache"), "TRIGRAD_SERVER": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "check", "user.py:layer", "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "cache" / "jax").iterdir())  # the reference's compiled programs, for the next run
