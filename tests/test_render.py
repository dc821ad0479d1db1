"""Rendering writes real pictures: a GIF with one frame per step and a PNG sheet with a row per variant."""

from __future__ import annotations

import jax
import numpy as np
from PIL import Image

from rl3jax.config import TrainConfig
from rl3jax.evaluate import held_out_tasks
from rl3jax.render import BAR_W, TILE_COLOURS, episode_gif, legend_height, samples_png, value_colour
from rl3jax.trainer import make_train


def test_episode_gif_has_a_frame_per_step_and_shows_the_agent(tmp_path):
    cfg = TrainConfig(env="grid11", algo="rl3", model="markov", horizon=12, num_envs=4, minibatch_envs=2)
    trainer = make_train(cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))
    task = jax.tree.map(lambda x: x[0], held_out_tasks(trainer.meta_env, 1))
    out = str(tmp_path / "ep.gif")
    frames = episode_gif(trainer, state.actor_params, task, out, jax.random.key(1))
    assert len(frames) == 12
    assert abs(frames[-1]["return"] - sum(f["reward"] for f in frames)) < 1e-3
    im = Image.open(out)
    assert im.n_frames == 12
    assert im.size[0] == 11 * 28 + BAR_W  # the grid and, on its right, the heat map's colour bar
    # the start cell is known from the first step on, and the value map covers only known cells
    assert frames[0]["known"].sum() >= 1 and frames[-1]["known"].sum() >= frames[0]["known"].sum()
    im.seek(0)
    rgb = np.asarray(im.convert("RGB")).astype(int)
    legend = legend_height(11 * 28)
    grid, below = rgb[:-legend, :11 * 28], rgb[-legend:, :11 * 28]
    assert (np.abs(grid - np.array([20, 20, 200])).sum(-1) < 30).any()  # the agent's marker, on the grid
    # the tile legend under the grid: a swatch of every tile colour and of the agent (issue 17 item 19)
    for colour in [*TILE_COLOURS.values(), (20, 20, 200)]:
        assert (np.abs(below - np.array(colour)).sum(-1) < 30).any(), colour


def test_samples_png_has_a_row_per_variant(tmp_path):
    out = str(tmp_path / "grids.png")
    samples_png("grid11", out, per_variant=2)
    im = Image.open(out)
    assert im.size[0] > 2 * 11 * 16 and im.size[1] >= 11 * 16


def test_heat_map_colours_cannot_be_confused_with_any_tile():
    # issue 9: low values were blue like water. Every heat map colour is far (RGB distance > 70) from every tile
    # colour, and the map runs monotonically from light (low) to dark (high).
    colours = np.array([value_colour(x) for x in np.linspace(0, 1, 21)], float)
    tiles = np.array(list(TILE_COLOURS.values()), float)
    assert np.linalg.norm(colours[:, None] - tiles[None], axis=-1).min() > 70
    assert np.all(np.diff(colours.sum(-1)) < 0)
