"""Sweeps beyond one program: the plan, the job folders and their states (``rl3jax sweep plan|status``; running
and launching jobs in ``rl3jax.sweep_launch``, the command line in ``rl3jax.sweep_cli``, Optuna in
``rl3jax.sweep_optuna``).

A sweep folder::

    DIR/sweep.json          the plan (``plan``): the rl3jax version, the command line's settings and every job's
                            full config; a job is one program, one combination of the --grid settings (those that
                            change shapes or code), and a vmapped population of its --seeds x --sweep members
    DIR/jobs/<name>/        job <name>'s run folder (``rl3jax train --out``: lock, checkpoints, resume)
    DIR/logs/<name>.log     the output of every attempt of the job under ``launch`` (``<name>.rc``: its exit status)
    DIR/logs/submitit/      submitit's own files; DIR/launch.json: every launch's backend, job ids and log paths

No JAX here: the command line checks everything before JAX starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal

from rl3jax import __version__
from rl3jax.config import SEED_MAX, ConfigError, HParams, TrainConfig, build, parse_sets
from rl3jax.outputs import atomic_write_json, check_output_dir
from rl3jax.runs.runfiles import holds_run, latest_step, read_metrics, run_dirs, training_pid

PLAN, LAUNCH, JOBS, LOGS = "sweep.json", "launch.json", "jobs", "logs"
#: the extra that ``launch`` and ``optuna`` need
CLUSTER_EXTRA = "pip install 'rl3jax[cluster]'"


# ------------------------------------------------------------------------------------------ plan
def parse_grid(items: list[str], given: dict) -> dict[str, list]:
    """``--grid NAME=V1,V2`` items -> {field: [typed values]}. ``ConfigError`` (one line) for a malformed item,
    a name that is not a TrainConfig field (listing the valid ones), a sweepable one (it belongs in --sweep),
    ``seed`` (--seeds), a name given twice or also as a flag / --set, repeated or no values."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    valid = [f for f in fields if f not in (*HParams._fields, "seed")]
    out: dict[str, list] = {}
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq:
            raise ConfigError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        if name in HParams._fields:
            raise ConfigError(f"--grid {name}: sweepable in one program, so it belongs in --sweep {name}={values} "
                              "(a vmapped population inside each job)")
        if name == "seed":
            raise ConfigError("--grid seed: seeds are vmapped inside each job; use --seeds K")
        if name not in fields:
            raise ConfigError(f"--grid {name}: unknown config field; valid: {', '.join(valid)}")
        if name in out or name in given:
            raise ConfigError(f"--grid {name}: {name} is given twice (--grid and another --grid, flag or --set)")
        out[name] = [parse_sets([f"{name}={v.strip()}"])[name] for v in values.split(",") if v.strip()]
        if not out[name] or len(set(map(str, out[name]))) != len(out[name]):
            raise ConfigError(f"--grid {name}={values}: expected distinct values V1,V2,...")
    return out


def make_plan(given: dict, preset: str | None, grid: dict, seeds: int, sweep: dict) -> dict:
    """The plan of ``sweep.json``: every job's config (``config.build`` of ``given`` and its grid values under
    ``preset``). ``ConfigError`` naming the job for a config, seed range or --sweep value that is invalid."""
    jobs = []
    for index, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        name = ",".join(f"{k}={v}".replace(os.sep, "_") for k, v in values.items()) or "job"
        try:
            cfg = build({**given, **values}, preset)
            for k, vs in sweep.items():
                for v in vs:
                    cfg.replace(**{k: v})  # e.g. lr <= 0 is refused here
        except ValueError as e:
            raise ConfigError(f"job {name}: {e}" if grid else str(e)) from None  # no --grid: one job, no name
        if cfg.seed + seeds - 1 > SEED_MAX:
            raise ConfigError(f"--seeds {seeds} from seed {cfg.seed} would reach seed {cfg.seed + seeds - 1} > {SEED_MAX}")
        jobs.append({"index": index, "name": name, "grid": values, "seeds": seeds, "sweep": sweep,
                     "config": cfg.to_dict()})
    return {"rl3jax_version": __version__,
            "plan": {"given": given, "preset": preset, "grid": grid, "seeds": seeds, "sweep": sweep}, "jobs": jobs}


def _difference(old: dict, new: dict) -> str | None:
    """What differs between two plans (the command line's settings first, then the jobs' configs), or None."""
    for k in new["plan"]:
        if old["plan"].get(k) != new["plan"][k]:
            return f"{k} {old['plan'].get(k)} there, {new['plan'][k]} now"
    for a, b in zip(old["jobs"], new["jobs"]):
        diff = sorted(k for k in b["config"] if a["config"].get(k) != b["config"][k])
        if diff:
            return f"job {b['name']}'s {diff[0]} {a['config'].get(diff[0])} there, {b['config'][diff[0]]} now"
    return None


