"""Training configuration and the published presets (SPEC §6).

``TrainConfig`` is a frozen dataclass: hashable, so the jitted training functions take it as a static
argument. ``validate()`` turns impossible settings into clear errors before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any

ALGOS = ("rl2", "rl3", "rl3_coarse")
MODELS = ("transformer", "gru", "markov")
ENT_SCHEDULES = ("constant", "linear")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    env: str = "mdp"
    variant: str = "train"
    algo: str = "rl3"
    model: str = "transformer"
    horizon: int = 100
    iters: int = 100
    num_envs: int = 64  # parallel tasks = sequences per PPO iteration (batch = num_envs * horizon)
    minibatch_envs: int = 16  # whole sequences per minibatch
    epochs: int = 8
    lr: float = 3e-4
    ent_coef: float = 0.01
    ent_schedule: str = "constant"
    gamma: float = 0.99
    gae_lambda: float = 0.3
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    target_kl: float = 0.01
    critic_weight_decay: float = 0.01
    # actor and critic trained in one vmapped step per minibatch (rl3jax.ppo); None: on GPUs/TPUs only, where
    # small minibatches are launch-bound (on CPU it measured the same speed within noise and compiles longer)
    fused_update: bool | None = None
    kl_chunks: int = 1  # groups of sequences for the full-batch KL pass (raise to bound its memory)
    # RL³ estimator (None: the task family's default from SPEC §2)
    estimator_mode: str = "fresh"
    std_errors: bool = False
    gamma_obj: float = 0.95
    alpha_laplace: float | None = None
    vi_epsilon: float | None = None
    vi_max_sweeps: int | None = None
    vi_sweep_block: int | None = None  # sweeps unrolled per while-loop step (None: the estimator's default)
    # driver
    seed: int = 0
    chunk_iters: int = 10  # PPO iterations per jitted chunk (between logs/checkpoints)
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0: never during training
    eval_episodes: int = 256

    def validate(self) -> "TrainConfig":
        from rl3jax.envs.registry import variants  # local: keeps config import light

        def bad(msg):
            raise ValueError(msg)

        if self.algo not in ALGOS:
            bad(f"--algo {self.algo!r} is not one of {', '.join(ALGOS)}")
        if self.model not in MODELS:
            bad(f"--model {self.model!r} is not one of {', '.join(MODELS)}")
        if self.ent_schedule not in ENT_SCHEDULES:
            bad(f"ent_schedule {self.ent_schedule!r} is not one of {', '.join(ENT_SCHEDULES)}")
        if self.estimator_mode not in ("fresh", "entered"):
            bad(f"estimator_mode {self.estimator_mode!r} is not one of fresh, entered")
        valid = variants(self.env)  # raises for unknown env names
        if self.variant not in valid:
            bad(f"--variant {self.variant!r} is not valid for env {self.env!r}; valid: {', '.join(valid)}")
        for name in ("horizon", "iters", "num_envs", "minibatch_envs", "epochs", "chunk_iters",
                     "checkpoint_every", "keep_checkpoints", "eval_episodes", "kl_chunks"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_envs % self.minibatch_envs:
            bad(f"num_envs={self.num_envs} is not divisible into whole-sequence minibatches of "
                f"minibatch_envs={self.minibatch_envs} sequences")
        if self.vi_sweep_block is not None and self.vi_sweep_block < 1:
            bad(f"vi_sweep_block must be >= 1 or None, got {self.vi_sweep_block}")
        if self.num_envs % self.kl_chunks:
            bad(f"num_envs={self.num_envs} is not divisible by kl_chunks={self.kl_chunks}")
        for name in ("lr", "clip_eps", "target_kl"):
            if not getattr(self, name) > 0:
                bad(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda", "gamma_obj"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.ent_coef < 0 or self.critic_weight_decay < 0:
            bad("ent_coef and critic_weight_decay must be >= 0")
        return self

    @property
    def num_minibatches(self) -> int:
        return self.num_envs // self.minibatch_envs

    @property
    def batch_steps(self) -> int:
        return self.num_envs * self.horizon

    def replace(self, **kw: Any) -> "TrainConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**d)


def _preset(env, horizon, iters, batch, minibatch, ent, lr, schedule="constant", **kw):
    """Published settings in steps; minibatches are whole sequences, so the minibatch is the divisor of
    nenvs nearest to minibatch/H (H=500: 3200/500 = 6.4 sequences -> 8, i.e. 8 minibatches of 4000 steps)."""
    num_envs = batch // horizon
    target = minibatch / horizon
    mb = min((d for d in range(1, num_envs + 1) if num_envs % d == 0), key=lambda d: (abs(d - target), -d))
    return dict(env=env, horizon=horizon, iters=iters, num_envs=num_envs, minibatch_envs=mb, ent_coef=ent,
                lr=lr, ent_schedule=schedule, **kw)


# SPEC §6: batch = steps per PPO iteration, nenvs = batch / H.
PRESETS: dict[str, dict] = {
    "bandit-h100": _preset("bandit", 100, 3000, 32000, 3200, 0.001, 3e-4),
    "bandit-h500": _preset("bandit", 500, 6000, 32000, 3200, 0.01, 3e-4),
    "mdp-h100": _preset("mdp", 100, 10000, 32000, 3200, 0.01, 3e-4),
    "mdp-h500": _preset("mdp", 500, 24000, 32000, 3200, 0.01, 3e-4),
    "grid11": _preset("grid11", 250, 20000, 32000, 4000, 0.04, 2e-4),
    "grid13": _preset("grid13", 350, 20000, 33600, 4200, 0.04, 2e-4),
    "bandit-h512": _preset("bandit", 512, 5000, 32768, 4096, 0.1, 3e-4, "linear"),
    "mdp-h512": _preset("mdp", 512, 10000, 32768, 4096, 0.1, 3e-4, "linear"),
    # Laptop defaults (BENCHMARKS.md "Laptop presets (tuning)"): RL³ (Markov), an MLP on the current input with
    # the fresh Q-estimates and counts, learns far faster per CPU second than the transformer. Held-out (1000
    # tasks): bandits 76.0 (1.28 M steps), MDPs 151.4 (2.56 M steps), against 69 / 129 for the former transformer
    # presets. ent_coef 0.03 beat 0.01 on both (bandits at 0.01: the entropy collapsed and the return fell after
    # ~60 iterations).
    "cpu-mdp": _preset("mdp", 100, 80, 32000, 8000, 0.03, 1e-3, model="markov"),
    "cpu-bandit": _preset("bandit", 100, 40, 32000, 8000, 0.03, 1e-3, model="markov"),
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
