"""rl3jax.envs.registry: family names, specs against each family's hooks, registering a family, and imports
only of the families built."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rl3jax.config import TrainConfig
from rl3jax.envs import catalog, registry
from rl3jax.envs.base import TaskEnv
from rl3jax.envs.catalog import variants
from rl3jax.envs.registry import make_env


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert make_env("bandit").name == "bandit5" and make_env("mdp").name == "mdp"
    assert set(variants("bandit")) == {"train", "ood"}
    assert set(variants("mdp")) == {"train", "alpha0.25", "det-rewards"}
    for v in variants("mdp"):
        assert make_env("mdp", v).variant == v
    assert make_env("mdp", None).variant == "train"
    with pytest.raises(ValueError) as e:
        make_env("no-such-env")
    msg = str(e.value)
    assert "no-such-env" in msg and "bandit" in msg and "mdp" in msg and "CartPole-v1" in msg
    with pytest.raises(ValueError) as e:
        make_env("mdp", "alpha0.3")
    assert all(v in str(e.value) for v in ("train", "alpha0.25", "det-rewards"))
    with pytest.raises(ValueError) as e:
        make_env("bandit", "alpha0.25")
    assert "ood" in str(e.value)
    with pytest.raises(ValueError):
        make_env("CartPole-v1", "ood")


def test_family_hooks_declared_on_the_base_class():
    """Every family answers every hook (no probing): defaults for what it lacks, its own values otherwise."""
    bandit, mdp, grid, cart = (make_env(n) for n in ("bandit", "mdp", "grid13", "CartPole-v1"))
    assert all(isinstance(e, TaskEnv) for e in (bandit, mdp, grid, cart))
    assert [e.family for e in (bandit, mdp, grid, cart)] == ["bandit", "mdp", "grid13", "CartPole-v1"]
    assert [e.task_horizon for e in (bandit, mdp, grid, cart)] == [1, 10, 350, 500]
    assert [e.has_true_model for e in (bandit, mdp, grid, cart)] == [True, True, True, False]
    assert [e.grid_side for e in (bandit, mdp, grid, cart)] == [None, None, 13, None]
    assert (bandit.v4_defaults.q_denom, mdp.v4_defaults.q_denom) == (1.0, 100.0)
    assert bandit.v4_defaults.drop_task_obs and not mdp.v4_defaults.drop_task_obs
    assert (grid.v4_defaults.q_denom, grid.v4_defaults.epsilon, mdp.v4_defaults.epsilon) == (100.0, 0.1, 0.01)
    assert not grid.v4_defaults.drop_task_obs and cart.rl3_defaults is None and cart.num_states is None
    assert mdp.with_horizon(500) is mdp and grid.with_horizon(500).task_horizon == 500
    with pytest.raises(NotImplementedError, match="no known model"):
        cart.true_model(cart.default_params)
    with pytest.raises(NotImplementedError, match="no discrete states"):
        cart.state_index(None, cart.default_params)


# families of an extra (catalog.EXTRAS) are checked by their own tests (tests/envs/test_xland.py), which skip without it
@pytest.mark.parametrize("name", [n for n in registry.BUILT_IN if n not in catalog.EXTRAS])
def test_every_family_spec_matches_its_family_hooks(name):
    """A family's JAX-free spec (algos, semantics: what the config checks before JAX starts) is what its hooks
    say (rl3_defaults, grid_side, v4_defaults), every variant builds, and its module's variants are the spec's."""
    spec = catalog.FAMILIES[name]
    envs = [make_env(name, v) for v in spec.variants]
    assert registry.spec_of(envs[0], spec.entry, spec.variants, spec.horizon, spec.kwargs) == spec
    assert {env.family for env in envs} == {name} and len({env.name for env in envs}) == len(envs)
    assert expected_spec_fields[name] == (spec.variants[0], spec.horizon, spec.algos, spec.semantics)


#: hand-written from METHOD §3 and §6 (the training variant, H, the algos and semantics that apply)
expected_spec_fields = {
    "bandit": ("train", 100, ("rl2", "rl3"), ("fresh", "rlc", "v4")),
    "mdp": ("train", 100, ("rl2", "rl3"), ("fresh", "rlc", "v4")),
    "garnet": ("train", 100, ("rl2", "rl3"), ("fresh", "rlc")),
    "deepsea": ("train", 300, ("rl2", "rl3"), ("fresh", "rlc")),
    "grid11": ("train", 250, ("rl2", "rl3", "rl3_coarse"), ("fresh", "rlc", "v4")),
    "grid13": ("train", 350, ("rl2", "rl3", "rl3_coarse"), ("fresh", "rlc", "v4")),
    "xland": ("train", 512, ("rl2", "rl3", "rl3_coarse"), ("fresh", "rlc")),
}


def test_family_modules_take_their_variants_from_the_specs():
    from rl3jax.envs import bandit, grid_generation, mdp

    assert catalog.FAMILIES["bandit"].variants == bandit.VARIANTS and catalog.FAMILIES["mdp"].variants == mdp.VARIANTS
    for name in ("grid11", "grid13"):
        assert catalog.FAMILIES[name].variants == tuple(grid_generation.GRID_FAMILIES[name][1])
        assert make_env(name).horizon == catalog.FAMILIES[name].horizon
    assert catalog.spec("CartPole-v1").algos == ("rl2",)  # a served gymnax env: RL² only


def test_registry_imports_no_family_until_one_is_built():
    """The registry builds a family from its spec's entry point, imported by name (a fresh interpreter)."""
    code = ("import sys; from rl3jax.envs import registry; "
            "print(sorted(m for m in sys.modules if m.startswith('rl3jax.envs.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["rl3jax.envs.base", "rl3jax.envs.catalog", "rl3jax.envs.registry"]


@pytest.mark.parametrize("name", ["mdp", "grid13", "CartPole-v1"])
def test_register_refuses_to_replace_a_built_in_family(name):
    """A user's family cannot silently take the name of a built-in family or a gymnax env."""
    with pytest.raises(ValueError, match=f"register: '{name}' is a built-in"):
        registry.register(name, lambda variant: make_env("bandit"), ("train",))
    assert make_env(name).family == name  # still the built-in one
    assert type(make_env("mdp")).__name__ == "RandomMDP"


def test_register_adds_a_spec_from_the_family_hooks():
    """A user's family gets a spec read from its hooks: an RL²-only probe, and a bandit under another name (RL³
    and v4 apply, no RL³-coarse); the config then checks both before JAX work, like the built-in families."""
    from tests.probes import register_probes

    register_probes()
    probe = catalog.FAMILIES["probe-action"]
    assert (probe.variants, probe.horizon, probe.algos, probe.semantics) == (("train",), 100, ("rl2",), ())
    with pytest.raises(ValueError, match="algo 'rl3' does not apply to env 'probe-action' .valid: rl2.; it has no "
                                         "state index"):
        TrainConfig(env="probe-action", algo="rl3")
    try:
        spec = registry.register("bandit-alias", lambda variant: make_env("bandit", variant), ("train", "ood"), 50)
        assert (spec.algos, spec.semantics, spec.horizon) == (("rl2", "rl3"), ("fresh", "rlc", "v4"), 50)
        assert make_env("bandit-alias", "ood").variant == "ood"
        with pytest.raises(ValueError, match="variant 'dense' is not valid for env 'bandit-alias'"):
            TrainConfig(env="bandit-alias", variant="dense")
    finally:
        catalog.FAMILIES.pop("bandit-alias", None)
