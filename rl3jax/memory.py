"""Memory: the limit that applies to this process (``memory_limit``: an accelerator's memory, else the
smallest of the address space left under ``ulimit -v``, the cgroup's memory left and ``MemAvailable``), and
the lower bounds of a command's work, checked before it starts. JAX is imported only inside the checks.
"""

from __future__ import annotations

import os
import re
import resource


def _read_bytes(path: str, key: str | None = None) -> int | None:
    """The number in file ``path`` (a cgroup file), or with ``key`` its ``key:  N kB`` line (a /proc file) in
    bytes; None where it is absent, or "max" (no limit)."""
    try:
        with open(path) as f:
            text = f.read()
        return int(text.split()[0]) if key is None else int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M)[1]) * 1024
    except (OSError, ValueError, IndexError, TypeError):
        return None


def host_limits() -> list[tuple[int, str]]:
    """(bytes left, what) for every host limit that applies (see the module docstring)."""
    out = []
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _read_bytes("/proc/self/status", "VmSize") or 0
        out.append((max(soft - used, 0), f"address space left under the limit of {_gib(soft)} (ulimit -v)"))
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2, v1
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_bytes(limit_file)
        if limit is not None and limit < 1 << 60:  # v1 writes a huge number for "no limit"
            left = limit - (_read_bytes(usage_file) or 0)
            out.append((max(left, 0), f"memory left under the cgroup limit of {_gib(limit)}"))
            break
    available = _read_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        out.append((available, "available host memory"))
    else:
        try:
            out.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host RAM"))
        except (ValueError, OSError, AttributeError):
            pass
    return out


def memory_limit() -> tuple[int | None, str]:
    """(bytes, what): the first device's memory where it reports a limit (an accelerator), else the smallest
    host limit (``host_limits``); (None, "memory") when nothing is known."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # CPU backends may not report memory
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{jax.devices()[0].device_kind} memory"
    return min(host_limits(), default=(None, "memory"))


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _tree_bytes(tree) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree)
               if hasattr(x, "dtype") and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))


def check_train_memory(trainer, members: int = 1, devices: int = 1) -> None:
    """ValueError (one line) when a lower bound of the memory one iteration needs exceeds ``memory_limit``:
    the training state (exact, ``jax.eval_shape`` of ``init``) plus the trajectory the PPO update reads whole
    (per env and step: the policy input, logits and 6 float32 scalars), plus for a transformer one float32
    attention-score matrix (H + 1)² per minibatch sequence (one head of one layer). Other activations come on top."""
    import jax

    cfg, m = trainer.cfg, trainer.meta_env
    state_bytes = _tree_bytes(jax.eval_shape(trainer.init, jax.random.key(0)))
    traj_bytes = 4 * cfg.num_envs * cfg.horizon * (m.obs_dim + m.num_actions + 6)
    if cfg.model.startswith("transformer"):
        traj_bytes += 4 * cfg.minibatch_envs * (cfg.horizon + 1) ** 2
    need = members * (state_bytes + traj_bytes) / max(devices, 1)
    limit, what = memory_limit()
    if limit is not None and need > limit:
        fix = (f"a smaller --set gru_hidden (now {cfg.gru_hidden})" if cfg.model == "gru" and state_bytes > traj_bytes
               else "fewer --num-envs, a shorter --horizon")  # the networks, or the batch, take the most
        raise ValueError(f"num_envs={cfg.num_envs} x horizon={cfg.horizon}"
                         f"{f' x {members} members' if members > 1 else ''} needs at least {_gib(need)} "
                         f"(training state {_gib(members * state_bytes)} + trajectory and attention {_gib(members * traj_bytes)}"
                         f"{f' over {devices} devices' if devices > 1 else ''}), more than the {_gib(limit)} of "
                         f"{what}; use {fix} or fewer seeds")


def check_eval_memory(meta_env, episodes: int) -> None:
    """ValueError (one line) when the held-out tasks and per-step rewards of ``episodes`` meta-episodes (all
    held at once: a lower bound) exceed ``memory_limit``."""
    import jax

    task_bytes = _tree_bytes(jax.eval_shape(meta_env.sample_task, jax.random.key(0)))
    need = episodes * (task_bytes + 4 * meta_env.horizon)
    limit, what = memory_limit()
    if limit is not None and need > limit:
        raise ValueError(f"--episodes {episodes} needs at least {_gib(need)} for the test tasks and rewards, more "
                         f"than the {_gib(limit)} of {what}; use fewer --episodes")


def out_of_memory(e: BaseException) -> str | None:
    """The one-line message for an allocation failure (``MemoryError``, XLA's ``RESOURCE_EXHAUSTED`` or "Out of
    memory allocating N bytes"), else None."""
    found = re.search(r"RESOURCE_EXHAUSTED[^\n]{0,120}|[Oo]ut of memory[^\n]{0,80}", str(e))
    if not isinstance(e, MemoryError) and not found:
        return None
    limit = min(host_limits(), default=(None, "memory"))[1]
    return (f"out of memory ({found.group(0).strip() if found else type(e).__name__}); the tightest limit here is "
            f"the {limit}: use fewer tasks (train: --num-envs, eval: --episodes), a shorter --horizon, or raise the limit")
