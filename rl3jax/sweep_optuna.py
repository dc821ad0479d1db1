"""Optuna over a sweep job's sweepable settings (``rl3jax sweep optuna``): ask and tell with Optuna's journal
file storage (no server; several workers on several machines share one study through the file).

Each worker asks a batch of trials (under a lock file beside the journal, ``PATH.rl3jax-lock``, not Optuna's own ``PATH.lock``, so the study never exceeds ``trials``),
trains them as one vmapped population (the job's config, ``seeds`` seeds per trial; ``runs.population`` with a
list of settings) into ``DIR/optuna/<study>/trials<first>-<last>/``, and tells each trial the mean over its
seeds of the held-out mean return (stochastic, ``eval_episodes`` tasks) at the last iteration. A batch that
fails or is interrupted is told FAIL (its trials are not run again); a worker killed outright leaves its
trials RUNNING in the study.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

import numpy as np

from rl3jax.config import ConfigError, TrainConfig
from rl3jax.runs.driver import train
from rl3jax.runs.population import Member
from rl3jax.runs.runfiles import read_metrics


def open_study(storage: str, name: str, attrs: dict):
    """Study ``name`` in the journal file ``storage`` (created, or joined when ``attrs``, the job's config and
    search space, equal the study's; ``ConfigError`` naming the difference otherwise)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(storage)), study_name=name,
                                direction="maximize", load_if_exists=True)
    old = study.user_attrs.get("rl3jax")
    if old is None:
        study.set_user_attr("rl3jax", attrs)
    elif old != attrs:
        diff = sorted(k for k in attrs if old.get(k) != attrs[k])
        raise ConfigError(f"study {name!r} in {storage} was started with another {', '.join(diff)} "
                          f"({old[diff[0]]} there, {attrs[diff[0]]} now); choose another --study")
    return study


@contextlib.contextmanager
def _locked(path: str):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ask_batch(study, trials: int, batch: int, distributions: dict, lock: str) -> list:
    """Up to ``batch`` new trials, never more than ``trials`` in the study (counted under the file lock ``lock``)."""
    with _locked(lock):
        n = min(batch, trials - len(study.get_trials(deepcopy=False)))
        return [study.ask(distributions) for _ in range(max(n, 0))]


def run_batch(study, cfg: TrainConfig, asked: list, seeds: int, root: str) -> list[float]:
    """Trains the ``asked`` trials as one population in ``root/trials<first>-<last>`` and tells each its score
    (trials of equal settings to 6 digits share one member); FAIL for all if training raises. The scores."""
    from optuna.trial import TrialState

    settings = [{k: t.params[k] for k in sorted(t.params)} for t in asked]
    names = [Member(0, cfg.seed, tuple(s.items())).name for s in settings]
    unique = [s for k, s in enumerate(settings) if names.index(names[k]) == k]
    out = os.path.join(root, f"trials{asked[0].number}-{asked[-1].number}")
    try:
        train(cfg, out, progress=False, seeds=seeds, sweep=unique)
    except BaseException:
        for t in asked:
            study.tell(t, state=TrialState.FAIL)
        raise
    scores = []
    for t, s in zip(asked, settings):
        runs = [os.path.join(out, Member(0, cfg.seed + i, tuple(s.items())).name) for i in range(seeds)]
        scores.append(float(np.mean([read_metrics(r)[-1]["eval_return"] for r in runs])))
        t.set_user_attr("runs", runs)
        study.tell(t, scores[-1])
    return scores


def optimise(directory: str, job: dict, search: dict, trials: int, batch: int, storage: str, study: str) -> int:
    """``sweep optuna`` (after ``rl3jax.sweep_cli.check_optuna``): batches until the study holds ``trials``
    trials; prints each batch's scores and the best trial. ``search``: {name: (low, high, log)}."""
    from optuna.distributions import FloatDistribution

    cfg = TrainConfig.from_dict(job["config"])
    if not cfg.eval_every or cfg.iters % cfg.eval_every:  # the score is the last iteration's evaluation
        cfg = cfg.replace(eval_every=cfg.iters)
    dists = {k: FloatDistribution(lo, hi, log=log) for k, (lo, hi, log) in search.items()}
    os.makedirs(os.path.dirname(os.path.abspath(storage)), exist_ok=True)  # as every output path's folders
    st = open_study(storage, study, {"config": cfg.to_dict(), "seeds": job["seeds"],
                                     "search": {k: list(v) for k, v in search.items()}})
    root = os.path.join(directory, "optuna", study)
    os.makedirs(root, exist_ok=True)
    while asked := ask_batch(st, trials, batch, dists, storage + ".rl3jax-lock"):
        for t, score in zip(asked, run_batch(st, cfg, asked, job["seeds"], root)):
            print(f"trial {t.number}: {', '.join(f'{k}={v:.4g}' for k, v in t.params.items())} -> {score:.3f}")
    done = [t for t in st.get_trials(deepcopy=False) if t.value is not None]
    if done:
        best = max(done, key=lambda t: t.value)
        print(f"study {study}: {len(done)} of {trials} trials complete; best trial {best.number}: {best.value:.3f} "
              f"with {', '.join(f'{k}={v:.4g}' for k, v in best.params.items())}")
    return 0
