"""The peer benchmark (issue 22): rl3jax's PPO against rejax 0.1.3 and purejaxrl's PPO-RNN on equal work.

    .venv/bin/python benchmarks/peers/run.py [--quick] [--pairs N] [--only NAME,...] [--ours-set FIELD=VALUE ...]

Installs each peer in its own virtual environment outside the project (``--peers-dir``, default
``~/.cache/rl3jax/peers``; reused while its pins match): rejax from the package index with our jax, jaxlib, flax,
optax, gymnax and numpy versions; purejaxrl's ``ppo_rnn.py`` and ``wrappers.py`` from a clone of its repository
(``--purejaxrl-git``, commit ``PUREJAXRL_COMMIT``) into that folder. Then, per workload, ``--pairs`` interleaved
pairs of processes (peer then ours, ours then peer, ...), each ``worker.py`` in its side's Python; per process:
env-steps/s after compilation (median of ``--repeats`` runs), CPU seconds per million env steps, compile seconds
and whole-process seconds (launch to the end of the first training run: imports, build, compile, run). Ratios are
ours / peer per pair, then the median over pairs. Beside them, the work per env step each side does (forward
multiply-adds of its networks times the passes it makes, ``work_per_step``). Writes ``peers.json`` and
``peers.md`` (``--quick``: ``peers-quick.*``) into ``--out`` (default benchmarks/peers/results), after every
workload. A bad option is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
from rl3jax.config import ConfigError, TrainConfig, parse_sets  # noqa: E402 (no JAX at import)

PUREJAXRL_COMMIT = "31756b1"
PUREJAXRL_GIT = "/work/.mirror/luchris429+purejaxrl/repo"
REJAX = "rejax==0.1.3"
DISTRAX = "distrax==0.1.9"  # purejaxrl imports it; the version rejax 0.1.3 resolves to with our jax
#: our packages every peer shares, pinned to the versions of the Python running this script
SHARED = ("jax", "jaxlib", "flax", "optax", "numpy")
#: both peers unpack gymnax 0.0.x's 5-tuple from env.step; gymnax 1.0 (ours) returns 6 (terminated, truncated)
PEER_GYMNAX = "gymnax==0.0.9"
#: our side's settings, as ``--set`` items (``--ours-set`` replaces them): the KL early stop off (no KL pass)
OURS_SET = ["target_kl=none"]
#: our side's variants per workload kind: name -> extra ``--set`` items; a variant whose field this version of
#: TrainConfig lacks is skipped with a note
OURS_VARIANTS = {"separate": [], "shared": ["shared_torso=true"]}
#: passes per env step of each side, as (network, "fwd" | "fwd+bwd", times per env step per epoch "E" or once);
#: a backward pass costs twice its forward pass (gradients of activations and of weights)
PASSES = {
    "rejax": [("actor", "fwd", 1), ("critic", "fwd", 1), ("actor", "fwd+bwd", "E"), ("critic", "fwd+bwd", "E")],
    "purejaxrl": [("shared", "fwd", 1), ("shared", "fwd+bwd", "E")],
    # rollout (actor), values of the batch (critic), per epoch: actor and critic minibatch steps (with the KL
    # stop off, target_kl=none, ppo.py makes no full-batch KL pass)
    "separate": [("actor", "fwd", 1), ("critic", "fwd", 1), ("actor", "fwd+bwd", "E"), ("critic", "fwd+bwd", "E")],
    # shared torso (``critic``: the value head on the actor's features): rollout (actor), a second torso pass
    # with both heads for the batch's values (``Trainer.values``), then per epoch one joint forward+backward
    # through torso and both heads (``ppo.update_shared``)
    "shared": [("actor", "fwd", 1), ("actor", "fwd", 1), ("critic", "fwd", 1), ("actor", "fwd+bwd", "E"),
               ("critic", "fwd+bwd", "E")],
}


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    peer: str  # rejax | purejaxrl
    model: str  # our model: markov (MLP 256-256 relu) or gru (Dense 64 -> GRU w)
    num_envs: int
    iters: int
    steps: int = 100  # env steps per env per iteration (our H)
    epochs: int = 4
    minibatches: int = 4
    hidden: tuple = (256, 256)
    lr: float = 3e-4
    ours_set: tuple = ()  # our ``--set`` items that match the peer's network (under ``--ours-set``'s)


def workloads(quick: bool) -> list[Workload]:
    """CartPole-v1, 100 steps per env per iteration, 4 epochs x 4 minibatches; ``quick``: fewer iterations. Our GRU
    runs at purejaxrl's width (GRU 128)."""
    it = 2 if quick else 20
    gru = ("gru_hidden=128",)
    return [Workload("rejax-mlp-32", "rejax", "markov", 32, it), Workload("rejax-mlp-256", "rejax", "markov", 256,
                                                                           max(1, it // 4)),
            Workload("purejaxrl-gru-32", "purejaxrl", "gru", 32, max(1, it // 2), ours_set=gru),
            Workload("purejaxrl-gru-256", "purejaxrl", "gru", 256, max(1, it // 8), ours_set=gru)]


def variant_settings(variant: str) -> dict | None:
    """The typed ``--set`` items of our ``variant`` (``OURS_VARIANTS``); None where this TrainConfig lacks a field."""
    items = OURS_VARIANTS[variant]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return parse_sets(items) if all(i.split("=", 1)[0] in fields for i in items) else None


def ours_config(w: Workload, settings: dict) -> dict:
    """Our side's TrainConfig fields for ``w``: RL² on CartPole-v1, one H = ``steps`` meta-episode per env per
    iteration, minibatches of whole sequences, ``w.ours_set``; ``settings`` on top (they win). ValueError (one
    line) if it cannot run."""
    fields = dict(env="CartPole-v1", algo="rl2", model=w.model, horizon=w.steps, iters=w.iters, num_envs=w.num_envs,
                  minibatch_envs=w.num_envs // w.minibatches, epochs=w.epochs, lr=w.lr, chunk_iters=w.iters)
    fields.update({**parse_sets(list(w.ours_set)), **settings})
    TrainConfig(**fields)
    return fields


def work_per_step(macs: dict[str, int], passes: list[tuple], epochs: int) -> int:
    """Multiply-adds per env step: sum over ``passes`` of (times per step, x ``epochs`` for "E") x the network's
    forward multiply-adds ``macs[net]`` x (1 for "fwd", 3 for "fwd+bwd"). KeyError for a network not in ``macs``."""
    total = 0
    for net, kind, times in passes:
        total += (epochs if times == "E" else times) * macs[net] * {"fwd": 1, "fwd+bwd": 3}[kind]
    return total


# ------------------------------------------------------------------------------------------ installs
def _pins() -> list[str]:
    return [f"{p}=={importlib.metadata.version(p)}" for p in SHARED]


def _sh(cmd: list[str], log: str) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"error: {' '.join(cmd[:3])} ... failed; see {log}")


def install(peer: str, peers_dir: str, purejaxrl_git: str) -> str:
    """The peer's folder with its venv (``venv/``), created or reused (same pins); returns the folder."""
    folder = os.path.join(peers_dir, peer)
    pins = [REJAX if peer == "rejax" else DISTRAX, PEER_GYMNAX] + _pins()
    marker = os.path.join(folder, "installed.json")
    os.makedirs(folder, exist_ok=True)
    want = {"pins": pins, "purejaxrl_commit": PUREJAXRL_COMMIT if peer == "purejaxrl" else None}
    if peer == "purejaxrl":  # the two files, from the snapshot, at run time; empty brax/navix stand-ins
        os.makedirs(os.path.join(folder, "stubs", "brax", "envs", "wrappers"), exist_ok=True)
        os.makedirs(os.path.join(folder, "stubs", "navix"), exist_ok=True)
        for name in ("ppo_rnn.py", "wrappers.py"):
            text = subprocess.run(["git", "-C", purejaxrl_git, "show", f"{PUREJAXRL_COMMIT}:purejaxrl/{name}"],
                                  capture_output=True, text=True, check=True).stdout
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        for rel, text in (("brax/__init__.py", "envs = None\n"), ("brax/envs/__init__.py", ""),
                          ("brax/envs/wrappers/__init__.py", ""),
                          ("brax/envs/wrappers/training.py", "EpisodeWrapper = AutoResetWrapper = None\n"),
                          ("navix/__init__.py", "")):
            with open(os.path.join(folder, "stubs", rel), "w") as f:
                f.write(text)
    try:
        with open(marker) as f:
            if json.load(f) == want:
                return folder
    except (OSError, ValueError):
        pass
    print(f"installing {peer} into {folder}/venv: {' '.join(pins)}", flush=True)
    log = os.path.join(folder, "install.log")
    _sh([sys.executable, "-m", "venv", "--clear", os.path.join(folder, "venv")], log)
    _sh([os.path.join(folder, "venv", "bin", "pip"), "install", *pins], log)
    with open(marker, "w") as f:
        json.dump(want, f)
    return folder


def versions(python: str) -> dict:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            f"{list(SHARED) + ['gymnax', 'rejax', 'distrax', 'rl3jax']!r} if any(d.metadata['Name'] == p for d in "
            "m.distributions())}))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                                     cwd=os.path.expanduser("~")).stdout)  # not the project's folder


# ------------------------------------------------------------------------------------------ runs
def run_process(python: str, side: str, job: dict, timeout: float) -> dict:
    """One worker process; its record plus whole-process seconds (launch to the end of its first run) and the
    process's total seconds."""
    t_launch = time.time()
    try:
        p = subprocess.run([python, os.path.join(HERE, "worker.py"), side, json.dumps(job)], capture_output=True,
                           text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"error: the {side} worker of {job['name']} ran past --timeout {timeout:g} s") from None
    t_exit = time.time()
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise SystemExit(f"error: the {side} worker failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    rec = json.loads(lines[-1][len("RESULT "):])
    steps = job["iters"] * job["num_envs"] * job["steps"]
    med = statistics.median(rec["run_seconds"])
    return {**rec, "env_steps": steps, "steps_per_second": steps / med,
            "cpu_seconds_per_million_steps": statistics.median(rec["run_cpu_seconds"]) / steps * 1e6,
            "whole_process_seconds": rec["first_done_at"] - t_launch, "process_seconds": t_exit - t_launch}


def summarise(w: Workload, variant: str, pairs: list[tuple[dict, dict]], config: dict) -> dict:
    """Median over pairs of ours / peer (env-steps/s; CPU s per step, compile and whole-process seconds: time
    ratios, < 1 is ours faster) and the work per env step of each side; ``config``: our side's TrainConfig fields."""
    def ratio(key, among=pairs):
        return median(o[key] / p[key] for p, o in among)

    warm = [(p, o) for p, o in pairs if o.get("compile_cache_warm")]  # ours' cache read back (none: --pairs 1)
    cold = [o for _, o in pairs if not o.get("compile_cache_warm")] or [o for _, o in pairs]

    def median(values):
        values = list(values)
        return statistics.median(values) if values else None

    peer, ours = pairs[0]
    work_peer = work_per_step(peer["forward_macs"], PASSES[w.peer], w.epochs)
    work_ours = work_per_step(ours["forward_macs"], PASSES[variant], w.epochs)
    model = f"gru {config.get('gru_hidden', TrainConfig.gru_hidden)}" if w.model == "gru" else w.model
    return {"workload": w.name, "peer": w.peer, "ours": f"{model}, {variant}", "num_envs": w.num_envs,
            "pairs": len(pairs), "peer_steps_per_second": statistics.median(p["steps_per_second"] for p, _ in pairs),
            "ours_steps_per_second": statistics.median(o["steps_per_second"] for _, o in pairs),
            "speed_ratio": ratio("steps_per_second"), "cpu_ratio": ratio("cpu_seconds_per_million_steps"),
            "compile_ratio": ratio("compile_seconds", warm),
            "whole_process_ratio": ratio("whole_process_seconds", warm),
            "whole_process_ratio_cold": statistics.median(o["whole_process_seconds"] / p["whole_process_seconds"]
                                                          for p, o in pairs if o in cold),
            "peer_compile_seconds": statistics.median(p["compile_seconds"] for p, _ in pairs),
            "ours_compile_seconds": median(o["compile_seconds"] for _, o in warm),
            "ours_compile_seconds_cold": statistics.median(o["compile_seconds"] for o in cold),
            "peer_whole_process_seconds": statistics.median(p["whole_process_seconds"] for p, _ in pairs),
            "ours_whole_process_seconds": median(o["whole_process_seconds"] for _, o in warm),
            "ours_whole_process_seconds_cold": statistics.median(o["whole_process_seconds"] for o in cold),
            "peer_work_per_step": work_peer, "ours_work_per_step": work_ours, "work_ratio": work_peer / work_ours,
            "peer_passes": PASSES[w.peer], "ours_passes": PASSES[variant],
            "peer_forward_macs": peer["forward_macs"], "ours_forward_macs": ours["forward_macs"]}


def _s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.1f}"


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# Peer benchmark ({'quick smoke run' if res['quick'] else 'full'})", "",
             f"CPU {m['cpu']}, {m['cores']} cores; device {m['device']}; {res['date']}; commit {m['commit']}; "
             f"load average {m.get('load_average_at_start', '?')} at the start.",
             "Versions: " + "; ".join(f"{k}: " + ", ".join(f"{p} {v}" for p, v in vs.items())
                                      for k, vs in res["versions"].items()) + ".",
             f"Our settings: `{' '.join('--set ' + s for s in res['ours_set'])}`. Ratios: ours / peer per "
             "interleaved pair, median over pairs; speed > 1 and time < 1 favour ours. Work: multiply-adds per env "
             "step (forward passes x 1, forward+backward x 3); 'work ratio' = peer's / ours, the speed ratio the "
             "work alone predicts. Ours runs as `rl3jax train` does, with its compilation cache (fresh for each row: "
             "cold in the row's first process of ours, read back in the others; the peers have none): compile and "
             "whole-process seconds of ours are given cold / warm.", "",
             "| workload | ours | envs | pairs | peer steps/s | ours steps/s | speed ratio | CPU-s ratio | "
             "compile s (peer / ours cold / warm) | whole process s (peer / ours cold / warm) | "
             "work per step (peer / ours) | work ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in res["summary"]:
        lines.append(f"| {s['workload']} | {s['ours']} | {s['num_envs']} | {s['pairs']} | "
                     f"{s['peer_steps_per_second']:,.0f} | {s['ours_steps_per_second']:,.0f} | "
                     f"{s['speed_ratio']:.2f} | {s['cpu_ratio']:.2f} | {s['peer_compile_seconds']:.1f} / "
                     f"{s['ours_compile_seconds_cold']:.1f} / {_s(s['ours_compile_seconds'])} | "
                     f"{s['peer_whole_process_seconds']:.1f} / {s['ours_whole_process_seconds_cold']:.1f} / "
                     f"{_s(s['ours_whole_process_seconds'])} | {s['peer_work_per_step'] / 1e6:.2f} M / "
                     f"{s['ours_work_per_step'] / 1e6:.2f} M | {s['work_ratio']:.2f} |")
    lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def _machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    git = ["git", "-C", ROOT]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "device": None, "commit": commit + ("+dirty" if dirty.stdout else ""),
            "load_average_at_start": os.getloadavg()[0]}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 iterations per run, 1 pair: a smoke run")
    p.add_argument("--pairs", type=int, default=None, help="interleaved pairs per workload [default: 5; quick 1]")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per process after the first [3]")
    p.add_argument("--only", default=None, help="comma-separated workload names, of "
                   f"{', '.join(w.name for w in workloads(False))}")
    p.add_argument("--ours-set", action="append", default=None, metavar="FIELD=VALUE",
                   help=f"our settings (replace {' '.join(OURS_SET)}); repeat the flag for several")
    p.add_argument("--variants", default=",".join(OURS_VARIANTS), help="our variants [separate,shared]")
    p.add_argument("--peers-dir", default=os.path.expanduser("~/.cache/rl3jax/peers"),
                   help="the peers' virtual environments (made once, reused) [~/.cache/rl3jax/peers]")
    p.add_argument("--purejaxrl-git", default=PUREJAXRL_GIT, help="a clone of luchris429/purejaxrl (git dir)")
    p.add_argument("--out", default=os.path.join(HERE, "results"),
                   help="folder for peers.{md,json} (--quick: peers-quick.*) [benchmarks/peers/results, the "
                        "committed tables: give another folder for a trial run]")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    a = p.parse_args(argv)
    a.pairs = a.pairs if a.pairs is not None else (1 if a.quick else 5)
    for flag, v in (("--pairs", a.pairs), ("--repeats", a.repeats)):
        if v < 1:
            raise ConfigError(f"{flag} {v}: expected a whole number >= 1")
    names = [w.name for w in workloads(a.quick)]
    a.only = a.only.split(",") if a.only else names
    if bad := [n for n in a.only if n not in names]:
        raise ConfigError(f"--only: unknown workloads {bad}; valid: {', '.join(names)}")
    a.variants = a.variants.split(",")
    if bad := [v for v in a.variants if v not in OURS_VARIANTS]:
        raise ConfigError(f"--variants: unknown {bad}; valid: {', '.join(OURS_VARIANTS)}")
    a.ours_set = a.ours_set if a.ours_set is not None else OURS_SET
    a.settings = parse_sets(a.ours_set)
    if a.timeout <= 0:
        raise ConfigError(f"--timeout {a.timeout}: expected seconds > 0")
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        raise ConfigError(f"--out {a.out}: not a folder")
    if not os.path.isdir(a.purejaxrl_git) and any(n.startswith("purejaxrl") for n in a.only):
        raise ConfigError(f"--purejaxrl-git {a.purejaxrl_git}: no such folder (a clone of luchris429/purejaxrl)")
    return a


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
        ws = [w for w in workloads(a.quick) if w.name in a.only]
        for w in ws:  # every config checked before anything is installed or run
            for variant in a.variants:
                if (extra := variant_settings(variant)) is not None:
                    ours_config(w, {**a.settings, **extra})
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    notes, records, summary = [], [], []
    os.makedirs(a.out, exist_ok=True)
    folders = {peer: install(peer, a.peers_dir, a.purejaxrl_git) for peer in sorted({w.peer for w in ws})}
    pythons = {"ours": sys.executable, **{k: os.path.join(f, "venv", "bin", "python") for k, f in folders.items()}}
    res = {"quick": a.quick, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": _machine(),
           "versions": {k: versions(py) for k, py in pythons.items()}, "ours_set": a.ours_set,
           "workloads": [dataclasses.asdict(w) for w in ws], "records": records, "summary": summary, "notes": notes}
    cache_root = tempfile.mkdtemp(prefix="rl3jax-peers-xla-")  # ours as `rl3jax train`: a compilation cache
    for w in ws:
        for variant in a.variants:
            if (extra := variant_settings(variant)) is None:
                notes.append(f"{w.name}: our '{variant}' variant skipped: this TrainConfig lacks "
                             f"{' '.join(OURS_VARIANTS[variant])}")
                continue
            job = {**dataclasses.asdict(w), "repeats": a.repeats, "peer_dir": folders[w.peer]}
            ours_job = {**job, "config": ours_config(w, {**a.settings, **extra}),
                        "compile_cache": os.path.join(cache_root, f"{w.name}-{variant}")}  # cold in its 1st process
            pairs = []
            for i in range(a.pairs):  # peer first in even pairs, ours first in odd ones
                order = [("peer", w.peer, job), ("ours", "ours", ours_job)][:: 1 if i % 2 == 0 else -1]
                got = {}
                for role, side, j in order:
                    got[role] = run_process(pythons[side], side, j, a.timeout)
                    records.append({"workload": w.name, "variant": variant, "pair": i, "role": role, **got[role]})
                    print(f"{w.name} {variant} pair {i} {role}: {got[role]['steps_per_second']:,.0f} steps/s, "
                          f"compile {got[role]['compile_seconds']:.1f} s, whole process "
                          f"{got[role]['whole_process_seconds']:.1f} s", flush=True)
                pairs.append((got["peer"], got["ours"]))
            summary.append(summarise(w, variant, pairs, ours_job["config"]))
            res["machine"]["device"] = records[-1]["device"]
            stem = "peers-quick" if a.quick else "peers"  # a smoke run never overwrites the real table
            for name, text in ((f"{stem}.json", json.dumps(res, indent=1)), (f"{stem}.md", markdown(res))):
                with open(os.path.join(a.out, name), "w") as f:
                    f.write(text)
    shutil.rmtree(cache_root, ignore_errors=True)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
