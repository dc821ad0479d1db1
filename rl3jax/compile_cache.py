"""The commands' persistent compilation cache (JAX docs, "Persistent compilation cache"): a program compiled once
is read back by later runs of the same settings (``compile_cache``, which ``rl3jax.cli.main`` calls first). No JAX
at import."""

from __future__ import annotations

import errno
import os
import sys

from rl3jax.config import ConfigError

#: environment variable: the compilation cache's folder, or ``off`` (``compile_cache``)
COMPILE_CACHE_ENV = "RL3JAX_COMPILE_CACHE"
#: the compilation cache's size limit; beyond it JAX drops the least recently used programs
COMPILE_CACHE_BYTES = 2 << 30
#: programs that compile faster than this are not kept (JAX's default is 1 s: it would miss the initialisers)
COMPILE_CACHE_MIN_SECONDS = 0.1


def compile_cache(command: str, environ=os.environ) -> str | None:
    """Turns on JAX's persistent compilation cache (JAX docs, "Persistent compilation cache") for this process and
    the processes it starts, so a program compiled once is read back by later runs (a second ``rl3jax train`` of
    the same settings skips most of its compile seconds). Folder: ``$RL3JAX_COMPILE_CACHE``, else
    ``$XDG_CACHE_HOME/rl3jax/xla`` or ``~/.cache/rl3jax/xla``; at most ``COMPILE_CACHE_BYTES``, programs that
    compiled in ``COMPILE_CACHE_MIN_SECONDS`` or more (JAX's environment variables override both). Off for
    ``bench`` and the processes it starts (it times compilation) and with ``RL3JAX_COMPILE_CACHE=off``; a
    ``JAX_COMPILATION_CACHE_DIR`` the user set wins. Returns the folder in use, or None. Must run before JAX
    compiles anything.
    ConfigError when ``$RL3JAX_COMPILE_CACHE`` is a folder that cannot be made or written; the default folder
    failing is a note on stderr and no cache."""
    jax_config = sys.modules["jax"].config if "jax" in sys.modules else None  # the Python API, tests
    if environ.get("JAX_COMPILATION_CACHE_DIR") or (jax_config and jax_config.jax_compilation_cache_dir):
        return environ.get("JAX_COMPILATION_CACHE_DIR") or jax_config.jax_compilation_cache_dir
    if command == "bench":
        environ[COMPILE_CACHE_ENV] = "off"
    given = environ.get(COMPILE_CACHE_ENV, "")
    if given.lower() == "off":
        return None
    path = os.path.expanduser(given) or os.path.join(environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                      "rl3jax", "xla")
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as e:
        if given:
            raise ConfigError(f"{COMPILE_CACHE_ENV}={given!r}: cannot keep compiled programs there ({e.strerror}); "
                              f"give a writable folder, or 'off'") from None
        print(f"note: no compilation cache ({path}: {e.strerror}); set {COMPILE_CACHE_ENV} to a writable folder",
              file=sys.stderr)
        return None
    settings = {"jax_compilation_cache_dir": path, "jax_compilation_cache_max_size": COMPILE_CACHE_BYTES,
                "jax_persistent_cache_min_compile_time_secs": COMPILE_CACHE_MIN_SECONDS}
    for name, value in settings.items():  # the environment for the processes this one starts (sweeps, benches)
        environ.setdefault(name.upper(), str(value))
        if jax_config:  # applies if nothing has been compiled yet
            jax_config.update(name, type(value)(environ[name.upper()]))
    return path
