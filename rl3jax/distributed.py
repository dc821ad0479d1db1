"""Multi-device and multi-host training (docs/SCALING.md): data parallelism as shardings over a mesh with one
``'data'`` axis. The task/env axis of everything per-task is split; parameters, optimiser states, key, counters
and hyper-parameters are replicated; the update's network passes run under ``shard_map`` (``data_parallel``).
Every process runs the same command (``initialize``); process 0 alone writes logs; orbax checkpoints are
written and read by all processes together.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


# ------------------------------------------------------------------------------------------ processes
def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
    """Calls ``jax.distributed.initialize`` when this is a multi-process run (any argument given, or its
    ``JAX_*`` variable set, or ``auto``: JAX's cluster auto-detection); returns whether it did (or had). Must
    run before anything touches a JAX backend. ValueError (one line) for an incomplete or bad set."""
    if jax.distributed.is_initialized():
        return True
    env = os.environ  # read where the flag is not given (JAX itself reads the first one)
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if not any(given) and not auto:
        return False
    if any(given) and not all(given) and not auto:
        raise ValueError("multi-host training needs all of --coordinator-address, --num-processes and "
                         "--process-id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or "
                         "--distributed for cluster auto-detection")
    if num_processes is not None and not 0 <= (process_id or 0) < num_processes:
        raise ValueError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    except (ValueError, RuntimeError) as e:
        if not auto or any(given):
            raise
        raise ValueError(f"--distributed: JAX's cluster auto-detection found no cluster to join ({e}); give "
                         "--coordinator-address, --num-processes and --process-id instead") from None
    return True


def is_main_process() -> bool:
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """All processes wait here (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def broadcast_flag(flag: bool) -> bool:
    """Process 0's boolean, on every process."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32)))


def check_same_settings(settings: dict) -> None:
    """The same one-line ``ValueError`` on every process, naming the fields, unless every process was started
    with the same ``settings`` (a JSON-able dict, gathered through the coordinator). No-op in one process."""
    if jax.process_count() == 1:
        return
    blob = np.frombuffer(json.dumps(settings, sort_keys=True).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(blob.size))).reshape(-1)
    padded = np.pad(blob, (0, int(sizes.max()) - blob.size))
    blobs = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    everyone = [json.loads(bytes(b[:n]).decode()) for b, n in zip(blobs, sizes)]
    diff = [f"{k} ({everyone[0].get(k)!r} on process 0, {s.get(k)!r} on process {p})"
            for p, s in enumerate(everyone) for k in sorted(set(s) | set(everyone[0]))
            if s.get(k) != everyone[0].get(k)]
    if diff:
        raise ValueError(f"the processes of this run were started with different settings: {'; '.join(diff[:6])}"
                         f"{f' and {len(diff) - 6} more' if len(diff) > 6 else ''}; start every process with "
                         "the same command (only --process-id differs)")


# ------------------------------------------------------------------------------------------ the mesh
def make_mesh(devices: int | None = None) -> Mesh | None:
    """A 1-D ``('data',)`` mesh of each process's first ``devices`` local devices (default all), ordered by
    process; ``None`` (one device, accepted by every helper here) for one. ValueError (one line) for
    ``devices`` < 1 or more than a process has."""
    per_process: dict[int, list] = {}
    for d in jax.devices():
        per_process.setdefault(d.process_index, []).append(d)
    local = min(len(v) for v in per_process.values())
    if devices is not None:
        if devices < 1:
            raise ValueError(f"--devices must be >= 1, got {devices}")
        if devices > local:
            raise ValueError(f"--devices {devices} asks for more devices than this process has ({local}: "
                             f"{', '.join(str(d) for d in jax.local_devices())})")
        local = devices
    chosen = [d for p in sorted(per_process) for d in sorted(per_process[p], key=lambda d: d.id)[:local]]
    if len(chosen) == 1:
        return None
    return Mesh(np.array(chosen), (AXIS,), axis_types=(AxisType.Auto,))


def mesh_size(mesh: Mesh | None) -> int:
    """Devices in ``mesh`` (1 for ``None``: one device)."""
    return 1 if mesh is None else int(mesh.devices.size)


def check_divisible(num_envs: int, mesh: Mesh | None) -> None:
    """ValueError (one line) unless num_envs splits evenly over the devices (minibatches need not)."""
    n = mesh_size(mesh)
    if num_envs % n:
        raise ValueError(f"num_envs={num_envs} is not divisible by the {n} devices of the mesh: each device "
                         f"plays an equal share of the tasks (use a multiple of {n}, or --devices to use fewer)")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def split_leading(tree: Any, mesh: Mesh | None) -> Any:
    """``with_sharding_constraint`` splitting the leading (env) axis of every leaf over the mesh (leaves whose
    leading axis does not divide evenly are left to the partitioner). Identity for ``mesh=None``."""
    if mesh is None:
        return tree
    n = mesh_size(mesh)
    split = NamedSharding(mesh, P(AXIS))

    def one(x):
        if getattr(x, "ndim", 0) < 1 or x.shape[0] % n or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        return jax.lax.with_sharding_constraint(x, split)

    return jax.tree.map(one, tree)


def data_parallel(fn, mesh: Mesh | None):
    """``fn(params, x)`` (a network's per-sequence pass) under ``jax.shard_map``: ``x``'s leading axis split,
    ``params`` replicated, so parameter cotangents are summed once (not at every step of a recurrent network).
    ``fn`` itself where the batch does not split evenly, or for ``mesh=None``."""
    if mesh is None:
        return fn
    n = mesh_size(mesh)
    # check_vma=False: networks start scans from fresh zero carries, which the varying-axis check rejects
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS), check_vma=False)

    def apply(params, x):
        return fn(params, x) if x.shape[0] % n else sharded(params, x)

    return apply


def state_shardings(state: Any, mesh: Mesh, num_envs: int, pop_dims: int = 0) -> Any:
    """Shardings of a ``TrainState`` (or a population of them, ``pop_dims`` leading axes): the env/estimator
    state split along its env axis (the leaves whose axis ``pop_dims`` has length ``num_envs``), everything
    else (params, optimiser states, key, counters) replicated. ``state`` may be abstract (``jax.eval_shape``)."""
    split = NamedSharding(mesh, P(*([None] * pop_dims), AXIS))
    rep = replicated(mesh)

    def env_leaf(x):
        return split if (x.ndim > pop_dims and x.shape[pop_dims] == num_envs) else rep

    return state.replace(**{f.name: jax.tree.map(env_leaf if f.name == "env_state" else (lambda _: rep),
                                                 getattr(state, f.name))
                            for f in dataclasses.fields(state)})


def jit_state(fn, mesh: Mesh | None, num_envs: int, pop_dims: int = 0):
    """``jax.jit(fn)`` for a function that returns a ``TrainState`` (``pop_dims`` population axes): with a mesh,
    its output in the training shardings (``state_shardings``); for ``mesh=None`` a plain ``jax.jit``."""
    if mesh is None:
        return jax.jit(fn)

    def run(*args):
        shardings = state_shardings(jax.eval_shape(fn, *args), mesh, num_envs, pop_dims)
        return jax.jit(fn, out_shardings=shardings)(*args)

    return run


def init_sharded(init_fn, mesh: Mesh | None, num_envs: int, pop_dims: int = 0, seed: int | None = None):
    """The initial ``TrainState`` (``pop_dims`` population axes) of ``init_fn()`` (``seed`` None) or
    ``init_fn(jax.random.key(seed))``, jitted straight into the training shardings; with a mesh the key is made
    inside, so nothing host-local enters a multi-process computation. On one device (``mesh=None``) the state is
    committed to its device (the default one), as a restored checkpoint is: the chunk program of a fresh run and
    of a resume is then one program (one compile, one persistent-cache entry), not two that differ in placement."""
    if mesh is None:
        state = jax.jit(init_fn)() if seed is None else jax.jit(init_fn)(jax.random.key(seed))
        return jax.device_put(state, next(iter(jax.tree.leaves(state)[0].devices())))  # where jit put it
    if seed is None:
        return jit_state(init_fn, mesh, num_envs, pop_dims)()
    return jit_state(lambda: init_fn(jax.random.key(seed)), mesh, num_envs, pop_dims)()


def sharded_chunk(chunk_fn, mesh: Mesh | None, num_envs: int, pop_dims: int = 0):
    """``chunk_fn(state, num_iters) -> (state, metrics)`` jitted per ``num_iters`` (static), the state donated;
    with a mesh, the state keeps its shardings and the metrics are replicated (every process reads them)."""
    if mesh is None:
        return jax.jit(chunk_fn, static_argnums=1, donate_argnums=0)
    cache: dict[int, Any] = {}

    def run(state, num_iters: int):
        if num_iters not in cache:
            sh = state_shardings(state, mesh, num_envs, pop_dims)
            cache[num_iters] = jax.jit(lambda s: chunk_fn(s, num_iters), in_shardings=(sh,),
                                       out_shardings=(sh, replicated(mesh)), donate_argnums=0)
        return cache[num_iters](state)

    return run


def describe(mesh: Mesh | None) -> str:
    """E.g. "1 device (cpu)", "4 devices (cpu) in 1 process" (for the CLI's first line)."""
    if mesh is None:
        return f"1 device ({jax.devices()[0].platform})"
    n = mesh_size(mesh)
    kinds = {getattr(d, "device_kind", d.platform) for d in mesh.devices.flat}
    procs = len({d.process_index for d in mesh.devices.flat})
    return (f"{n} device{'s' if n > 1 else ''} ({', '.join(sorted(kinds))}) in {procs} "
            f"process{'es' if procs > 1 else ''}")
