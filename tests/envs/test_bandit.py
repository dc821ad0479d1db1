"""rl3jax.envs.bandit: arm probabilities and rewards of each variant (METHOD §3).

Statistical checks draw many independent samples and allow 5 standard errors of the estimate (stated at each
check): with fixed seeds they are deterministic, and a correct sampler would fail one with probability ~6e-7.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.envs.bandit import BanditState, BanditTask
from rl3jax.envs.registry import make_env
from tests.helpers import _close, _step_many, _var_check, step_env_steps


# ------------------------------------------------------------------------------------------------ bandits
def test_bandit_arm_probabilities_uniform(task_pool):
    p = task_pool("bandit")["train"].probs
    assert p.shape == (20000, 5) and p.min() >= 0.0 and p.max() < 1.0
    n = p.size
    _close(p.mean(), 0.5, np.sqrt(1 / 12 / n), "U(0,1) mean")
    _var_check(p, 0.5, 1 / 12, 1 / 80, "U(0,1) variance 1/12")  # μ4 of U(0,1) = 1/80
    # arms are independent: correlation between arm 0 and arm 1 ~ 0 (s.e. 1/sqrt(n_tasks))
    _close(np.corrcoef(p[:, 0], p[:, 1])[0, 1], 0.0, 1 / np.sqrt(p.shape[0]), "arm correlation")


def test_bandit_ood_probabilities_normal_unclipped(task_pool):
    p = task_pool("bandit")["ood"].probs
    n = p.size
    _close(p.mean(), 0.5, 0.5 / np.sqrt(n), "N(0.5, 0.5) mean")
    _var_check(p, 0.5, 0.25, 3 * 0.25 ** 2, "N(0.5, 0.5) variance 0.25")  # μ4 = 3σ⁴
    outside = ((p < 0) | (p > 1)).mean()
    q = 0.31731  # P(|Z| > 1)
    _close(outside, q, np.sqrt(q * (1 - q) / n), "fraction outside [0, 1]")
    assert p.min() < -0.5 and p.max() > 1.5  # unclipped


def test_bandit_bernoulli_rewards():
    env, step = _step_many("bandit", "ood")
    probs = jnp.array([-0.3, 0.0, 0.25, 0.8, 1.0], jnp.float32)
    task = BanditTask(probs=probs, num_arms=5)
    state = BanditState(time=jnp.int32(0), pos=jnp.int32(0))
    n = 20000
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    for arm, p in enumerate([-0.3, 0.0, 0.25, 0.8, 1.0]):
        obs, nxt, r, done, _ = jax.device_get(step(keys, state, arm, task))
        assert set(np.unique(r)) <= {0.0, 1.0}
        assert done.all() and (nxt.pos == 1).all()
        np.testing.assert_array_equal(obs, np.broadcast_to([0.0, 1.0], (n, 2)))
        if p <= 0.0:
            assert r.sum() == 0, "p <= 0 never pays"
        elif p >= 1.0:
            assert r.min() == 1.0, "p >= 1 always pays"
        else:
            _close(r.mean(), p, np.sqrt(p * (1 - p) / n), f"Bernoulli({p}) frequency")
    # p > 1 (OOD) always pays
    task = BanditTask(probs=jnp.full((5,), 1.4), num_arms=5)
    _, _, r, _, _ = step(keys[:1000], state, 3, task)
    assert float(r.min()) == 1.0
    # the family's layout: reset shows 'ready' (one-hot state 0), state 1 is absorbing
    obs, st = env.reset_env(jax.random.PRNGKey(0), task)
    np.testing.assert_array_equal(obs, [1.0, 0.0])
    assert int(env.state_index(st, task)) == 0 and not bool(env.is_terminated(st, task))
    assert env.default_params.max_steps_in_episode == 1 and env.num_states == 2 and env.num_actions == 5


class StepEnvJitTest(chex.TestCase):
    """``step_env`` gives the same observations, rewards and dones jitted and eager (8 steps of one task)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_step_env_with_and_without_jit(self):
        env = make_env("bandit")
        chex.assert_trees_all_close(step_env_steps(self.variant(env.step_env), env),
                                    step_env_steps(env.step_env, env), rtol=1e-6)
