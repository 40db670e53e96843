"""A faster cold start for the command line: the frameworks imported side by side, and JAX's
compiled programs kept on disk between runs.

Profiled on the bundled LeNet (2 cores): of a 4 s ``trigrad check``, importing torch took
1.5 s and jax 1.1 s one after the other, and compiling the JAX reference 1.3 s (six
programs: the whole network's pullback and the layers checked off a kink). Both levers here
are for processes trigrad owns (the ``trigrad`` command's child and its warm server,
:mod:`harness.server`); a library call never changes the caller's JAX settings.

- :func:`preload` imports jax (and the JAX reference) in a thread while the caller goes on
  with torch: extension-module loading and file reads overlap, 2.9 s of serial imports
  became 2.1-2.3 s. :func:`after_user_code` starts it once the user's code has run, so that
  settings it makes before ``import jax`` still count.
- :func:`use_compilation_cache` points JAX's persistent compilation cache at
  ``<cache>/jax`` (:func:`cache_dir`), with no minimum compile time, so a second run loads the
  six programs (~90 KB) instead of compiling them: the check itself went from 1.34 s to
  0.38 s. A cache folder the user configured for JAX is left as it is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# one per process: the import thread, if started (joined by whoever needs its modules)
_PRELOAD: list[threading.Thread] = []


def cache_dir() -> Path:
    """The folder trigrad keeps its caches in: ``$TRIGRAD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/trigrad``, else ``~/.cache/trigrad`` (not created here)."""
    explicit = os.environ.get("TRIGRAD_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "trigrad"


def caching_enabled() -> bool:
    """False when ``TRIGRAD_NO_CACHE`` is set to anything but ``0`` or an empty string."""
    return os.environ.get("TRIGRAD_NO_CACHE", "") in ("", "0")


def use_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in ``cache_dir() / "jax"`` for this process
    (imports jax). Returns the folder, or None when caching is off, the folder cannot be
    made, or the user already configured a cache folder of their own."""
    if not caching_enabled():
        return None
    import jax

    if getattr(
        jax.config, "jax_compilation_cache_dir", None
    ):  # the user's own (JAX_COMPILATION_CACHE_DIR): theirs wins
        return None
    folder = cache_dir() / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home, say: run without the cache rather than fail the check
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # a reference program compiles in 0.1-0.3 s, under JAX's default 1 s threshold for caching
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def _import_jax(cache: bool) -> None:
    try:
        if cache:  # before the reference module is importable, so no program compiles uncached
            use_compilation_cache()
        import reference_models.jax_ref  # noqa: F401  (jax, jax.numpy, lax and the reference)
    except Exception:  # the importer that needs it meets the error again and reports it
        pass


def preload(*, cache: bool = True) -> None:
    """Start importing jax and the JAX reference in a daemon thread (once per process), with
    the persistent compilation cache turned on first when ``cache``. numpy is imported
    before the thread starts: modules both frameworks import are then already loaded, so
    the two import chains share no module still being initialised."""
    if _PRELOAD:
        return
    import numpy  # noqa: F401

    thread = threading.Thread(target=_import_jax, args=(cache,), name="trigrad-preload", daemon=True)
    _PRELOAD.append(thread)
    thread.start()


def after_user_code() -> None:
    """In the command's child, once the user's module is imported and its target function has
    run: a served child whose user code set a variable the frameworks read at import time
    asks for a fresh interpreter (:class:`harness.server_child.Rerun`); a fresh child starts
    importing jax now, beside torch, and not earlier, so the user's own settings made before
    ``import jax`` still count."""
    from .server_child import Rerun, env_changed

    changed = env_changed()
    if changed:
        raise Rerun(f"your code set {', '.join(changed)} after the warm server imported torch and jax")
    preload()


def wait_preloaded() -> None:
    """Block until :func:`preload`'s imports are done (no-op when none was started)."""
    for thread in _PRELOAD:
        thread.join()


__all__ = ["after_user_code", "cache_dir", "caching_enabled", "preload", "use_compilation_cache", "wait_preloaded"]
