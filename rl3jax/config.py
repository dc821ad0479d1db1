"""Training configuration, the published presets (METHOD §6) and the command line's ``--set`` / ``--sweep`` parser.

``TrainConfig`` is frozen (hashable: a static argument of the jitted code) and validates itself on construction,
so every TrainConfig in existence is valid. No JAX: the command line checks its input before JAX starts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from rl3jax.envs.catalog import FAMILIES, GYMNAX_ENVS, is_gymnax, no_index_hint, spec

ALGOS = ("rl2", "rl3", "rl3_coarse")
MODELS = ("transformer", "gru", "markov", "transformer-v4", "markov-v4")
ENT_SCHEDULES = ("constant", "linear")
#: the KL stop's measure after an actor epoch (METHOD §5): 'full' (the paper's) or 'minibatch' (no forward pass)
KL_RULES = ("full", "minibatch")
#: METHOD §5's PPO as the paper: the full-batch KL stop at 0.01, separate actor and critic (every preset's)
PAPER_PPO = {"target_kl": 0.01, "kl_rule": "full", "shared_torso": False}
#: how a trained policy acts on held-out tasks: actions sampled from it, or its argmax actions
POLICY_MODES = ("stochastic", "greedy")
STOCHASTIC, GREEDY = POLICY_MODES


class HParams(NamedTuple):
    """Every sweepable setting: ``TrainState.hparams`` (float32 scalars, a leading member axis in a population),
    filled from the config fields of the same names. The jitted code reads them from the state, so one compile
    serves any value and ``--sweep`` varies them per member. A pytree without JAX (the CLI lists it early)."""

    lr: Any  # Adam learning rate, actor and critic
    critic_weight_decay: Any  # the critic's coupled L2 weight decay
    ent_coef: Any  # entropy bonus coefficient (at iteration 0 under the linear schedule)
    gae_lambda: Any  # GAE λ


#: fields of older versions that a config.json may still hold; ``from_dict`` drops them (``fused_update``: a
#: deleted PPO step equal to the separate ones up to float reassociation, so its runs stay valid)
DROPPED_FIELDS = ("fused_update",)
#: run-control fields: how the driver chunks, checkpoints and evaluates a run, not what it learns
RUN_CONTROL = ("chunk_iters", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_episodes")
#: seeds are 32-bit: ``jax.random.key(seed)`` keeps only the low 32 bits, so 0 and 2**32 would be one run
SEED_MAX = 2**32 - 1
#: every other integer field is a 32-bit count in the jitted code (iteration counters, step indices)
INT_MAX = 2**31 - 1
#: a field's declared type -> the Python types its value may have, and how to say so (bools are not ints)
_TYPES = {"bool": ((bool,), "true or false"), "int": ((int,), "a whole number"),
          "float": ((int, float), "a number"), "str": ((str,), "a string")}

#: RL³ object-level semantics: 'fresh' (METHOD §2, Q/V of the current state from the latest solve), 'rlc'
#: (METHOD §2.4's 'entered' cache of the later code), 'v4' (the paper's own code: rl3jax/estimators/v4.py)
SEMANTICS = ("fresh", "rlc", "v4")
#: the RL³ estimator (``rl3jax.estimators.make_estimator``): 'auto' (per family, by measurement) or 'discovery'
ESTIMATORS = ("auto", "discovery")
#: the fields that configure the RL³ estimator, with their defaults (refused with algo 'rl2')
RL3_ONLY = {"estimator": "auto", "std_errors": False, "gamma_obj": None, "alpha_laplace": None, "vi_epsilon": None,
            "vi_max_sweeps": None, "vi_sweep_block": None}
#: the legacy ``estimator_mode`` values of old config.json files and the semantics each one means (``from_dict``)
LEGACY_ESTIMATOR_MODES = {"fresh": "fresh", "entered": "rlc"}
#: transformer-v4's learned positional slots (the original's ``LearnedPositionalEncoder(dmodel, 1024)``): H + 1 <= this
V4_POS_SLOTS = 1024
#: float field -> [lo, hi]: the sane range of its value as used, in float32 (so finite, and non-zero where lo > 0:
#: ``lr=1e-50`` would be 0 in float32); a None of an optional field means its default (target_kl: no KL stop)
FLOAT_RANGES = {"lr": (1e-8, 1.0), "ent_coef": (0.0, 100.0), "gamma": (0.0, 1.0), "gae_lambda": (0.0, 1.0),
                "clip_eps": (1e-4, 10.0), "vf_coef": (0.0, 100.0), "target_kl": (1e-6, 1e10),
                "critic_weight_decay": (0.0, 1.0), "gamma_obj": (0.0, 0.99999), "alpha_laplace": (1e-6, 1e6),
                "vi_epsilon": (0.0, 1e6)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (METHOD §5-§6), frozen and hashable (a static argument of the jitted code).

    Task: ``env`` (``rl3jax.envs.catalog.FAMILIES`` or a served gymnax env), ``variant`` ("train": the training
    distribution), ``horizon`` H (steps per meta-episode). Agent: ``algo`` (``ALGOS``), ``model`` (``MODELS``),
    ``gru_hidden`` (model gru's width; METHOD §4: 256). PPO (METHOD §5): ``iters`` in all; batch = ``num_envs`` whole
    sequences x H steps; ``lr`` (Adam); ``ent_schedule`` linear: to 0 at ``iters``; ``target_kl`` (the KL early stop,
    None: none) by ``kl_rule``; ``critic_weight_decay`` (coupled L2); ``shared_torso``: one network, actor and value
    heads (METHOD §4-§5). ``state_obs``: the env's state (what RL³'s index sees) as an extra input, for RL² where the
    observation hides it. RL³ estimator (METHOD §2; None: the semantics' default): ``gamma_obj`` (VI discount; the one
    used: ``gamma_obj_value``), ``alpha_laplace`` (pseudo-count), ``vi_epsilon`` (VI tolerance), ``estimator``
    (``ESTIMATORS``: 'auto' picks per family; 'discovery' the discovery-indexed one, no std_errors). Driver: ``seed``
    (32-bit), the ``RUN_CONTROL`` fields (in iterations; ``keep_checkpoints``: the newest kept).

    Construction validates (so also ``replace`` and ``from_dict``): one-line ValueError naming the field, the
    value and what is allowed, for a wrong type (ints are not bools; floats finite), an unknown name, a value out
    of range (counts >= 1, seed <= ``SEED_MAX``, other ints <= ``INT_MAX``, ``FLOAT_RANGES``) or a combination
    that cannot run (a divisor of num_envs that is none; an algo or semantics the family's ``FamilySpec`` does not
    list; v4-only or non-v4 estimator settings; transformer-v4 past ``V4_POS_SLOTS`` with H + 1; ``state_obs``
    on an env other than a gymnax env with ``state_fields``; a ``gru_hidden`` other than 256 with another model).
    """

    env: str = "mdp"
    variant: str = "train"
    algo: str = "rl3"
    model: str = "transformer"
    gru_hidden: int = 256  # the GRU's width w (networks.GRU_HIDDEN); another value only with model gru
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
    target_kl: float | None = 0.01  # None: no KL early stop (and no KL pass)
    kl_rule: str = "full"  # KL_RULES
    critic_weight_decay: float = 0.01
    kl_chunks: int = 1  # groups of sequences for the full-batch KL pass (raise to bound its memory)
    shared_torso: bool = False  # one sequence model with actor and critic heads (not for the v4 models)
    semantics: str | None = None
    estimator: str = "auto"  # ESTIMATORS: the RL³ estimator (rl3jax.estimators.make_estimator)
    vi_carry_over: bool = False  # keep Q/V across meta-episodes: always refused (see rl3jax/estimators/v4.py)
    std_errors: bool = False
    state_obs: bool = False  # the env's state (its state_fields, normalised) as an extra input block 'state'
    gamma_obj: float | None = None  # None: 0.95 (fresh, rlc) or 0.99 (v4)
    alpha_laplace: float | None = None
    vi_epsilon: float | None = None
    vi_max_sweeps: int | None = None
    vi_sweep_block: int | None = None  # sweeps unrolled per while-loop step (None: the estimator's default)
    seed: int = 0
    chunk_iters: int = 10  # PPO iterations per jitted chunk (between logs/checkpoints)
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0: never during training
    eval_episodes: int = 256

    def __post_init__(self):  # semantics None means 'fresh'
        object.__setattr__(self, "semantics", "fresh" if self.semantics is None else self.semantics)
        self._validate()

    @property
    def gamma_obj_value(self) -> float:
        """The VI discount used: ``gamma_obj``, or the semantics' default (0.99 v4, 0.95 otherwise)."""
        return self.gamma_obj if self.gamma_obj is not None else 0.99 if self.semantics == "v4" else 0.95

    def _validate(self) -> None:
        """Checks every field (see the class docstring)."""
        def bad(msg):
            raise ValueError(msg)

        for f in dataclasses.fields(self):  # every field of its declared type; ints other than seed 32-bit
            v, typ = getattr(self, f.name), str(f.type)
            types, want = _TYPES[typ.split("|")[0].strip()]  # KeyError: a new field type must be added to _TYPES
            if not (v is None and "None" in typ) and (not isinstance(v, types) or isinstance(v, bool) != (bool in types)):
                bad(f"config field {f.name} must be {want}{' or None' if 'None' in typ else ''}, got {v!r}")
            if f.name != "seed" and type(v) is int and not -INT_MAX <= v <= INT_MAX:
                bad(f"{f.name} must be at most {INT_MAX} (a 32-bit integer), got {v}")
        for name, valid in (("algo", ALGOS), ("model", MODELS), ("ent_schedule", ENT_SCHEDULES),
                            ("semantics", SEMANTICS), ("estimator", ESTIMATORS), ("kl_rule", KL_RULES)):
            if getattr(self, name) not in valid:
                bad(f"{name} {getattr(self, name)!r} is not one of {', '.join(valid)}{' or none' * (name == 'semantics')}")
        fam = spec(self.env)  # raises for unknown or unsupported env names
        if self.variant not in fam.variants:
            bad(f"variant {self.variant!r} is not valid for env {self.env!r}; valid: {', '.join(fam.variants)}")
        if self.algo not in fam.algos:
            bad(f"algo {self.algo!r} does not apply to env {self.env!r} (valid: {', '.join(fam.algos)})"
                + ("" if "rl3" in fam.algos else f"; it has no state index: {no_index_hint(self.env)}"))
        if self.state_obs and not (is_gymnax(self.env) and GYMNAX_ENVS[self.env].state_fields):
            bad(f"state_obs shows a gymnax env's state_fields; env {self.env!r} has none (valid: "
                f"{', '.join(n for n, g in GYMNAX_ENVS.items() if g.state_fields and g.kind != 'refused')})")
        if self.semantics == "v4" and "v4" not in fam.semantics:
            bad(f"semantics 'v4' is implemented for envs {', '.join(n for n, f in FAMILIES.items() if 'v4' in f.semantics)}"
                f", not {self.env!r}")
        if self.estimator == "discovery" and self.std_errors:
            bad("estimator 'discovery' has no standard errors (std_errors=true needs estimator 'auto')")
        self._validate_v4(bad)
        for name, on in (("kl_rule", self.kl_rule != "full"), ("kl_chunks", self.kl_chunks > 1)):  # each message
            if on and (self.target_kl is None or name == "kl_chunks" and self.kl_rule != "full"):  # names 2 settings
                bad(f"{name}={getattr(self, name)} " + ("configures the KL stop, and target_kl=none turns it off: give a "
                    "target_kl (e.g. 0.01)" if self.target_kl is None else "splits only kl_rule 'full''s full-batch "
                    f"pass, and kl_rule={self.kl_rule} has none: give kl_rule=full") + f", or leave {name} out")
        if not 0 <= self.seed <= SEED_MAX:
            bad(f"seed must be in [0, {SEED_MAX}] (a 32-bit PRNG seed), got {self.seed}")
        ones = ("horizon", "iters", "num_envs", "minibatch_envs", "epochs", "chunk_iters", "checkpoint_every",
                "keep_checkpoints", "eval_episodes", "kl_chunks", "gru_hidden")
        for name, lo, note in [(n, 1, "") for n in ones] + [("vi_sweep_block", 1, " or none"),
                                                            ("vi_max_sweeps", 1, " or none"), ("eval_every", 0, " (0: never)")]:
            if getattr(self, name) is not None and getattr(self, name) < lo:
                bad(f"{name} must be >= {lo}{note}, got {getattr(self, name)}")
        for name, div in (("minibatch_envs", self.minibatch_envs), ("kl_chunks", self.kl_chunks)):
            if self.num_envs % div:
                bad(f"num_envs={self.num_envs} is not divisible by {name}={div} (whole sequences per group)")
        for name, (lo, hi) in FLOAT_RANGES.items():
            v = getattr(self, name)
            if v is not None and not lo <= v <= hi:
                bad(f"{name} must be in [{lo:g}, {hi:g}] (used as float32{'; 0 is meaningless' if lo else ''}"
                    f"){' or none' * ('None' in str(self.__dataclass_fields__[name].type))}, got {v:g}")
        if self.algo == "rl2":  # the RL³ estimator's settings have nothing to act on
            given = [f"{n}={getattr(self, n)!r}" for n, default in RL3_ONLY.items() if getattr(self, n) != default]
            if given:
                bad(f"{', '.join(given)}: configures the RL³ estimator, and algo 'rl2' has none (use algo rl3 or "
                    "rl3_coarse, or leave it out)")

    def _validate_v4(self, bad) -> None:
        """Settings that do not apply to the model (v4 or not gru) or the v4 semantics, and v4-only ones, are errors."""
        if self.shared_torso and self.model.endswith("-v4"):
            bad(f"shared_torso does not apply to model {self.model!r} (the paper's code's separate networks)")
        if self.gru_hidden != TrainConfig.gru_hidden and self.model != "gru":
            bad(f"gru_hidden={self.gru_hidden} applies only to --model gru (the GRU's width), not {self.model!r}")
        if self.model == "transformer-v4" and self.horizon + 1 > V4_POS_SLOTS:
            bad(f"model transformer-v4 has {V4_POS_SLOTS} positional slots (as the original); horizon "
                f"{self.horizon} needs {self.horizon + 1}")
        if self.vi_carry_over:
            bad("vi_carry_over=true is not supported: a new meta-episode re-initialises the estimator inside the env's "
                "reset, which sees no previous state; nor does the original carry Q/V across tasks (each draw zeroes)")
        if self.semantics != "v4":
            return
        if self.algo == "rl3_coarse":
            bad("algo rl3_coarse is not implemented with semantics 'v4' (METHOD §2.4); use algo rl3, or rl3_coarse "
                "with semantics fresh or rlc")
        if self.std_errors:
            bad("std_errors does not apply to semantics 'v4' (the original shows no standard errors)")
        if self.alpha_laplace is not None:
            bad("alpha_laplace does not apply to semantics 'v4' (the original's model is unsmoothed maximum "
                "likelihood)")

    @property
    def num_minibatches(self) -> int:
        return self.num_envs // self.minibatch_envs

    @property
    def batch_steps(self) -> int:
        return self.num_envs * self.horizon

    def replace(self, **kw: Any) -> TrainConfig:
        return dataclasses.replace(self, **kw)

    def hparams(self) -> HParams:
        """This config's values of the ``HParams`` fields (Python floats)."""
        return HParams(*(getattr(self, name) for name in HParams._fields))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of ``d`` (``to_dict``'s fields, missing ones at their defaults; a legacy ``estimator_mode``
        becomes ``semantics``; ``DROPPED_FIELDS`` ignored). ValueError for a non-dict, unknown fields (named), a
        legacy mode that is unknown or conflicts, or a value construction refuses."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object of fields, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in DROPPED_FIELDS}
        mode = d.pop("estimator_mode", None)
        if mode is not None:
            if mode not in LEGACY_ESTIMATOR_MODES:
                raise ValueError(f"estimator_mode {mode!r} is not one of {', '.join(LEGACY_ESTIMATOR_MODES)} "
                                 f"(legacy; use semantics, one of {', '.join(SEMANTICS)})")
            if d.get("semantics") not in (None, LEGACY_ESTIMATOR_MODES[mode]):
                raise ValueError(f"estimator_mode {mode!r} (= semantics {LEGACY_ESTIMATOR_MODES[mode]!r}) conflicts "
                                 f"with semantics {d['semantics']!r}; set only semantics")
            d["semantics"] = LEGACY_ESTIMATOR_MODES[mode]
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**d)


