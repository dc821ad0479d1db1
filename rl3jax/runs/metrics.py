"""What a training session logs: ``metrics.jsonl`` / ``metrics.csv`` (``MetricsLog``, exact after any resume, the
CSV rewritten atomically), and TensorBoard and W&B (``ExternalLoggers``)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys

from rl3jax.outputs import atomic_write
from rl3jax.runs.runfiles import METRICS_CSV, METRICS_JSONL, read_metrics


class MetricsLog:
    """Appends one row per PPO iteration to metrics.jsonl and metrics.csv; at a resume, keeps exactly the rows
    of iterations 1 .. ``resume_iteration`` (later ones dropped, a repeated one kept once, with a note on stderr),
    rewriting both files whole. The CSV header is the union of the fields in order of first appearance (the
    ``eval_*`` fields exist only on some rows), rewritten wider when a new field appears; missing cells are empty.
    """

    def __init__(self, run_dir: str, resume_iteration: int = 0):
        self.jsonl = os.path.join(run_dir, METRICS_JSONL)
        self.csv = os.path.join(run_dir, METRICS_CSV)
        rows = read_metrics(self.jsonl) if os.path.exists(self.jsonl) else []
        by_it = {r["iteration"]: r for r in rows if r["iteration"] <= resume_iteration}
        dropped = sorted({r["iteration"] for r in rows} - set(by_it))
        if dropped:
            print(f"note: {self.jsonl}: dropped the rows of iterations {_spans(dropped)}, after checkpoint step "
                  f"{resume_iteration} that the resume continues from (they are trained again)", file=sys.stderr)
        if len(by_it) + len(dropped) != len(rows):
            print(f"note: {self.jsonl}: kept one row of each repeated iteration", file=sys.stderr)
        missing = sorted(set(range(1, resume_iteration + 1)) - set(by_it))
        if missing:
            print(f"note: {self.jsonl} lacks the rows of iterations {_spans(missing)}; they cannot be recovered",
                  file=sys.stderr)
        rows = [by_it[k] for k in sorted(by_it)]
        atomic_write(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        self.fields: list[str] = list(dict.fromkeys(k for r in rows for k in r))  # in order of appearance
        if self.fields:
            self._write_csv(rows)
        elif os.path.exists(self.csv):
            os.remove(self.csv)

    def _write_csv(self, rows: list[dict]) -> None:
        text = io.StringIO()
        w = csv.DictWriter(text, self.fields)
        w.writeheader()
        w.writerows(rows)
        atomic_write(self.csv, text.getvalue())

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.jsonl, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        new_fields = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in self.fields]
        if new_fields:  # a field seen for the first time: rewrite the CSV with the wider header
            self.fields += new_fields
            self._write_csv(read_metrics(os.path.dirname(self.jsonl)))
            return
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerows(rows)


def _spans(its: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1..3, 7"``."""
    spans: list[list[int]] = []
    for i in its:
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}..{b}" if b > a else str(a) for a, b in spans)


class ExternalLoggers:
    """Optional TensorBoard (tensorboardX) and Weights & Biases; silently absent when not asked for."""

    def __init__(self, run_dir: str, cfg, tensorboard: bool, wandb_project: str | None):
        self.tb = self.wb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise SystemExit("--tensorboard needs tensorboardX: pip install 'rl3jax[logging]'") from None
            self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise SystemExit("--wandb needs wandb: pip install 'rl3jax[logging]'") from None
            self.wb = wandb.init(project=wandb_project, config=cfg.to_dict(), dir=run_dir)

    def log(self, row: dict) -> None:
        step = row["env_steps"]
        if self.tb:
            for k, v in row.items():
                self.tb.add_scalar(k, v, step)
        if self.wb:
            self.wb.log(row, step=step)

    def close(self):
        if self.tb:
            self.tb.close()
        if self.wb:
            self.wb.finish()