def write_plan(out: str, plan: dict) -> str:
    """Writes ``out/sweep.json`` (the same plan again: nothing to do); the line to print. ``ConfigError`` for a
    folder that holds another plan (naming the difference) or other files, ``OutputError`` for one that cannot
    be written; nothing is written then."""
    check_output_dir(out, "--out")
    path = os.path.join(out, PLAN)
    if os.path.exists(path):
        old = read_plan(out)
        if diff := _difference(old, plan):
            raise ConfigError(f"{path} holds another plan ({diff}); plan into another --out")
        return f"{path} already holds this plan ({len(plan['jobs'])} jobs): nothing to do"
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError(f"--out {out} holds files but no {PLAN}; plan into a new or empty folder")
    atomic_write_json(path, plan)
    return f"planned {len(plan['jobs'])} jobs in {path}: " + ", ".join(j["name"] for j in plan["jobs"])


def read_plan(directory: str) -> dict:
    """``DIR/sweep.json``; ``ConfigError`` (one line) when there is none or it is not a plan."""
    path = os.path.join(directory, PLAN)
    try:
        with open(path) as f:
            plan = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{directory} is not a sweep folder (no {PLAN}; write one with `rl3jax sweep plan`)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a sweep plan ({e})") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("jobs"), list):
        raise ConfigError(f"{path} is not a sweep plan (no list of jobs)")
    return plan


def job_of(directory: str, index: int | None, default: int | None = None) -> dict:
    """Job ``index`` (None: ``$SLURM_ARRAY_TASK_ID``, else ``default``) of the plan in ``directory``;
    ``ConfigError`` (one line with the range) for none or one outside the plan."""
    jobs = read_plan(directory)["jobs"]
    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID")
        if env is None and default is None:
            raise ConfigError("sweep: give --index I (or set SLURM_ARRAY_TASK_ID)")
        if env is not None and not env.isdecimal():
            raise ConfigError(f"SLURM_ARRAY_TASK_ID={env!r} is not a job index")
        index = int(env) if env is not None else default
    if not 0 <= index < len(jobs):
        raise ConfigError(f"--index {index} is outside the plan in {directory}: 0 .. {len(jobs) - 1} ({len(jobs)} jobs)")
    return jobs[index]


def job_dir(directory: str, job: dict) -> str:
    return os.path.join(directory, JOBS, job["name"])


# ------------------------------------------------------------------------------------------ status
def read_text(path: str) -> str:
    """The text of file ``path``; "" when there is none."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


SIGNAL_CODES = {str(128 + s): s.name for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)}  # stopped: resumable


def job_state(directory: str, job: dict) -> tuple[str, str]:
    """(state, detail) of a job: planned (also one stopped by a signal before its run folder was written),
    running, finished, failed (its log's last line) or stopped (resumable)."""
    out, iters = job_dir(directory, job), job["config"]["iters"]
    log, rc = (os.path.join(directory, LOGS, job["name"] + ext) for ext in (".log", ".rc"))
    step = latest_step(out) if holds_run(out) else None
    if (pid := training_pid(out)) is not None:
        metrics = os.path.join(run_dirs(out)[0], "metrics.jsonl") if holds_run(out) else None
        rows = read_metrics(metrics) if metrics and os.path.exists(metrics) else []  # none yet while it starts
        return "running", f"PID {pid}, iteration {rows[-1]['iteration'] if rows else 0} of {iters}"
    if step is not None and step >= iters:
        return "finished", f"iteration {iters}"
    code = read_text(rc).strip()
    if code not in ("", "0", *SIGNAL_CODES):  # stopped by a signal: resumable, or not begun
        lines = [s.strip() for s in read_text(log).splitlines() if s.strip()]
        return "failed", (lines[-1] if lines else "no log") + f" ({log})"
    if holds_run(out):
        where = f"at checkpoint {step} of {iters}" if step is not None else "before its first checkpoint"
        return "stopped", f"{f'by {SIGNAL_CODES[code]} ' if code in SIGNAL_CODES else ''}{where} (resumable: launch again)"
    return "planned", ""


def status(directory: str) -> str:
    """The status table of a sweep folder."""
    plan = read_plan(directory)
    states = [(j, *job_state(directory, j)) for j in plan["jobs"]]
    lines = [f"{j['index']:>4}  {j['name']:30s} {s:9s} {d}".rstrip() for j, s, d in states]
    counts = {s: sum(1 for _, t, _ in states if t == s) for s in ("finished", "running", "failed", "stopped", "planned")}
    return "\n".join(lines + [", ".join(f"{n} {s}" for s, n in counts.items() if n)])