class ConfigError(ValueError):
    """A user input the command cannot honour (``rl3jax.cli.main`` prints it as one line, exit status 2)."""


def _coerce(field: dataclasses.Field, raw: str, flag: str):
    typ = str(field.type)  # config.py's annotations are strings (``from __future__ import annotations``)
    if (none := " or none" * ("None" in typ)) and raw.lower() == "none":  # every error of such a field names none
        return None
    if typ.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "0", "false", "no"):
            return raw.lower() in ("1", "true", "yes")
        raise ConfigError(f"{flag} {field.name}={raw}: expected true or false{none}")
    if typ.startswith(("int", "float")):
        kind, what = (int, "a whole number") if typ.startswith("int") else (float, "a float")
        try:
            v = kind(raw)
        except ValueError:
            raise ConfigError(f"{flag} {field.name}={raw}: expected {what}{none}") from None
        if not math.isfinite(v):
            raise ConfigError(f"{flag} {field.name}={raw}: expected a finite number{none}")
        return v
    return raw


def parse_sets(items: list[str], sweep: bool = False) -> dict:
    """``--set FIELD=VALUE`` items -> {field: typed value}; with ``sweep``, ``--sweep NAME=V1,V2,...`` items ->
    {name: [typed values]} of ``HParams`` names (``-`` reads as ``_``). ``ConfigError`` for a malformed item, an
    unknown (or unsweepable) or repeated name, a value of the wrong type, a sweep without distinct values."""
    flag, form = ("--sweep", "NAME=V1,V2,...") if sweep else ("--set", "FIELD=VALUE")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    valid = HParams._fields if sweep else tuple(fields)
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} expects {form}, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in valid:
            what = (f" {k}: not sweepable in one compile (other settings change shapes or code: use separate runs)"
                    if sweep and k in fields else f": unknown config field {k!r}")
            raise ConfigError(f"{flag}{what}; valid: {', '.join(valid)}")
        if k in out:
            raise ConfigError(f"{flag} {k} given twice")
        out[k] = [_coerce(fields[k], x.strip(), flag) for x in v.split(",") if x.strip()] if sweep else \
            _coerce(fields[k], v, flag)
        if sweep and (not out[k] or len(set(out[k])) != len(out[k])):
            raise ConfigError(f"{flag} {k}={v}: expected distinct values V1,V2,...")
    return out


