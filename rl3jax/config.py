"""Training configuration and the published presets (METHOD §6).

``TrainConfig`` is a frozen dataclass: hashable, so the jitted training functions take it as a static
argument. It validates itself on construction (``__post_init__``, also for ``replace`` and ``from_dict``), so
every TrainConfig in existence is valid: impossible settings are clear errors before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from rl3jax.envs.catalog import COARSE, PUBLISHED_HORIZON, TABULAR, is_gymnax, variants

ALGOS = ("rl2", "rl3", "rl3_coarse")
MODELS = ("transformer", "gru", "markov", "transformer-v4", "markov-v4")
ENT_SCHEDULES = ("constant", "linear")
#: how a trained policy acts on held-out tasks: actions sampled from it, or its argmax actions
POLICY_MODES = ("stochastic", "greedy")
STOCHASTIC, GREEDY = POLICY_MODES
#: the traced PPO settings of ``TrainState.hparams`` (``rl3jax.ppo.HPARAMS``), filled from these config fields
PPO_HPARAMS = ("ent_coef", "gae_lambda")
#: the optimiser settings held in the ``optax.inject_hyperparams`` states (``rl3jax.population.OPT_HPARAMS``)
OPT_HPARAM_FIELDS = ("lr", "critic_weight_decay")
#: what ``--sweep`` varies in one compile: settings that live in the training state, not in shapes or code
SWEEPABLE = OPT_HPARAM_FIELDS + PPO_HPARAMS
#: run-control fields: how the driver chunks, checkpoints and evaluates a run, not what it learns
RUN_CONTROL = ("chunk_iters", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_episodes")


def policy_mode(greedy: bool) -> str:
    """The ``POLICY_MODES`` name of a policy that takes argmax actions (``greedy``) or samples them."""
    return GREEDY if greedy else STOCHASTIC


#: seeds are 32-bit: ``jax.random.key(seed)`` keeps only the low 32 bits, so 0 and 2**32 would be one run
SEED_MAX = 2**32 - 1
#: every other integer field is a 32-bit count in the jitted code (iteration counters, step indices)
INT_MAX = 2**31 - 1


def _check_types(cfg) -> None:
    """ValueError unless every field holds a value of its declared type (floats finite; ints not bools)."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if v is None and "None" in typ:
            continue
        kind = typ.split("|")[0].strip()
        if kind == "bool":
            ok, want = isinstance(v, bool), "true or false"
        elif kind == "int":
            ok, want = isinstance(v, int) and not isinstance(v, bool), "a whole number"
        elif kind == "float":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            want = "a finite number"
        elif kind == "str":
            ok, want = isinstance(v, str), "a string"
        else:  # pragma: no cover - a new field type must be added here
            raise TypeError(f"config field {f.name}: unsupported type {typ}")
        if not ok:
            raise ValueError(f"config field {f.name} must be {want}{' or None' if 'None' in typ else ''}, "
                             f"got {v!r}")
