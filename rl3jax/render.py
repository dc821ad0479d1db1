"""Pictures of grid tasks: a trained agent's meta-episode as a GIF (tiles, agent, path, and a heat map of the
RL³ value estimates as they grow), and a PNG sheet of sampled grids per variant.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.config import policy_mode
from rl3jax.envs.grid_geometry import DANGER, EMPTY, GOAL, OBSTACLE, START, TILE_CHARS, WARNING, WATER
from rl3jax.envs.registry import make_env, variants
from rl3jax.evaluate import held_out_tasks
from rl3jax.outputs import atomic_write, numbered_paths
from rl3jax.runfiles import check_render
from rl3jax.runs import load_run

TILE_COLOURS = {  # tile code (rl3jax.envs.grid_geometry) -> RGB
    EMPTY: (245, 245, 240),
    OBSTACLE: (60, 60, 60),
    WATER: (110, 170, 230),
    DANGER: (200, 30, 30),
    WARNING: (250, 170, 60),
    GOAL: (40, 170, 70),
    START: (250, 230, 120),
}
TILE_NAMES = {EMPTY: "empty", OBSTACLE: "obstacle", WATER: "water", DANGER: "danger", WARNING: "warning",
              GOAL: "goal", START: "start"}
#: tiles the value heat map colours over (the others keep their tile colour)
HEAT_TILES = (EMPTY, WARNING, START)
#: tiles marked with their character (``TILE_CHARS``)
LABELLED_TILES = (DANGER, GOAL, START, WARNING)
#: the value heat map's matplotlib colormap: light pink to dark magenta-purple, hues no tile, the path or the agent uses
#: (water is blue, goal green, danger red, warning orange, start yellow, obstacles grey; the path is black)
VALUE_CMAP = "RdPu"
_CMAP_RANGE = (0.3, 1.0)  # the part of the colormap used, so the lowest value is not mistaken for an empty tile
PATH_COLOUR = (0, 0, 0)
AGENT_COLOUR = (20, 20, 200)
BAR_W = 84  # pixels on the right of a frame for the colour bar
LEGEND_COL, LEGEND_ROW = 84, 14  # pixels per entry of a frame's legend (a swatch and a name), per row of it


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def value_colour(x: float) -> tuple[int, int, int]:
    """The heat map colour of a value normalised to [0, 1] (``VALUE_CMAP``)."""
    from matplotlib import colormaps

    lo, hi = _CMAP_RANGE
    r, g, b, _ = colormaps[VALUE_CMAP](lo + (hi - lo) * float(np.clip(x, 0.0, 1.0)))
    return int(255 * r), int(255 * g), int(255 * b)


def legend_entries() -> list[tuple[tuple[int, int, int], str]]:
    """(colour, name) of every tile (with its character where the frame marks it), the agent and the path."""
    return [(TILE_COLOURS[k], TILE_NAMES[k] + (f" ({TILE_CHARS[k]})" if k in LABELLED_TILES else ""))
            for k in sorted(TILE_COLOURS)] + [(AGENT_COLOUR, "agent"), (PATH_COLOUR, "path")]


def legend_height(width: int) -> int:
    """Pixels of the legend under a grid ``width`` pixels wide."""
    per_row = max(1, width // LEGEND_COL)
    return LEGEND_ROW * -(-len(legend_entries()) // per_row) + 6


def _draw_legend(d, y0: int, width: int) -> None:
    per_row = max(1, width // LEGEND_COL)
    for j, (rgb, name) in enumerate(legend_entries()):
        x, y = 4 + LEGEND_COL * (j % per_row), y0 + 4 + LEGEND_ROW * (j // per_row)
        d.rectangle([x, y, x + 10, y + 10], fill=rgb, outline=(150, 150, 150))
        d.text((x + 14, y), name, fill=(0, 0, 0), font=_font())


def draw_grid(tiles: np.ndarray, cell: int = 28, values: np.ndarray | None = None, known: np.ndarray | None = None,
              path: list[int] | None = None, agent: int | None = None, title: str | None = None):
    """One frame: tiles, an optional value heat map over known cells (with a colour bar), the path so far, the
    agent, and under the grid a legend of the tiles, agent and path. ``tiles``: (n, n) tile codes;
    ``values``/``known``: (n*n,) per-cell max Q estimate and mask; ``title``: lines separated by "\n"."""
    from PIL import Image, ImageDraw

    n = tiles.shape[0]
    lines = title.split("\n") if title else []
    top = 12 * len(lines) + (4 if lines else 0)
    heat = values is not None and known is not None
    width = n * cell + (BAR_W if heat else 0)
    img = Image.new("RGB", (width, n * cell + top + legend_height(n * cell)), (255, 255, 255))
    d = ImageDraw.Draw(img)
    _draw_legend(d, n * cell + top, n * cell)
    for k, line in enumerate(lines):
        d.text((3, 2 + 12 * k), line, fill=(0, 0, 0), font=_font())
    vmin, vmax = 0.0, 1.0
    if heat and known.any():
        kv = values[known]
        vmin = float(kv.min())
        vmax = float(kv.max()) if kv.max() > kv.min() else vmin + 1.0
    for r in range(n):
        for c in range(n):
            colour = TILE_COLOURS[int(tiles[r, c])]
            i = r * n + c
            if heat and known[i] and int(tiles[r, c]) in HEAT_TILES:
                colour = value_colour((values[i] - vmin) / (vmax - vmin))
            x0, y0 = c * cell, r * cell + top
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            if int(tiles[r, c]) in LABELLED_TILES:
                ch = TILE_CHARS[int(tiles[r, c])]
                dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 110
                d.text((x0 + cell // 2 - 3, y0 + cell // 2 - 6), ch, fill=(255, 255, 255) if dark else (0, 0, 0),
                       font=_font())
    if path:
        pts = [((p % n) * cell + cell // 2, (p // n) * cell + cell // 2 + top) for p in path]
        if len(pts) > 1:
            d.line(pts, fill=PATH_COLOUR, width=2)
    if agent is not None:
        x0, y0 = (agent % n) * cell, (agent // n) * cell + top
        d.ellipse([x0 + 6, y0 + 6, x0 + cell - 7, y0 + cell - 7], fill=AGENT_COLOUR)
    if heat:  # colour bar: top = highest known value, bottom = lowest
        x0, y0, y1 = n * cell + 8, top + 18, n * cell + top - 14
        for y in range(y0, y1 + 1):
            d.line([(x0, y), (x0 + 12, y)], fill=value_colour((y1 - y) / max(y1 - y0, 1)))
        d.rectangle([x0, y0, x0 + 12, y1], outline=(0, 0, 0))
        d.text((x0 - 4, top + 2), "max Q", fill=(0, 0, 0), font=_font())
        d.text((x0 + 16, y0 - 5), f"{vmax:.3g}", fill=(0, 0, 0), font=_font())
        d.text((x0 + 16, y1 - 6), f"{vmin:.3g}", fill=(0, 0, 0), font=_font())
    return img


def _cell_values(estimator, est) -> np.ndarray:
    """(S,) max_a Q of every cell from the estimator's latest solve (``Estimator.q_values``)."""
    return np.asarray(estimator.q_values(est, jnp.arange(estimator.num_states)).max(axis=-1))


