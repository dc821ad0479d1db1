import sys

from rl3jax.cli import main

sys.exit(main())
