"""Bit-for-bit behaviour recording: a fixed set of short runs, recorded before a refactor and checked after it.

Each case is an ``rl3jax train`` command line (every algo x model on bandit, mdp and grid11, the v4 semantics,
chunked KL, a linear entropy schedule, a gymnax env, a population with a sweep,
a resumed run, a 4-fake-device run), then ``rl3jax eval`` of the trained run on held-out tasks. What is kept
per case: every metrics row (timing fields dropped), the SHA-256 and float64 sum of every actor and critic
parameter leaf of the last checkpoint (read with orbax directly, so independent of rl3jax's own checkpoint
code), and the held-out returns.

    python tests/system/behaviour_record.py record   # writes tests/data/behaviour/<platform>.json (before a refactor)
    python tests/system/behaviour_record.py record grid11-rl3_coarse-gru   # re-records only these cases there
    python tests/system/behaviour_record.py check    # re-runs every case and compares (exit 1 on a difference)
    python tests/system/behaviour_record.py check mdp-rl3-gru bandit-rl3-v4   # only these cases

Cases run in two child processes (one with 1 CPU device, one with 4 fake CPU devices), each with fixed XLA
flags (the test suite's fast-compile flags), so the numbers do not depend on who calls the script.

One recording per platform (``tests/data/behaviour/<cpu>_jax<version>.json``): floats after a few PPO updates
depend on the CPU's SIMD kernels and summation order (a transformer ``qkv/bias`` sum near zero was -0.0067 on an
Intel Xeon and -0.0044 on an AMD EPYC), so

- where a recording's platform fingerprint (jax/jaxlib versions, CPU model and SIMD instruction sets) equals this
  machine's, the comparison is **exact**: every metrics row, every parameter leaf's SHA-256 and sum, the held-out
  returns;
- elsewhere it compares only what is **stable** across CPUs (``compare_stable``): integer metrics (iterations,
  env steps) exactly, each network's parameter L2 norm to ``NORM_RTOL`` of the norm, and each held-out mean
  return within ``RETURN_BAND`` combined standard errors; and it says so in its output.

``tests/system/test_behaviour.py`` runs the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_DIR = os.path.join(ROOT, "tests", "data", "behaviour")
#: another platform: a network's parameter L2 norm may differ by this fraction of the norm
NORM_RTOL = 1e-3
#: another platform: held-out mean returns may differ by this many combined standard errors
RETURN_BAND = 4.0
#: timing fields: not behaviour
VOLATILE = {"steps_per_second"}
XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

SMALL = ["--iters", "2", "--num-envs", "4", "--minibatch-envs", "2", "--set", "epochs=2", "--set", "chunk_iters=1",
         "--set", "checkpoint_every=1", "--set", "eval_every=2", "--set", "eval_episodes=8", "--no-progress"]


def _case(env, algo, model, horizon, *extra):
    return ["--env", env, "--algo", algo, "--model", model, "--horizon", str(horizon), *SMALL, *extra]


def cases() -> dict[str, dict]:
    """name -> {"train": [argv...] (several: run in order on one folder), "devices": n, "population": bool}."""
    out: dict[str, dict] = {}
    models = ("transformer", "gru", "markov", "transformer-v4", "markov-v4")
    for env, h in (("bandit", 10), ("mdp", 12)):
        for algo in ("rl2", "rl3"):
            for model in models:
                out[f"{env}-{algo}-{model}"] = {"train": [_case(env, algo, model, h)]}
        out[f"{env}-rl3-v4"] = {"train": [_case(env, "rl3", "transformer-v4", h, "--set", "semantics=v4")]}
        out[f"{env}-rl3-rlc-stderr"] = {"train": [_case(env, "rl3", "markov", h, "--set", "semantics=rlc",
                                                        "--set", "std_errors=true")]}
    for algo in ("rl2", "rl3", "rl3_coarse"):
        for model in ("transformer", "gru", "markov"):
            out[f"grid11-{algo}-{model}"] = {"train": [_case("grid11", algo, model, 12)]}
    out["mdp-rl3-transformer-klchunks-linear"] = {"train": [_case("mdp", "rl3", "transformer", 12, "--set",
                                                                  "kl_chunks=2", "--set", "ent_schedule=linear")]}
    out["cartpole-rl2-gru"] = {"train": [_case("CartPole-v1", "rl2", "gru", 10)]}
    out["mdp-population-sweep"] = {"train": [_case("mdp", "rl3", "markov", 12, "--seeds", "2", "--sweep",
                                                   "lr=0.001,0.0003")], "population": True}
    resumed = _case("bandit", "rl3", "gru", 10)
    first = list(resumed)
    first[first.index("--iters") + 1] = "1"
    out["bandit-rl3-gru-resumed"] = {"train": [first, ["--resume", "--iters", "2", "--no-progress"]]}
    out["mdp-rl3-transformer-4dev"] = {"train": [_case("mdp", "rl3", "transformer", 12, "--devices", "4")],
                                       "devices": 4}
    return out


def fingerprint() -> dict:
    """jax and jaxlib versions, the CPU's model name and SIMD instruction sets, the machine. XLA compiles for the
    host's instruction sets, and one model name can hide several (a cloud VM's "AMD EPYC", with AVX-512 or not)."""
    import jax
    import jaxlib

    cpu, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), cpu)
        flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith(("flags", "Features"))), [])
    except OSError:
        pass
    simd = " ".join(sorted(f for f in flags if f.startswith(("sse", "ssse", "avx", "fma", "f16c", "amx", "asimd",
                                                             "sve"))))
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "cpu": cpu, "simd": simd,
            "machine": platform.machine()}


def _params_digest(ckpt_root: str) -> dict:
    """Per leaf of actor_params / critic_params in the latest checkpoint: shape, SHA-256, float64 sum."""
    import numpy as np
    import orbax.checkpoint as ocp

    steps = sorted(int(d) for d in os.listdir(ckpt_root) if d.isdigit())
    raw = ocp.StandardCheckpointer().restore(os.path.join(ckpt_root, str(steps[-1]), "state"))
    out = {}
    sq = {"actor_params": 0.0, "critic_params": 0.0}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k in sorted(node):
                walk(f"{prefix}/{k}", node[k])
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(f"{prefix}/{i}", v)
        else:
            a = np.asarray(node)
            out[prefix] = {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
                           "sum": float(a.astype(np.float64).sum())}
            sq[prefix.split("/", 1)[0]] += float(np.square(a.astype(np.float64)).sum())

    for part in ("actor_params", "critic_params"):
        walk(part, raw[part])
    return {"step": steps[-1], "leaves": out, "norms": {k: float(np.sqrt(v)) for k, v in sq.items()}}


def _run_one(name: str, case: dict, workdir: str) -> dict:
    from rl3jax.cli import main

    run = os.path.join(workdir, name)
    for argv in case["train"]:
        rc = main(["train", *argv, "--out", run])
        if rc:
            raise RuntimeError(f"{name}: rl3jax train {' '.join(argv)} exited {rc}")
    runs = sorted(d for d in os.listdir(run) if os.path.isdir(os.path.join(run, d, "checkpoints"))) \
        if case.get("population") else [""]
    result = {}
    for sub in runs:
        folder = os.path.join(run, sub)
        with open(os.path.join(folder, "metrics.jsonl")) as f:
            rows = [{k: v for k, v in json.loads(ln).items() if k not in VOLATILE} for ln in f if ln.strip()]
        ev = os.path.join(workdir, f"{name}-{sub or 'run'}-eval.json")
        if main(["eval", "--run", folder, "--episodes", "16", "--json", ev]):
            raise RuntimeError(f"{name}: rl3jax eval failed")
        with open(ev) as f:
            evaluation = json.load(f)
        result[sub or "run"] = {"metrics": rows, "params": _params_digest(os.path.join(folder, "checkpoints")),
                                "eval": {k: v for k, v in evaluation.items() if k not in ("seconds", "wall_s", "run")}}
    return result


def _child(devices: int, out_path: str, names: list[str]) -> None:
    """Runs the cases ``names`` for ``devices`` (in this process) and writes {name: result} to out_path."""
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ.get(  # as tests/helpers.py's TEST_CACHE_DIR
        "RL3JAX_TEST_JAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "rl3jax-test-xla")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_compilation_cache_max_size", 8 << 30)  # the file lock (helpers.TEST_CACHE_BYTES)
    if len(jax.devices()) != devices:
        raise SystemExit(f"expected {devices} devices, got {len(jax.devices())}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in cases().items():
            if case.get("devices", 1) == devices and name in names:
                results[name] = _run_one(name, case, tmp)
    with open(out_path, "w") as f:
        json.dump({"fingerprint": fingerprint(), "cases": results}, f)


def collect(names: list[str] | None = None) -> dict:
    """Runs the cases ``names`` (None: all) in child processes (1-device and 4-device in parallel); returns the
    recording."""
    names = list(cases()) if names is None else names
    unknown = set(names) - set(cases())
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; valid: {', '.join(cases())}")
    counts = sorted({c.get("devices", 1) for n, c in cases().items() if n in names})
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
                       XLA_FLAGS=XLA_FLAGS + (f" --xla_force_host_platform_device_count={n}" if n > 1 else ""))
            path = os.path.join(tmp, f"{n}.json")
            procs.append((path, subprocess.Popen([sys.executable, __file__, "_child", str(n), path, *names],
                                                 env=env, cwd=ROOT)))
        merged = {"fingerprint": None, "cases": {}}
        for path, p in procs:
            if p.wait():
                raise SystemExit(f"a recording child process failed (exit {p.returncode})")
            with open(path) as f:
                part = json.load(f)
            merged["fingerprint"] = part["fingerprint"]
            merged["cases"].update(part["cases"])
    return merged


def compare(old, new, path: str = "") -> list[str]:
    """Differences between two recordings of one platform (paths and values), bit for bit."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = [f"{path}/{k}: missing" for k in old if k not in new]
        diffs += [f"{path}/{k}: unexpected" for k in new if k not in old]
        for k in old:
            if k in new:
                diffs += compare(old[k], new[k], f"{path}/{k}")
        return diffs
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: length {len(old)} != {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in compare(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {old!r} != {new!r}"]


def compare_stable(old: dict, new: dict) -> list[str]:
    """Differences in what is stable across CPUs, between two recordings' ``cases`` (see the module docstring)."""
    diffs = []
    for name, members in old.items():
        for sub, o in members.items():
            n = new.get(name, {}).get(sub)
            where = f"/{name}/{sub}"
            if n is None:
                diffs.append(f"{where}: missing")
                continue
            ints_o = [{k: v for k, v in r.items() if isinstance(v, int)} for r in o["metrics"]]
            ints_n = [{k: v for k, v in r.items() if isinstance(v, int)} for r in n["metrics"]]
            if ints_o != ints_n:
                diffs.append(f"{where}/metrics: integer fields {ints_o} != {ints_n}")
            for part, a in o["params"]["norms"].items():
                b = n["params"]["norms"][part]
                if abs(a - b) > NORM_RTOL * max(a, b):
                    diffs.append(f"{where}/{part}: L2 norm {a!r} != {b!r} (rtol {NORM_RTOL})")
            eo, en = o["eval"], n["eval"]
            band = RETURN_BAND * (eo["stderr"] ** 2 + en["stderr"] ** 2) ** 0.5
            if abs(eo["mean_return"] - en["mean_return"]) > band:
                diffs.append(f"{where}/eval: mean return {eo['mean_return']:.4f} vs {en['mean_return']:.4f}, "
                             f"outside {RETURN_BAND:g} combined s.e. ({band:.4f})")
    return diffs


def platform_file(fp: dict) -> str:
    """This platform's recording: ``tests/data/behaviour/<cpu>_jax<version>.json``."""
    slug = re.sub(r"[^a-z0-9]+", "-", fp["cpu"].lower()).strip("-")
    return os.path.join(DATA_DIR, f"{slug}_jax{fp['jax']}_jaxlib{fp['jaxlib']}_{fp['machine']}.json")


def recordings() -> list[dict]:
    """Every committed recording (one per platform), sorted by file name."""
    out = []
    for name in sorted(os.listdir(DATA_DIR)):
        if name.endswith(".json"):
            with open(os.path.join(DATA_DIR, name)) as f:
                out.append(json.load(f))
    return out


def check(names: list[str] | None = None) -> int:
    """Re-runs the cases ``names`` (None: all) and compares them with the recording: bit for bit against this
    platform's recording where there is one, else what is stable against another platform's; 0 when they agree."""
    new = collect(names)
    recs = recordings()
    same = [r for r in recs if r["fingerprint"] == new["fingerprint"]]
    old = (same or recs)[0]
    old_cases = {k: v for k, v in old["cases"].items() if k in new["cases"]}
    if same:
        diffs, mode = compare(old_cases, new["cases"]), "bit for bit"
    else:
        diffs = compare_stable(old_cases, new["cases"])
        mode = (f"in what is stable across CPUs (integer metrics, parameter norms to rtol {NORM_RTOL}, held-out "
                f"returns within {RETURN_BAND:g} s.e.): recorded on {old['fingerprint']}, this is "
                f"{new['fingerprint']}; `python tests/system/behaviour_record.py record` adds an exact recording here")
    if diffs:
        print(f"{len(diffs)} differences ({mode}):\n  " + "\n  ".join(diffs[:40]))
        return 1
    print(f"{len(new['cases'])} recorded runs reproduced {mode}")
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "record":
        rec = collect(sys.argv[2:] or None)
        path = platform_file(rec["fingerprint"])
        if sys.argv[2:]:  # only these cases: into this platform's recording, keeping the others
            if not os.path.exists(path):
                raise SystemExit(f"no recording of this platform at {path}: record every case first")
            with open(path) as f:
                old = json.load(f)
            rec = {**old, "cases": {**old["cases"], **rec["cases"]}}
        os.makedirs(DATA_DIR, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(path + ".tmp", path)
        print(f"recorded {len(rec['cases'])} runs in {path}")
    elif cmd == "check":
        sys.exit(check(sys.argv[2:] or None))
    elif cmd == "_child":
        _child(int(sys.argv[2]), sys.argv[3], sys.argv[4:])
    else:
        raise SystemExit("usage: python tests/system/behaviour_record.py record [CASE ...] | check [CASE ...]")
