"""rl3jax.envs.grid_geometry: the neighbour and distance tables, by hand."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rl3jax.envs.grid_geometry import (
    ABSORBING_TILES,
    DIRECTION_OFFSETS,
    TILE_CHARS,
    is_absorbing,
    neighbour_table,
)
from tests import reference_grid as ref


def test_geometry_tables_by_hand():
    """The one neighbour table (stay, N, E, S, W; off-grid: stay) and the absorbing tiles 'G' and 'X'."""
    nbr = neighbour_table(3)
    assert nbr[4].tolist() == [4, 1, 5, 7, 3]  # the centre of a 3x3 grid
    assert nbr[0].tolist() == [0, 0, 1, 3, 0]  # top-left corner: north and west stay
    assert nbr[8].tolist() == [8, 5, 8, 8, 7]  # bottom-right corner: east and south stay
    assert DIRECTION_OFFSETS.tolist() == [[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]]
    assert sorted(TILE_CHARS[t] for t in ABSORBING_TILES) == sorted(ref.ABSORBING)
    codes = jnp.arange(len(TILE_CHARS))
    assert [TILE_CHARS[i] for i in np.flatnonzero(np.asarray(is_absorbing(codes)))] == ["X", "G"]
