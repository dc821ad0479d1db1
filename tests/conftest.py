"""Test-suite settings: fast XLA compiles on CPU and a persistent compilation cache.

Tests here are dominated by XLA compile time (a jitted, vmapped meta-episode step takes seconds to compile
and milliseconds to run), so the suite lowers XLA's backend optimisation level, which cuts compile time
several-fold without changing results beyond float rounding, and keeps a persistent compilation cache outside
the repository. Set RL3JAX_TEST_FULL_XLA_OPT=1 to keep XLA's defaults, RL3JAX_TEST_NO_JAX_CACHE=1 to disable
the cache. XLA_FLAGS must be set before JAX starts its backend, hence at conftest import.
"""

import os

if not os.environ.get("RL3JAX_TEST_FULL_XLA_OPT"):
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = (_flags + " --xla_backend_optimization_level=0"
                                   " --xla_llvm_disable_expensive_passes=true").strip()

import jax  # noqa: E402

if not os.environ.get("RL3JAX_TEST_NO_JAX_CACHE"):
    from tests.helpers import TEST_CACHE_BYTES, TEST_CACHE_DIR

    jax.config.update("jax_compilation_cache_dir", TEST_CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_compilation_cache_max_size", TEST_CACHE_BYTES)  # with it, JAX's file lock

import functools  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

# `from tests.reference import ...` works with a bare `pytest` too (not only `python -m pytest`)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

#: tasks per variant in the shared pools (bandits are cheap to draw; JAX's Dirichlet is slow on CPU)
POOL_SIZES = {"bandit": 20000, "mdp": 200}


@functools.cache
def _task_pool(family: str):
    from rl3jax.envs.catalog import variants
    from rl3jax.envs.registry import make_env

    envs = {v: make_env(family, v) for v in variants(family)}
    keys = jax.random.split(jax.random.PRNGKey(0), POOL_SIZES[family])
    draw = jax.jit(lambda ks: {v: jax.vmap(e.sample_task)(ks) for v, e in envs.items()})
    return jax.device_get(draw(keys))


@pytest.fixture(scope="session")
def task_pool():
    """``task_pool(family) -> {variant: tasks}``: tasks of every variant, each drawn by the variant's own
    ``sample_task`` (vmapped over fixed keys), all in one jitted call per family and shared by the session."""
    return _task_pool
