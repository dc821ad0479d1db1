"""One process of a multi-process test run (started by tests/system/test_distributed.py; not a test itself).

Usage: python tests/system/distributed_worker.py LOCAL_DEVICES -- <rl3jax train arguments>

Fakes LOCAL_DEVICES CPU devices in this process, selects gloo CPU collectives (both before JAX starts its
backend), then runs the ordinary command line, so the multi-host flags are exercised exactly as a user
would give them.
"""

import sys

import jax

if __name__ == "__main__":
    local_devices = int(sys.argv[1])
    assert sys.argv[2] == "--"
    jax.config.update("jax_num_cpu_devices", local_devices)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from rl3jax.cli import main

    sys.exit(main(sys.argv[3:]))
