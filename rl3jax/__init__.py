"""rl3jax: RL³ meta-reinforcement learning, end to end in JAX."""

__version__ = "0.1.0"
