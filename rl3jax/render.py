"""Pictures of grid tasks: a trained agent's meta-episode as a GIF (tiles, agent, path, and a heat map of the
RL³ value estimates as they grow), and a PNG sheet of sampled grids per variant.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from rl3jax.config import GREEDY, STOCHASTIC
from rl3jax.envs.grid_geometry import DANGER, EMPTY, GOAL, OBSTACLE, START, TILE_CHARS, WARNING, WATER
from rl3jax.envs.registry import make_env, variants
from rl3jax.evaluate import held_out_tasks
from rl3jax.outputs import atomic_write, numbered_paths
from rl3jax.runs.load import load_run

#: tile code (rl3jax.envs.grid_geometry) -> (name, RGB)
TILES = {EMPTY: ("empty", (245, 245, 240)), OBSTACLE: ("obstacle", (60, 60, 60)), WATER: ("water", (110, 170, 230)),
         DANGER: ("danger", (200, 30, 30)), WARNING: ("warning", (250, 170, 60)), GOAL: ("goal", (40, 170, 70)),
         START: ("start", (250, 230, 120))}
TILE_COLOURS = {k: rgb for k, (_, rgb) in TILES.items()}
HEAT_TILES = (EMPTY, WARNING, START)  # tiles the value heat map colours over (the others keep their colour)
LABELLED_TILES = (DANGER, GOAL, START, WARNING)  # tiles marked with their character (``TILE_CHARS``)
VALUE_CMAP = "RdPu"  # the value heat map: pink to purple, hues no tile, the path or the agent uses
_CMAP_RANGE = (0.3, 1.0)  # the part of the colormap used, so the lowest value is not mistaken for an empty tile
PATH_COLOUR = (0, 0, 0)
AGENT_COLOUR = (20, 20, 200)
BAR_W = 84  # pixels on the right of a frame for the colour bar
LEGEND_COL, LEGEND_ROW = 84, 14  # pixels per entry of a frame's legend (a swatch and a name), per row of it


def value_colour(x: float) -> tuple[int, int, int]:
    """The heat map colour of a value normalised to [0, 1] (``VALUE_CMAP``)."""
    from matplotlib import colormaps

    lo, hi = _CMAP_RANGE
    r, g, b, _ = colormaps[VALUE_CMAP](lo + (hi - lo) * float(np.clip(x, 0.0, 1.0)))
    return int(255 * r), int(255 * g), int(255 * b)


#: the legend under every frame: (colour, name) of every tile (with its mark where the frame shows one), agent, path
LEGEND = [(rgb, name + (f" ({TILE_CHARS[k]})" if k in LABELLED_TILES else "")) for k, (name, rgb) in TILES.items()] + [
    (AGENT_COLOUR, "agent"), (PATH_COLOUR, "path")]


def legend_height(width: int) -> int:
    """Pixels of the legend under a grid ``width`` pixels wide."""
    return LEGEND_ROW * -(-len(LEGEND) // max(1, width // LEGEND_COL)) + 6


def draw_grid(tiles: np.ndarray, cell: int = 28, values: np.ndarray | None = None, known: np.ndarray | None = None,
              path: list[int] | None = None, agent: int | None = None, title: str | None = None):
    """One PIL frame: ``tiles`` (n, n) tile codes, a heat map of ``values`` (n*n,) over ``known`` (n*n,) cells
    with a colour bar, the ``path`` so far, the ``agent``, a legend, and ``title`` (lines separated by "\n")."""
    from PIL import Image, ImageDraw, ImageFont

    font, n = ImageFont.load_default(), tiles.shape[0]
    lines = title.split("\n") if title else []
    top = 12 * len(lines) + (4 if lines else 0)
    heat = values is not None and known is not None
    width = n * cell + (BAR_W if heat else 0)
    img = Image.new("RGB", (width, n * cell + top + legend_height(n * cell)), (255, 255, 255))
    d = ImageDraw.Draw(img)
    per_row = max(1, n * cell // LEGEND_COL)
    for j, (rgb, name) in enumerate(LEGEND):
        x, y = 4 + LEGEND_COL * (j % per_row), n * cell + top + 4 + LEGEND_ROW * (j // per_row)
        d.rectangle([x, y, x + 10, y + 10], fill=rgb, outline=(150, 150, 150))
        d.text((x + 14, y), name, fill=(0, 0, 0), font=font)
    for k, line in enumerate(lines):
        d.text((3, 2 + 12 * k), line, fill=(0, 0, 0), font=font)
    kv = values[known] if heat and known.any() else np.array([0.0, 1.0])
    vmin, vmax = float(kv.min()), float(kv.max()) if kv.max() > kv.min() else float(kv.min()) + 1.0
    for r in range(n):
        for c in range(n):
            colour = TILE_COLOURS[int(tiles[r, c])]
            i = r * n + c
            if heat and known[i] and int(tiles[r, c]) in HEAT_TILES:
                colour = value_colour((values[i] - vmin) / (vmax - vmin))
            x0, y0 = c * cell, r * cell + top
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            if int(tiles[r, c]) in LABELLED_TILES:  # its character, white on a dark tile
                dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 110
                d.text((x0 + cell // 2 - 3, y0 + cell // 2 - 6), TILE_CHARS[int(tiles[r, c])],
                       fill=(255, 255, 255) if dark else (0, 0, 0), font=font)
    if path and len(path) > 1:
        d.line([((p % n) * cell + cell // 2, (p // n) * cell + cell // 2 + top) for p in path], fill=PATH_COLOUR,
               width=2)
    if agent is not None:
        x0, y0 = (agent % n) * cell, (agent // n) * cell + top
        d.ellipse([x0 + 6, y0 + 6, x0 + cell - 7, y0 + cell - 7], fill=AGENT_COLOUR)
    if heat:  # colour bar: top = highest known value, bottom = lowest
        x0, y0, y1 = n * cell + 8, top + 18, n * cell + top - 14
        for y in range(y0, y1 + 1):
            d.line([(x0, y), (x0 + 12, y)], fill=value_colour((y1 - y) / max(y1 - y0, 1)))
        d.rectangle([x0, y0, x0 + 12, y1], outline=(0, 0, 0))
        d.text((x0 - 4, top + 2), "max Q", fill=(0, 0, 0), font=font)
        d.text((x0 + 16, y0 - 5), f"{vmax:.3g}", fill=(0, 0, 0), font=font)
        d.text((x0 + 16, y1 - 6), f"{vmin:.3g}", fill=(0, 0, 0), font=font)
    return img


def episode_gif(trainer, params, task, out: str, key, greedy: bool = False, title: str = "") -> list[dict]:
    """Plays one meta-episode and writes it to ``out`` as a GIF, a frame per step, under ``title`` and a line of
    the mode, step and return. Returns per step {"pos", "values" ((S,) max_a Q per cell from the estimator's
    latest solve, or None), "known" ((S,) bool, or None), "reward", "reset", "return"}."""
    meta = trainer.meta_env
    step_env, policy = jax.jit(meta.step), jax.jit(trainer.actor.step)
    obs, state = jax.jit(meta.reset)(key, task)
    carry = trainer.actor.initial_carry(1)
    tiles, mode = np.asarray(task.tiles), GREEDY if greedy else STOCHASTIC
    frames, images, path = [], [], []
    for t in range(meta.horizon):
        key, k_a, k_s = jax.random.split(key, 3)
        carry, logits = policy(params, carry, obs[None])
        a = jnp.argmax(logits[0]) if greedy else jax.random.categorical(k_a, logits[0])
        pos = int(meta.env.state_index(state.env_state, task))
        values = known = None
        if state.est is not None:
            est = meta.estimator
            values = np.asarray(est.q_values(state.est, jnp.arange(est.num_states)).max(axis=-1))
            known = np.asarray(est.known(state.est))
        obs, state, reward, _, info = step_env(k_s, state, a, task)
        frames.append({"pos": pos, "values": values, "known": known, "reward": float(reward),
                       "reset": bool(info["task_episode_over"]), "return": float(state.episode_return)})
        path.append(pos)
        images.append(draw_grid(tiles, values=values, known=known, path=path, agent=pos,
                                title=f"{title}\n{mode} t={t + 1}/{meta.horizon} return={frames[-1]['return']:.0f}"))
        if frames[-1]["reset"]:
            path = []
    atomic_write(out, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=80,
                                               loop=0))
    return frames


def samples_png(family: str, out: str, per_variant: int = 4, seed: int = 0):
    """A sheet of ``per_variant`` sampled grids for every variant of a grid family (matplotlib): one row per
    variant, labelled, the family in the title and a legend of the tile types."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = list(variants(family))
    lut = np.array([TILES[code][1] for code in range(len(TILES))], np.uint8)  # tile code (0, 1, ...) -> RGB
    fig, axes = plt.subplots(len(names), per_variant, figsize=(1.6 * per_variant + 1.6, 1.6 * len(names) + 0.8),
                             squeeze=False)
    for r, variant in enumerate(names):
        env = make_env(family, variant)
        tasks = jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(seed), per_variant))
        tiles = np.asarray(tasks.tiles)
        for c in range(per_variant):
            axes[r, c].imshow(lut[tiles[c]], interpolation="nearest")
            axes[r, c].set(xticks=[], yticks=[])
        axes[r, 0].set_ylabel(variant, rotation=0, ha="right", va="center")
    fig.suptitle(f"{family}: {per_variant} sampled tasks per variant (seed {seed})")
    handles = [Patch(facecolor=np.array(rgb) / 255, edgecolor="0.6", label=name) for name, rgb in TILES.values()]
    fig.legend(handles=handles, loc="center right", title="tiles", frameon=False)
    fig.tight_layout(rect=(0, 0, 0.8, 0.95))
    atomic_write(out, lambda f: fig.savefig(f, format=os.path.splitext(out)[1][1:] or "png", dpi=100))
    plt.close(fig)


def render_cli(run: str | None, out: str, variant: str | None = None, episodes: int = 1,
               samples_of: str | None = None) -> int:
    """``rl3jax render`` after ``runfiles.check_render``: GIFs of ``episodes`` held-out tasks played by the run's
    newest checkpoint to ``out`` (``numbered_paths``), or a PNG of every variant's grids of family ``samples_of``.
    Errors: ``RunFolderError`` / ``CheckpointError`` for a bad run."""
    if samples_of:
        samples_png(samples_of, out)
        print(f"wrote {out}")
        return 0
    loaded = load_run(run)
    trainer = loaded.trainer(variant)
    cfg = trainer.cfg
    state, _ = loaded.restore()  # the training variant's shapes; read-only: safe while the run trains
    title = f"{cfg.env}/{cfg.variant} {cfg.algo} ({cfg.model}) iteration {int(state.iteration)}"
    tasks = held_out_tasks(trainer.meta_env, episodes)
    for i, path in enumerate(numbered_paths(out, episodes)):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        frames = episode_gif(trainer, state.actor_params, task, path, jax.random.key(i), title=title)
        print(f"wrote {path}: return {frames[-1]['return']:.0f}")
    return 0