def _divisor_near(n: int, target: float) -> int:
    """The divisor of ``n`` nearest to ``target`` (ties: the larger): whole-sequence minibatches of n sequences."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - target), -d))


@dataclasses.dataclass(frozen=True)
class Preset:
    """Published (or laptop) settings: ``fields`` (TrainConfig fields), ``by_algo`` (algo -> fields that differ),
    and, derived from a run's own H, num_envs and iters, ``batch`` env steps per iteration, ``minibatches`` per
    epoch and ``evals`` held-out evaluations per run."""

    fields: dict
    batch: int
    minibatches: int
    evals: int = 0
    by_algo: dict = dataclasses.field(default_factory=dict)

    def settings(self, given: dict) -> dict:
        """TrainConfig fields -> values of this preset under the user's ``given`` fields (which win)."""
        algo = given.get("algo", self.fields.get("algo", TrainConfig.algo))
        out = {**self.fields, **self.by_algo.get(algo, {}), **given}
        out.setdefault("num_envs", max(1, self.batch // out["horizon"]))
        out.setdefault("minibatch_envs", _divisor_near(out["num_envs"], out["num_envs"] / self.minibatches))
        if self.evals:  # a run of fewer iterations than evals has none
            out.setdefault("eval_every", out["iters"] // self.evals)
        return out


def _preset(env, horizon, iters, batch, minibatch, ent, lr, schedule="constant", evals=0, by_algo=None, **kw):
    """Published settings in steps; minibatches are whole sequences, so the minibatch is the divisor of
    nenvs nearest to minibatch/H (H=500: 3200/500 = 6.4 sequences -> 8, i.e. 8 minibatches of 4000 steps)."""
    num_envs = batch // horizon
    minibatches = num_envs // _divisor_near(num_envs, minibatch / horizon)
    return Preset(dict(env=env, horizon=horizon, iters=iters, ent_coef=ent, lr=lr, ent_schedule=schedule,
                       **PAPER_PPO, **kw),
                  batch, minibatches, evals, by_algo or {})


#: on the laptop presets, RL² gets a sequence model: the Markov MLP sees only the current input, which without
#: RL³'s Q-estimates is not RL² (still possible, as an ablation, with an explicit model=markov). Not tuned.
_RL2_LAPTOP = {"rl2": {"model": "gru"}}
#: the paper's own code's settings (METHOD §2.6) and the laptop presets' common ones
_V4 = dict(semantics="v4", model="transformer-v4")
_CPU = dict(model="markov", evals=4, eval_episodes=250, by_algo=_RL2_LAPTOP, chunk_iters=1)
# METHOD §6: batch = steps per PPO iteration, nenvs = batch / H.
PRESETS: dict[str, Preset] = {
    "bandit-h100": _preset("bandit", 100, 3000, 32000, 3200, 0.001, 3e-4),
    "bandit-h500": _preset("bandit", 500, 6000, 32000, 3200, 0.01, 3e-4),
    "mdp-h100": _preset("mdp", 100, 10000, 32000, 3200, 0.01, 3e-4),
    "mdp-h500": _preset("mdp", 500, 24000, 32000, 3200, 0.01, 3e-4),
    "grid11": _preset("grid11", 250, 20000, 32000, 4000, 0.04, 2e-4),
    "grid13": _preset("grid13", 350, 20000, 33600, 4200, 0.04, 2e-4),
    "bandit-h512": _preset("bandit", 512, 5000, 32768, 4096, 0.1, 3e-4, "linear"),
    "mdp-h512": _preset("mdp", 512, 10000, 32768, 4096, 0.1, 3e-4, "linear"),
    # The paper's own code (bhatiaabhinav/RL3 commit f8121786; experiments/README.md "Paper-v4 targets"): its
    # main.jl defaults (batch 32000, minibatch 3200, lr 3e-4), the entropy bonus of its README's commands,
    # iterations as METHOD §6.
    "paper-v4-bandit-h100": _preset("bandit", 100, 3000, 32000, 3200, 0.001, 3e-4, **_V4),
    "paper-v4-bandit-h500": _preset("bandit", 500, 6000, 32000, 3200, 0.01, 3e-4, **_V4),
    "paper-v4-mdp-h100": _preset("mdp", 100, 10000, 32000, 3200, 0.01, 3e-4, **_V4),
    "paper-v4-mdp-h500": _preset("mdp", 500, 24000, 32000, 3200, 0.01, 3e-4, **_V4),
    # Grids (its README's grid commands: entropy 0.04, lr 2e-4, H 250 / 350; main.jl: batch 32000, so
    # nenvs = 32000 ÷ H = 128 / 91, minibatch 3200 -> 16 / 7 whole sequences here): iterations as METHOD §6's
    # grid rows (its README's commands say 10000)
    "paper-v4-grid11": _preset("grid11", 250, 20000, 32000, 3200, 0.04, 2e-4, **_V4),
    "paper-v4-grid13": _preset("grid13", 350, 20000, 32000, 3200, 0.04, 2e-4, **_V4),
    # Grids on a CPU at the published horizons, sized for about 10 minutes on a 2-core CPU; not tuned.
    "cpu-grid11": _preset("grid11", 250, 100, 4000, 1000, 0.04, 1e-3, epochs=4, evals=4, eval_episodes=100, chunk_iters=1),
    "cpu-grid13": _preset("grid13", 350, 50, 5600, 1400, 0.04, 1e-3, epochs=4, evals=2, eval_episodes=100, chunk_iters=1),
    # Laptop defaults, tuned in BENCHMARKS.md "Laptop presets (tuning)". Every CPU preset has one iteration per
    # chunk (an iteration takes seconds there), so a signal stops a run within seconds.
    "cpu-mdp": _preset("mdp", 100, 80, 32000, 8000, 0.03, 1e-3, **_CPU),
    "cpu-bandit": _preset("bandit", 100, 40, 32000, 8000, 0.03, 1e-3, **_CPU),
    # Beyond the paper's families: cpu-mdp's settings (not tuned for them); deepsea, xland at their catalog H
    "cpu-garnet": _preset("garnet", 100, 80, 32000, 8000, 0.03, 1e-3, **_CPU),
    "cpu-deepsea": _preset("deepsea", 300, 80, 32400, 8100, 0.03, 1e-3, **_CPU),
    "cpu-xland": _preset("xland", 512, 40, 2**14, 2**12, .01, 1e-3, **_CPU),
}


def laptop_preset(env: str) -> str | None:
    """The name of env ``env``'s laptop (CPU) preset, ``cpu-{env}``, or None when it has none."""
    return f"cpu-{env}" if f"cpu-{env}" in PRESETS else None


def preset(name: str, given: dict | None = None) -> dict:
    """The settings of preset ``name`` under the user's ``given`` fields (``Preset.settings``). ValueError naming
    the valid presets for an unknown name, and the env's own for a preset of another env."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    given = given or {}
    env = PRESETS[name].fields["env"]
    if given.get("env", env) != env:
        mine = [n for n, p in PRESETS.items() if p.fields["env"] == given["env"]]
        raise ValueError(f"preset {name!r} is for env {env!r}, not {given['env']!r}; "
                         + (f"presets of {given['env']}: {', '.join(mine)}" if mine else
                            f"{given['env']} has no preset: omit it"))
    return PRESETS[name].settings(given)


def build(given: dict, preset_name: str | None = None) -> TrainConfig:
    """The config of a new run: preset ``preset_name`` (None: the env's laptop preset, else its published H)
    under the user's ``given`` fields (``Preset.settings``). ValueError as ``preset`` and ``TrainConfig``."""
    env = given.get("env", PRESETS[preset_name].fields["env"] if preset_name in PRESETS else TrainConfig.env)
    preset_name = preset_name or laptop_preset(env)
    if preset_name is None:
        return TrainConfig(**{"horizon": spec(env).horizon, **given})
    return TrainConfig(**preset(preset_name, given))


#: CPU env-steps/s by model at H = 100 on this workplace's 2-core CPU (BENCHMARKS.md), for ``notes``
CPU_STEPS_PER_SECOND = {"markov": 12_000, "markov-v4": 12_000, "gru": 2_500, "transformer": 2_000,
                        "transformer-v4": 2_000}
#: a run longer than this on a CPU is announced (``notes``)
LAPTOP_HOURS = 1.0


def notes(cfg: TrainConfig, cpu: bool = False) -> list[str]:
    """One-line notes on a valid config that may not train as meant: RL² with a memoryless model, a gymnax env
    whose return cannot vary, and (``cpu``) an estimated length beyond ``LAPTOP_HOURS``."""
    out = []
    laptop = PRESETS.get(laptop_preset(cfg.env) or "")
    if laptop and cfg.algo in laptop.by_algo and cfg.model == laptop.by_algo[cfg.algo].get("model"):
        out.append(f"note: algo {cfg.algo} on the laptop preset {laptop_preset(cfg.env)} trains a {cfg.model} (the "
                   f"preset's {laptop.fields['model']} model is memoryless) with settings tuned for RL³, not for it")
    if cfg.algo == "rl2" and cfg.model.startswith("markov"):
        out.append(f"note: algo rl2 with model {cfg.model} sees only the current input (memoryless): an ablation, "
                   "not RL² (RL² needs a sequence model: transformer or gru)")
    constant = GYMNAX_ENVS[cfg.env].constant if cfg.env in GYMNAX_ENVS and cfg.env not in FAMILIES else ""
    if constant:
        out.append(f"warning: env {cfg.env}'s meta-episode return cannot vary ({constant}): nothing to meta-learn")
    hours = cfg.iters * cfg.batch_steps / CPU_STEPS_PER_SECOND[cfg.model] / 3600
    if cpu and hours > LAPTOP_HOURS:
        out.append(f"warning: about {hours:.0f} h on this CPU ({cfg.iters * cfg.batch_steps:,} env steps at "
                   f"~{CPU_STEPS_PER_SECOND[cfg.model]:,}/s for model {cfg.model}); presets other than cpu-* are "
                   "sized for a GPU")
    return out
