"""Device check: cached step-by-step transformer vs full-sequence pass, at the default matmul precision."""
import jax
import jax.numpy as jnp

from rl3jax.networks import make_network


def check(prec: str) -> None:
    with jax.default_matmul_precision(prec):
        net = make_network("transformer", 5, 100)
        params = net.init(jax.random.key(0), 36)
        xs = jax.random.normal(jax.random.key(1), (64, 100, 36))
        seq = jax.jit(net.sequence)(params, xs)

        def roll(params, xs):
            def f(c, x):
                return net.step(params, c, x)
            _, out = jax.lax.scan(f, net.initial_carry(xs.shape[0]), jnp.swapaxes(xs, 0, 1))
            return jnp.swapaxes(out, 0, 1)

        step = jax.jit(roll)(params, xs)
        print(f"{jax.devices()[0].device_kind} precision={prec}: max |step - sequence| = "
              f"{float(jnp.abs(step - seq).max()):.2e}")


for prec in ("default", "highest"):
    check(prec)
