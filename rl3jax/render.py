"""Pictures of grid tasks: a trained agent's meta-episode as a GIF (tiles, agent, path, and a heat map of the
RL³ value estimates as they grow), and a PNG sheet of sampled grids per variant.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

TILE_COLOURS = {  # tile code (rl3jax.envs.grid) -> RGB
    0: (245, 245, 240),  # empty
    1: (60, 60, 60),  # obstacle
    2: (110, 170, 230),  # water
    3: (200, 30, 30),  # danger
    4: (250, 170, 60),  # warning
    5: (40, 170, 70),  # goal
    6: (250, 230, 120),  # start
}


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def draw_grid(tiles: np.ndarray, cell: int = 28, values: np.ndarray | None = None, known: np.ndarray | None = None,
              path: list[int] | None = None, agent: int | None = None, title: str | None = None):
    """One frame: tiles, an optional value heat map over known cells, the path so far and the agent."""
    from PIL import Image, ImageDraw

    n = tiles.shape[0]
    top = 16 if title else 0
    img = Image.new("RGB", (n * cell, n * cell + top), (255, 255, 255))
    d = ImageDraw.Draw(img)
    if title:
        d.text((3, 2), title, fill=(0, 0, 0), font=_font())
    vmin, vmax = -10.0, 10.0
    if values is not None and known is not None and known.any():
        kv = values[known]
        vmin, vmax = float(kv.min()), float(kv.max()) if kv.max() > kv.min() else float(kv.min()) + 1.0
    for r in range(n):
        for c in range(n):
            colour = TILE_COLOURS[int(tiles[r, c])]
            i = r * n + c
            if values is not None and known is not None and known[i] and int(tiles[r, c]) in (0, 4, 6):
                x = (values[i] - vmin) / (vmax - vmin)  # blue (low) -> red (high)
                heat = (int(255 * x), 80, int(255 * (1 - x)))
                colour = tuple(int(0.45 * a + 0.55 * b) for a, b in zip(colour, heat))
            x0, y0 = c * cell, r * cell + top
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            ch = " OWX!GS"[int(tiles[r, c])]
            if ch in "XGS!":
                d.text((x0 + cell // 2 - 3, y0 + cell // 2 - 6), ch, fill=(0, 0, 0), font=_font())
    if path:
        pts = [((p % n) * cell + cell // 2, (p // n) * cell + cell // 2 + top) for p in path]
        if len(pts) > 1:
            d.line(pts, fill=(120, 0, 160), width=2)
    if agent is not None:
        x0, y0 = (agent % n) * cell, (agent // n) * cell + top
        d.ellipse([x0 + 6, y0 + 6, x0 + cell - 7, y0 + cell - 7], fill=(20, 20, 200))
    return img


def _cell_values(estimator, est) -> np.ndarray:
    cells = jnp.arange(estimator.num_states)
    idx = estimator.model_index(est, cells) if hasattr(estimator, "model_index") else cells
    return np.asarray(est.q[idx].max(axis=-1))


def record_episode(trainer, params, task, key, greedy: bool = False):
    """Plays one meta-episode step by step; returns positions, per-step cell values, known masks, rewards."""
    meta = trainer.meta_env
    step_env = jax.jit(meta.step)
    policy = jax.jit(trainer.actor.step)
    obs, state = jax.jit(meta.reset)(key, task)
    carry = trainer.actor.initial_carry(1)
    frames = []
    for t in range(meta.horizon):
        key, k_a, k_s = jax.random.split(key, 3)
        carry, logits = policy(params, carry, obs[None])
        a = jnp.argmax(logits[0]) if greedy else jax.random.categorical(k_a, logits[0])
        pos = int(meta.env.state_index(state.env_state, task))
        values = known = None
        if state.est is not None:
            values, known = _cell_values(meta.estimator, state.est), np.asarray(state.est.known)
        obs, state, reward, _, info = step_env(k_s, state, a, task)
        frames.append({"pos": pos, "values": values, "known": known, "reward": float(reward),
                       "reset": bool(info["task_episode_over"]), "return": float(state.episode_return)})
    return frames


def episode_gif(trainer, params, task, out: str, key, greedy: bool = False, every: int = 1, title: str = ""):
    frames = record_episode(trainer, params, task, key, greedy)
    tiles = np.asarray(task.tiles)
    images, path = [], []
    for t, f in enumerate(frames):
        path.append(f["pos"])
        if t % every == 0 or t == len(frames) - 1:
            images.append(draw_grid(tiles, values=f["values"], known=f["known"], path=path, agent=f["pos"],
                                    title=f"{title} t={t + 1} return={f['return']:.0f}"))
        if f["reset"]:
            path = []
    images[0].save(out, save_all=True, append_images=images[1:], duration=80, loop=0)
    return frames


def samples_png(family: str, out: str, per_variant: int = 4, seed: int = 0):
    """A sheet of ``per_variant`` sampled grids for every variant of a grid family."""
    from PIL import Image

    from rl3jax.envs.registry import make_env, variants

    rows = []
    for variant in variants(family):
        env = make_env(family, variant)
        tasks = jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(seed), per_variant))
        tiles = np.asarray(tasks.tiles)
        rows.append([draw_grid(tiles[i], cell=16, title=f"{variant}") for i in range(per_variant)])
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (w * per_variant + 4 * (per_variant - 1), (h + 4) * len(rows)), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            sheet.paste(img, (c * (w + 4), r * (h + 4)))
    sheet.save(out)


def render_cli(args) -> int:
    from rl3jax.checkpoint import Checkpointer
    from rl3jax.driver import load_run_config
    from rl3jax.evaluate import held_out_tasks
    from rl3jax.train import make_train

    if args.samples:
        family = "grid13"
        if args.run:
            family = load_run_config(args.run).env
            if not family.startswith("grid"):
                raise ValueError(f"render --samples draws grid families; run {args.run} trained on {family!r}")
        samples_png(family, args.out)
        print(f"wrote {args.out}")
        return 0
    if not args.run:
        raise ValueError("render needs --run DIR (or --samples)")
    cfg = load_run_config(args.run)
    if not cfg.env.startswith("grid"):
        raise ValueError(f"render draws grid tasks; run {args.run} trained on {cfg.env!r}")
    if args.variant:
        cfg = cfg.replace(variant=args.variant).validate()
    trainer = make_train(cfg)
    ckpt = Checkpointer(os.path.join(args.run, "checkpoints"))
    state, _ = ckpt.restore(jax.jit(trainer.init)(jax.random.key(cfg.seed)))
    ckpt.close()
    tasks = held_out_tasks(trainer.meta_env, args.episodes)
    base, ext = os.path.splitext(args.out)
    for i in range(args.episodes):
        task = jax.tree.map(lambda x: x[i], tasks)
        out = args.out if args.episodes == 1 else f"{base}-{i}{ext}"
        frames = episode_gif(trainer, state.actor_params, task, out, jax.random.key(i), title=f"{cfg.algo}")
        print(f"wrote {out}: return {frames[-1]['return']:.0f}")
    return 0
