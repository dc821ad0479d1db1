"""The command line's building blocks without JAX: the parser with one-line errors, its help formatter, the
argparse types (whole numbers in a range, seconds) and the settings flags that make a ``TrainConfig``, shared by
``rl3jax train`` and ``rl3jax sweep plan`` (``rl3jax.cli``, ``rl3jax.sweep_cli``).
"""

from __future__ import annotations

import argparse
import math
import sys

from rl3jax.config import ALGOS, INT_MAX, MODELS, PRESETS, SEED_MAX, TrainConfig, laptop_preset
from rl3jax.envs.catalog import FAMILIES, GYMNAX_ENVS


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``rl3jax train: error: ...``) instead of the usage block."""

    def _print_message(self, message, file=None):  # argparse's drops OSErrors: a closed pipe reaches cli.main
        if message:
            (file or sys.stderr).write(message)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS) or action.required:
            return action.help
        return super()._get_help_string(action)


def subparser(sub, name: str, help: str, description: str | None = None):
    return sub.add_parser(name, help=help, description=description or help, formatter_class=Formatter)


def int_type(lo: int, hi: int, what: str = "a whole number"):
    """An argparse type: a whole number in [lo, hi] (decimal digits only: 1e23 and 2.5 are refused)."""

    def conv(s: str) -> int:
        try:
            v = int(s.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in [{lo}, {hi}], got {s!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} {f'>= {lo}' if v < lo else f'<= {hi}'}, got {v}")
        return v

    return conv


positive_int = int_type(1, INT_MAX)
seed_type = int_type(0, SEED_MAX, "a 32-bit seed")


def seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {s!r}")
    return v


def config_flags(p) -> None:
    """The flags that make a TrainConfig (``rl3jax.cli.given_settings``), of ``train`` and ``sweep plan``."""
    models = {name: PRESETS[name].fields["model"] + "".join(f", {a}: {o['model']}" for a, o in PRESETS[name].by_algo.items())
              for env in FAMILIES if (name := laptop_preset(env)) and "model" in PRESETS[name].fields}
    served = [n for n, spec in GYMNAX_ENVS.items() if spec.kind != "refused"]
    indexed = [n for n in served if GYMNAX_ENVS[n].state_fields is not None]
    p.add_argument("--env", default=None,
                   help=f"task family: {', '.join(FAMILIES)}, or a gymnax env with discrete actions "
                        f"(e.g. {', '.join(served[:2])}; RL³ only with a state index: {', '.join(indexed)}) "
                        f"[default: {TrainConfig.env}]")
    p.add_argument("--variant", default=None,
                   help=f"task-family variant [default: {TrainConfig.variant}, the training distribution]")
    p.add_argument("--algo", choices=ALGOS, default=None,
                   help=f"algorithm [default: the preset's, else {TrainConfig.algo}]")
    p.add_argument("--model", choices=MODELS, default=None,
                   help=f"sequence model [default: the preset's ({'; '.join(f'{k}: {v}' for k, v in models.items())}), "
                        f"else {TrainConfig.model}]")
    p.add_argument("--horizon", type=positive_int, default=None,
                   help="meta-episode length H [default: the preset's, else the family's published H "
                        f"({', '.join(f'{k} {v.horizon}' for k, v in FAMILIES.items())})]")
    p.add_argument("--iters", type=positive_int, default=None,
                   help="total PPO iterations to reach (with --resume: the new total) [default: the preset's]")
    p.add_argument("--num-envs", type=positive_int, default=None,
                   help="parallel tasks per iteration [default: the preset's]")
    p.add_argument("--minibatch-envs", type=positive_int, default=None,
                   help="whole sequences per minibatch; must divide --num-envs [default: the preset's]")
    p.add_argument("--seed", type=seed_type, default=None, help=f"PRNG seed, 0 .. {SEED_MAX} [default: {TrainConfig.seed}]")
    p.add_argument("--preset", default=None, help=f"published settings of a new run: {', '.join(PRESETS)}")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field (e.g. --set lr=1e-3 --set semantics=rlc); repeatable")