def record_episode(trainer, params, task, key, greedy: bool = False):
    """Plays one meta-episode step by step; returns positions, per-step cell values, known masks, rewards."""
    meta = trainer.meta_env
    step_env = jax.jit(meta.step)
    policy = jax.jit(trainer.actor.step)
    obs, state = jax.jit(meta.reset)(key, task)
    carry = trainer.actor.initial_carry(1)
    frames = []
    for _ in range(meta.horizon):
        key, k_a, k_s = jax.random.split(key, 3)
        carry, logits = policy(params, carry, obs[None])
        a = jnp.argmax(logits[0]) if greedy else jax.random.categorical(k_a, logits[0])
        pos = int(meta.env.state_index(state.env_state, task))
        values = known = None
        if state.est is not None:
            values, known = _cell_values(meta.estimator, state.est), np.asarray(meta.estimator.known(state.est))
        obs, state, reward, _, info = step_env(k_s, state, a, task)
        frames.append({"pos": pos, "values": values, "known": known, "reward": float(reward),
                       "reset": bool(info["task_episode_over"]), "return": float(state.episode_return)})
    return frames


def episode_gif(trainer, params, task, out: str, key, greedy: bool = False, every: int = 1, title: str = ""):
    """Writes a GIF of one meta-episode; ``title``: the first title line (e.g. family, variant, algorithm,
    checkpoint); the second gives greedy/stochastic, the step and the return so far."""
    frames = record_episode(trainer, params, task, key, greedy)
    tiles = np.asarray(task.tiles)
    images, path = [], []
    mode = policy_mode(greedy)
    for t, f in enumerate(frames):
        path.append(f["pos"])
        if t % every == 0 or t == len(frames) - 1:
            images.append(draw_grid(tiles, values=f["values"], known=f["known"], path=path, agent=f["pos"],
                                    title=f"{title}\n{mode} t={t + 1}/{len(frames)} return={f['return']:.0f}"))
        if f["reset"]:
            path = []
    atomic_write(out, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=80,
                                               loop=0))
    return frames


