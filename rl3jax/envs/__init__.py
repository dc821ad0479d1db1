"""Task families by name: ``make_env('mdp', variant='alpha0.25')``."""

from rl3jax.envs.registry import FAMILIES, make_env, variants

__all__ = ["FAMILIES", "make_env", "variants"]
