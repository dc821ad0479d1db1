"""Runs: the outer loop (``driver``), populations of runs (``population``), checkpoints (``checkpoint``),
run folders without JAX (``runfiles``) and a loaded run (``load``). Imports nothing, so that
``rl3jax.runs.runfiles`` stays JAX-free for the command line's checks."""