#: RL³ object-level semantics: 'fresh' (METHOD §2, Q/V of the current state from the latest solve), 'rlc'
#: (METHOD §2.4's 'entered' cache of the later code), 'v4' (the paper's own code: rl3jax/estimator_v4.py)
SEMANTICS = ("fresh", "rlc", "v4")
#: the legacy ``estimator_mode`` values and the semantics each one means
LEGACY_ESTIMATOR_MODES = {"fresh": "fresh", "entered": "rlc"}
#: families the v4 semantics implements (the dense estimator's families)
V4_ENVS = ("bandit", "mdp")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (METHOD §5-§6), frozen and hashable (a static argument of the jitted code).

    Fields, by group (units in brackets):

    - Task: ``env`` (a task family of ``rl3jax.envs.catalog.FAMILIES`` or a served gymnax env), ``variant`` (one
      of the family's variants; "train" is the training distribution), ``horizon`` H (steps per meta-episode).
    - Agent: ``algo`` (``ALGOS``), ``model`` (``MODELS``).
    - PPO (METHOD §5): ``iters`` (PPO iterations in all), ``num_envs`` (tasks = whole sequences per iteration;
      batch = num_envs x H steps), ``minibatch_envs`` (whole sequences per minibatch; divides num_envs),
      ``epochs``, ``lr`` (Adam, actor and critic), ``ent_coef`` and ``ent_schedule`` (``ENT_SCHEDULES``; linear:
      to 0 at ``iters``), ``gamma``, ``gae_lambda``, ``clip_eps``, ``vf_coef``, ``target_kl`` (the actor's KL
      early stop), ``critic_weight_decay`` (coupled L2 decay of the critic), ``fused_update``, ``kl_chunks`` (sequence groups of the
      full-batch KL pass; divides num_envs).
    - RL³ estimator (METHOD §2; None: the semantics' or family's default): ``semantics`` (``SEMANTICS``),
      ``estimator_mode`` (legacy alias), ``vi_carry_over``, ``std_errors``, ``gamma_obj`` (the value iteration's
      discount), ``alpha_laplace`` (Laplace smoothing pseudo-count), ``vi_epsilon`` (VI stopping tolerance),
      ``vi_max_sweeps``, ``vi_sweep_block`` (sweeps per while-loop step). ``gamma_obj_value``: the discount used.
    - Driver (``RUN_CONTROL`` and the seed): ``seed`` (32-bit PRNG seed), ``chunk_iters`` (iterations per jitted
      chunk), ``checkpoint_every`` and ``eval_every`` (iterations; eval_every 0: never), ``keep_checkpoints``
      (newest kept), ``eval_episodes`` (held-out tasks per evaluation).

    Construction validates (``__post_init__``, so also ``replace`` and ``from_dict``): ValueError (one line
    naming the field, the value and what is allowed) for a value of the wrong type (ints are whole numbers, not
    bools; floats finite), an unknown name (env, variant, algo, model, schedule, semantics), a value out of range
    (counts >= 1, seed in [0, ``SEED_MAX``], other ints <= ``INT_MAX``, probabilities in [0, 1], rates > 0) or a
    combination that cannot run (minibatch_envs or kl_chunks not dividing num_envs; RL³ on a gymnax env;
    rl3_coarse off the grids; v4-only or non-v4 estimator settings; a legacy ``estimator_mode`` that conflicts
    with ``semantics``).
    """

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
    # actor and critic trained in one vmapped step per minibatch (rl3jax.fused); None: on GPUs/TPUs only, where
    # small minibatches are launch-bound (on CPU it measured the same speed within noise and compiles longer)
    fused_update: bool | None = None
    kl_chunks: int = 1  # groups of sequences for the full-batch KL pass (raise to bound its memory)
    # RL³ estimator (None: the task family's default from METHOD §2)
    # semantics: 'fresh' | 'rlc' | 'v4'. None may be passed (it means 'fresh', or what the legacy estimator_mode
    # says) but is resolved on construction: a constructed TrainConfig always holds one of SEMANTICS
    semantics: str | None = None
    # legacy alias of semantics, kept so that old run folders' config.json load: 'fresh' -> fresh,
    # 'entered' -> rlc; normalised into ``semantics`` (and back to None) on construction
    estimator_mode: str | None = None
    # v4 only: keep Q/V across meta-episodes of one env slot (refused: see rl3jax/estimator_v4.py)
    vi_carry_over: bool = False
    std_errors: bool = False
    gamma_obj: float | None = None  # None: 0.95 (fresh, rlc) or 0.99 (v4)
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

    def __post_init__(self):
        """Resolves ``semantics`` from the legacy ``estimator_mode`` (old config.json files), then validates
        every field (``_validate``: ValueError naming the field, the value and what is allowed)."""
        sem, mode = self.semantics, self.estimator_mode
        if mode is not None:
            if mode not in LEGACY_ESTIMATOR_MODES:
                raise ValueError(f"estimator_mode {mode!r} is not one of {', '.join(LEGACY_ESTIMATOR_MODES)} "
                                 f"(legacy; use semantics, one of {', '.join(SEMANTICS)})")
            legacy = LEGACY_ESTIMATOR_MODES[mode]
            if sem is not None and sem != legacy:
                raise ValueError(f"estimator_mode {mode!r} (= semantics {legacy!r}) conflicts with semantics "
                                 f"{sem!r}; set only semantics")
            sem = legacy
        object.__setattr__(self, "semantics", "fresh" if sem is None else sem)
        object.__setattr__(self, "estimator_mode", None)
        self._validate()

    @property
    def gamma_obj_value(self) -> float:
        """The VI discount used: ``gamma_obj``, or the semantics' default (0.99 v4, 0.95 otherwise)."""
        if self.gamma_obj is not None:
            return self.gamma_obj
        return 0.99 if self.semantics == "v4" else 0.95

    def _validate(self) -> None:
        """Checks every field; raises ValueError naming the field, the value and what is allowed.

        Types (an int field takes a whole number, a float field a finite number, a bool field true/false; a
        config.json read back through ``from_dict`` is checked the same way), ranges (``SEED_MAX``, ``INT_MAX``,
        probabilities in [0, 1], positive rates), names (env, variant, algo, model, schedules) and
        combinations (RL³ needs a tabular family, rl3_coarse a grid family, minibatches divide the batch).
        Imports no JAX: a config error costs no JAX start-up.
        """
        def bad(msg):
            raise ValueError(msg)

        _check_types(self)
        if self.algo not in ALGOS:
            bad(f"--algo {self.algo!r} is not one of {', '.join(ALGOS)}")
        if self.model not in MODELS:
            bad(f"--model {self.model!r} is not one of {', '.join(MODELS)}")
        if self.ent_schedule not in ENT_SCHEDULES:
            bad(f"ent_schedule {self.ent_schedule!r} is not one of {', '.join(ENT_SCHEDULES)}")
        if self.semantics not in SEMANTICS:
            bad(f"semantics {self.semantics!r} is not one of {', '.join(SEMANTICS)}")
        valid = variants(self.env)  # raises for unknown or unsupported env names
        self._validate_v4(bad)
        if self.variant not in valid:
            bad(f"--variant {self.variant!r} is not valid for env {self.env!r}; valid: {', '.join(valid)}")
        if self.algo != "rl2" and is_gymnax(self.env):
            bad(f"--algo {self.algo} needs a tabular task family; gymnax env {self.env!r} has no RL³ model "
                "(use --algo rl2)")
        if self.algo == "rl3_coarse" and self.env in TABULAR and self.env not in COARSE:
            bad(f"--algo rl3_coarse is for grid families ({', '.join(sorted(COARSE))}), not env {self.env!r}")
        if not 0 <= self.seed <= SEED_MAX:
            bad(f"--seed must be in [0, {SEED_MAX}] (a 32-bit PRNG seed), got {self.seed}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "seed" and type(v) is int and not -INT_MAX <= v <= INT_MAX:
                bad(f"{f.name} must be at most {INT_MAX} (a 32-bit integer), got {v}")
        for name in ("horizon", "iters", "num_envs", "minibatch_envs", "epochs", "chunk_iters",
                     "checkpoint_every", "keep_checkpoints", "eval_episodes", "kl_chunks"):
            if getattr(self, name) < 1:
                bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            bad(f"eval_every must be >= 0 (0: never), got {self.eval_every}")
        if self.num_envs % self.minibatch_envs:
            bad(f"num_envs={self.num_envs} is not divisible into whole-sequence minibatches of "
                f"minibatch_envs={self.minibatch_envs} sequences")
        for name in ("vi_sweep_block", "vi_max_sweeps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        if self.num_envs % self.kl_chunks:
            bad(f"num_envs={self.num_envs} is not divisible by kl_chunks={self.kl_chunks}")
        for name in ("lr", "clip_eps", "target_kl"):
            if not getattr(self, name) > 0:
                bad(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda", "gamma_obj"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("ent_coef", "critic_weight_decay", "vf_coef"):
            if not getattr(self, name) >= 0:
                bad(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.alpha_laplace is not None and not self.alpha_laplace > 0:
            bad(f"alpha_laplace must be > 0 or None, got {self.alpha_laplace}")
        if self.vi_epsilon is not None and not self.vi_epsilon >= 0:
            bad(f"vi_epsilon must be >= 0 or None, got {self.vi_epsilon}")

    def _validate_v4(self, bad) -> None:
        """Settings that do not apply to the v4 semantics (and v4-only settings elsewhere) are errors."""
        if self.semantics != "v4":
            if self.vi_carry_over:
                bad(f"vi_carry_over is a v4 option; semantics is {self.semantics!r}")
            return
        if self.env not in V4_ENVS:
            bad(f"semantics 'v4' is implemented for envs {', '.join(V4_ENVS)}, not {self.env!r} (the original's "
                "grid wrapper re-indexes states as they are discovered; not implemented)")
        if self.algo == "rl3_coarse":
            bad("semantics 'v4' has no RL³-coarse (a grid method); use algo rl3 or rl2")
        if self.std_errors:
            bad("std_errors does not apply to semantics 'v4' (the original shows no standard errors)")
        if self.alpha_laplace is not None:
            bad("alpha_laplace does not apply to semantics 'v4' (the original's model is unsmoothed maximum "
                "likelihood)")
        if self.vi_carry_over:
            bad("vi_carry_over=true is not supported: a new meta-episode re-initialises the estimator inside the "
                "env's reset, which sees no previous state; the original code does not carry Q/V across tasks "
                "either (each task draw builds a new wrapper with zeroed arrays)")

    @property
    def num_minibatches(self) -> int:
        return self.num_envs // self.minibatch_envs

    @property
    def batch_steps(self) -> int:
        return self.num_envs * self.horizon

    def replace(self, **kw: Any) -> TrainConfig:
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of ``d`` (e.g. a run's config.json: ``to_dict``'s fields, missing ones at their defaults).
        ValueError for ``d`` that is not a dict, unknown fields (named), or any value construction refuses."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object of fields, got {type(d).__name__}")
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


# METHOD §6: batch = steps per PPO iteration, nenvs = batch / H.
PRESETS: dict[str, dict] = {
    "bandit-h100": _preset("bandit", 100, 3000, 32000, 3200, 0.001, 3e-4),
    "bandit-h500": _preset("bandit", 500, 6000, 32000, 3200, 0.01, 3e-4),
    "mdp-h100": _preset("mdp", 100, 10000, 32000, 3200, 0.01, 3e-4),
    "mdp-h500": _preset("mdp", 500, 24000, 32000, 3200, 0.01, 3e-4),
    "grid11": _preset("grid11", 250, 20000, 32000, 4000, 0.04, 2e-4),
    "grid13": _preset("grid13", 350, 20000, 33600, 4200, 0.04, 2e-4),
    "bandit-h512": _preset("bandit", 512, 5000, 32768, 4096, 0.1, 3e-4, "linear"),
    "mdp-h512": _preset("mdp", 512, 10000, 32768, 4096, 0.1, 3e-4, "linear"),
    # The paper's own code (bhatiaabhinav/RL3 commit f8121786; "Paper-v4 targets" in this repository's
    # experiments/README.md): v4 semantics and the v4 networks. Its main.jl defaults: batch 32000, minibatch
    # 3200, lr 3e-4 constant; entropy bonus from the commands in that repository's README (bandits 0.001 at
    # H=100, 0.01 at H=500; MDPs 0.01); iterations as METHOD §6 (its README's example commands say 5000 for
    # bandits H=100 and 10000 for MDPs H=100).
    "paper-v4-bandit-h100": _preset("bandit", 100, 3000, 32000, 3200, 0.001, 3e-4, semantics="v4",
                                    model="transformer-v4"),
    "paper-v4-bandit-h500": _preset("bandit", 500, 6000, 32000, 3200, 0.01, 3e-4, semantics="v4",
                                    model="transformer-v4"),
    "paper-v4-mdp-h100": _preset("mdp", 100, 10000, 32000, 3200, 0.01, 3e-4, semantics="v4",
                                 model="transformer-v4"),
    "paper-v4-mdp-h500": _preset("mdp", 500, 24000, 32000, 3200, 0.01, 3e-4, semantics="v4",
                                 model="transformer-v4"),
    # Grids on a CPU: the published horizons (250 / 350), 16 tasks per iteration in 4-sequence minibatches and
    # 4 epochs; sized for about 10 minutes on a 2-core CPU (grid11, RL³, transformer: ~1 min compile, then
    # ~4.5 s per iteration measured on a shared 2-core machine). Sensible settings, not tuned.
    "cpu-grid11": _preset("grid11", 250, 100, 4000, 1000, 0.04, 1e-3, epochs=4, eval_every=25, eval_episodes=100,
                          chunk_iters=1),
    "cpu-grid13": _preset("grid13", 350, 50, 5600, 1400, 0.04, 1e-3, epochs=4, eval_every=25, eval_episodes=100,
                          chunk_iters=1),
    # Laptop defaults (BENCHMARKS.md "Laptop presets (tuning)"): RL³ (Markov), an MLP on the current input with
    # the fresh Q-estimates and counts, learns far faster per CPU second than the transformer. Held-out (1000
    # tasks): bandits 76.0 (1.28 M steps), MDPs 151.4 (2.56 M steps), against 69 / 129 for the former transformer
    # presets. ent_coef 0.03 beat 0.01 on both (bandits at 0.01: the entropy collapsed and the return fell after
    # ~60 iterations). Held-out evaluation (250 tasks, stochastic and greedy) every quarter of the run: the
    # learning curve's held-out line in `rl3jax report`. One iteration per chunk on every CPU preset (an
    # iteration takes 3-5 s there), so a signal stops the run within seconds; chunking does not change results.
    "cpu-mdp": _preset("mdp", 100, 80, 32000, 8000, 0.03, 1e-3, model="markov", eval_every=20, eval_episodes=250,
                       chunk_iters=1),
    "cpu-bandit": _preset("bandit", 100, 40, 32000, 8000, 0.03, 1e-3, model="markov", eval_every=10,
                          eval_episodes=250, chunk_iters=1),
}


def laptop_preset(env: str) -> str | None:
    """The name of env ``env``'s laptop (CPU) preset, ``cpu-{env}``, or None when it has none."""
    name = f"cpu-{env}"
    return name if name in PRESETS else None


def default_base(env: str) -> dict:
    """What a run without ``--preset`` starts from: the family's laptop preset (``laptop_preset``) when there
    is one, else the family's published horizon (``catalog.PUBLISHED_HORIZON``) over TrainConfig's defaults."""
    if laptop_preset(env) is not None:
        return preset(laptop_preset(env))
    return {"horizon": PUBLISHED_HORIZON[env]} if env in PUBLISHED_HORIZON else {}


def preset(name: str) -> dict:
    """A copy of the settings of published preset ``name`` (``PRESETS``: TrainConfig fields -> values).
    ValueError naming the valid presets for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