def tiles_rgb(tiles: np.ndarray) -> np.ndarray:
    """(n, n) tile codes -> (n, n, 3) uint8 colours (``TILE_COLOURS``)."""
    lut = np.zeros((max(TILE_COLOURS) + 1, 3), np.uint8)
    for code, rgb in TILE_COLOURS.items():
        lut[code] = rgb
    return lut[np.asarray(tiles, int)]


def samples_png(family: str, out: str, per_variant: int = 4, seed: int = 0):
    """A sheet of ``per_variant`` sampled grids for every variant of a grid family (matplotlib): one row per
    variant, labelled, the family in the title and a legend of the tile types."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = list(variants(family))
    fig, axes = plt.subplots(len(names), per_variant, figsize=(1.6 * per_variant + 1.6, 1.6 * len(names) + 0.8),
                             squeeze=False)
    for r, variant in enumerate(names):
        env = make_env(family, variant)
        tasks = jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(seed), per_variant))
        tiles = np.asarray(tasks.tiles)
        for c in range(per_variant):
            ax = axes[r, c]
            ax.imshow(tiles_rgb(tiles[c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(variant, rotation=0, ha="right", va="center")
    fig.suptitle(f"{family}: {per_variant} sampled tasks per variant (seed {seed})")
    handles = [Patch(facecolor=np.array(TILE_COLOURS[k]) / 255, edgecolor="0.6", label=TILE_NAMES[k])
               for k in sorted(TILE_COLOURS)]
    fig.legend(handles=handles, loc="center right", title="tiles", frameon=False)
    fig.tight_layout(rect=(0, 0, 0.8, 0.95))
    atomic_write(out, lambda f: fig.savefig(f, format=os.path.splitext(out)[1][1:] or "png", dpi=100))
    plt.close(fig)


def render_cli(run: str | None, out: str, variant: str | None = None, episodes: int = 1,
               samples: bool = False) -> int:
    """``rl3jax render``: GIFs of ``episodes`` held-out tasks played by the run in folder ``run`` (its newest
    checkpoint, on task ``variant`` or the run's own), written to ``out`` (``OUT-0.gif``, ``OUT-1.gif``, ...
    when ``episodes`` > 1); or with ``samples`` a PNG ``out`` of sampled grids of every variant of the run's
    family (default grid13). Checks: ``rl3jax.runfiles.check_render`` (ValueError, one line: a non-grid
    family, an unknown variant, ``samples`` with a variant or episodes); ``RunFolderError`` /
    ``CheckpointError`` for a folder that is no run or has no readable checkpoint."""
    family = check_render(run, variant, episodes, samples)
    if samples:
        samples_png(family, out)
        print(f"wrote {out}")
        return 0
    loaded = load_run(run)
    trainer = loaded.trainer(variant)
    cfg = trainer.cfg
    state, _ = loaded.restore(trainer)  # read-only: safe while the run trains
    title = f"{cfg.env}/{cfg.variant} {cfg.algo} ({cfg.model}) iteration {int(state.iteration)}"
    tasks = held_out_tasks(trainer.meta_env, episodes)
    for i, path in enumerate(numbered_paths(out, episodes)):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        frames = episode_gif(trainer, state.actor_params, task, path, jax.random.key(i), title=title)
        print(f"wrote {path}: return {frames[-1]['return']:.0f}")
    return 0
