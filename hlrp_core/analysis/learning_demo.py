"""A SYNTHETIC DEMO run directory in the real format, so the analysis notebooks run without input (labelled DEMO)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_write_json, atomic_write_text
from ..metrics.predictions import PRED_DIR, save_predictions

def make_demo_run_dir(
    root: str | os.PathLike,
    kind: str = "learning",
    *,
    steps: Sequence[int] = (100, 200, 300, 400, 500),
    n_episodes: int = 40,
    items_per_episode: int = 12,
    n_codes: int = 8,
    n_positions: int = 2,
    seed: int = 0,
    name: str = "",
) -> Path:
    """Write a SYNTHETIC DEMO run directory in the real format (``config.yaml``, ``metrics.json``,
    ``timeseries.csv``, ``status``, ``val_predictions/step_XXXXXX.npz``) under ``root`` and return its path.

    ``kind``: ``learning`` (accuracy grows with step), ``collapsed`` (one code), ``random-like`` (draws from the
    GT marginal, independent of the input). Every file says DEMO; nothing here comes from a real model.
    """
    if kind not in ("learning", "collapsed", "random-like"):
        raise ValueError(f"make_demo_run_dir kind={kind!r}: use learning, collapsed or random-like")
    rng = np.random.default_rng(seed)
    path = Path(root) / (name or f"DEMO_synthetic_{kind}")
    (path / PRED_DIR).mkdir(parents=True, exist_ok=True)
    N = n_episodes * items_per_episode
    p = np.exp(-0.4 * np.arange(n_codes))
    p /= p.sum()
    gt = rng.choice(n_codes, size=(N, n_positions), p=p)
    ep = np.repeat(np.arange(n_episodes), items_per_episode)
    codebook = rng.normal(size=(n_codes, 4)).astype(np.float32)
    ts_rows = []
    for j, step in enumerate(steps):
        if kind == "learning":
            keep = rng.random(gt.shape) < 0.2 + 0.7 * (j + 1) / len(steps)
            pred = np.where(keep, gt, rng.choice(n_codes, size=gt.shape, p=p))
        elif kind == "collapsed":
            pred = np.zeros_like(gt)
        else:
            pred = rng.choice(n_codes, size=gt.shape, p=p)
        save_predictions(path, step, dict(gt_codes=gt, pred_codes=pred, gt_vectors=codebook[gt],
                                          pred_vectors=codebook[pred], episode_ids=ep, codebook=codebook,
                                          mode=np.array("DEMO")))
        ts_rows.append(f"{step},{1.0 - 0.5 * (kind == 'learning') * (j + 1) / len(steps):.4f},"
                       f"{float((gt == pred).mean()):.4f}")
    atomic_write_text(path / "timeseries.csv", "step,val/loss,val/token_accuracy\n" + "\n".join(ts_rows) + "\n")
    atomic_write_text(path / "config.yaml", f"# SYNTHETIC DEMO run directory written by "
                      f"hlrp_core.analysis.make_demo_run_dir (kind={kind}); not a real model\n"
                      f"experiment:\n  name: DEMO_{kind}\n  description: synthetic demo input\n")
    atomic_write_json(path / "metrics.json", {"demo": True, "demo_kind": kind, "val/step": int(steps[-1])})
    atomic_write_text(path / "status", "DONE\n")
    return path
