"""Runs: the outer loop (``driver``), populations of runs (``population``), checkpoints (``checkpoint``),
run folders without JAX (``runfiles``), a loaded run (``load``), metrics logs (``metrics``), resume rules
(``resume``) and stop signals (``signals``). Imports nothing, so that
``rl3jax.runs.runfiles`` stays JAX-free for the command line's checks."""
