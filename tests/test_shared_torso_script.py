"""``scripts/shared_torso.py``: which evaluation it reads at equal env steps and at equal training time, on
hand-made run folders (numbers chosen so that a wrong pick gives a different row)."""

import importlib.util
import json
import os

from rl3jax.config import TrainConfig
from tests.helpers import ROOT

_spec = importlib.util.spec_from_file_location("shared_torso", os.path.join(ROOT, "scripts", "shared_torso.py"))
shared_torso = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shared_torso)


def _run(folder, shared: bool, sps: list[float], evals: dict[int, float]):
    """A run folder: H = 100, 10 envs (1,000 env steps per iteration); iteration i took 1000 / sps[i-1] s."""
    cfg = TrainConfig(env="bandit", horizon=100, num_envs=10, minibatch_envs=5, iters=len(sps), shared_torso=shared)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for i, s in enumerate(sps, 1):
            extra = {"eval_return": evals[i], "eval_stderr": 0.5} if i in evals else {}
            f.write(json.dumps({"iteration": i, "env_steps": 1000 * i, "steps_per_second": s, **extra}) + "\n")
    return str(folder)


def test_equal_steps_and_equal_time_pick_the_right_evaluations(tmp_path):
    # separate: 4 iterations of 10 s each (evals at 2 and 4); shared: 6 iterations of 5 s each (evals at 2, 4, 6)
    sep = shared_torso.read_run(_run(tmp_path / "sep", False, [100.0] * 4, {2: 10.0, 4: 20.0}))
    sha = shared_torso.read_run(_run(tmp_path / "sha", True, [200.0] * 6, {2: 11.0, 4: 21.0, 6: 31.0}))
    assert sep["seconds"] == 40.0 and sha["seconds"] == 30.0
    rows = {r["shared_torso"]: r for r in shared_torso.compare(sep, sha)}
    # equal steps: the last evaluation both reached is at 4,000 steps
    assert rows[False]["at_steps"]["return"] == 20.0 and rows[True]["at_steps"]["return"] == 21.0
    # equal time: the shorter run has 30 s; separate's last evaluation within them is at 20 s (iteration 2)
    assert rows[False]["at_time"]["return"] == 10.0 and rows[True]["at_time"]["return"] == 31.0
    assert rows[True]["steps_per_second"] == 200.0
    md = shared_torso.table([sep, sha])
    assert md.count("| bandit/train H=100 rl3 transformer seed 0 |") == 2 and "31.00 ± 0.50 (30)" in md


def test_no_evaluation_within_the_time_is_a_dash_and_bad_inputs_are_one_line(tmp_path, capsys):
    # separate: one evaluation, after 50 s; shared: 10 s in all, so separate has nothing within 10 s
    sep = _run(tmp_path / "sep", False, [100.0, 20.0], {2: 10.0})
    sha = _run(tmp_path / "sha", True, [200.0, 200.0], {2: 11.0})
    md = shared_torso.table([shared_torso.read_run(sep), shared_torso.read_run(sha)])
    assert md.splitlines()[2].endswith("| – |") and md.splitlines()[3].endswith("(10) |")
    other = _run(tmp_path / "other", False, [100.0, 100.0], {2: 12.0})
    with open(os.path.join(other, "config.json")) as f:  # the same setting at another learning rate: no twin
        cfg = json.load(f) | {"lr": 0.01}
    with open(os.path.join(other, "config.json"), "w") as f:
        json.dump(cfg, f)
    blank = tmp_path / "blank"
    blank.mkdir()
    for argv, says in (([sep], "no twin"), ([sep, sha, other], "no twin"), ([sep, sep, sha], "two runs"),
                       ([str(blank)], "not a run folder"), ([sep, sha, "--out", str(tmp_path)], "--out")):
        assert shared_torso.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
