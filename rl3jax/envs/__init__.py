"""Task families (METHOD §3). Build one with ``rl3jax.envs.registry.make_env('mdp', variant='alpha0.25')``;
ask which names and variants exist, without importing JAX, with ``rl3jax.envs.catalog.variants(name)``.

This package module imports nothing, so that ``rl3jax.config`` can validate env names through the catalog
before JAX starts.
"""
