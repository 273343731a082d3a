"""Stage-2 validation statistics (numpy only): token/sequence accuracy with the majority baseline and Wilson
intervals, the seed's ``latent_vector_stats`` / ``action_stats`` families and the dataset-mix stats.

Accuracies, baselines, Wilson intervals and the vector errors come from ``hlrp_core.metrics``; this module only
names them with the seed's ``val/*`` keys."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Optional

import numpy as np

from ... import metrics as M


def code_accuracy_stats(gt: np.ndarray, pred: np.ndarray, codebook_size: int, prefix: str = "val/") -> dict:
    """``token_accuracy`` (pooled over positions), per-position accuracy, ``sequence_accuracy``, the majority
    baselines (per position: max_k p_k averaged over positions; sequences: the most frequent GT tuple) with their
    Wilson intervals, and ``token_accuracy_lift`` = acc - baseline."""
    gt = np.asarray(gt).reshape(len(gt), -1)
    pred = np.asarray(pred).reshape(len(pred), -1)
    n, S = gt.shape
    out: dict[str, float] = {}
    if n == 0:
        return out
    acc = M.token_accuracy(gt, pred)
    maj = M.majority_accuracy(gt, codebook_size)
    n_tok = n * S
    lo, hi = M.wilson_interval(acc * n_tok, n_tok)
    blo, bhi = M.wilson_interval(maj * n_tok, n_tok)
    seq = M.sequence_exact_match(gt, pred)
    seq_maj = Counter(map(tuple, gt.tolist())).most_common(1)[0][1] / n
    out.update({
        f"{prefix}token_accuracy": acc,
        f"{prefix}token_accuracy_ci_low": lo,
        f"{prefix}token_accuracy_ci_high": hi,
        f"{prefix}token_accuracy_majority_baseline": maj,
        f"{prefix}token_accuracy_majority_baseline_ci_low": blo,
        f"{prefix}token_accuracy_majority_baseline_ci_high": bhi,
        f"{prefix}token_accuracy_lift": acc - maj,
        f"{prefix}token_accuracy_beats_majority": float(acc > bhi),
        f"{prefix}sequence_accuracy": seq,
        f"{prefix}sequence_accuracy_majority_baseline": float(seq_maj),
        f"{prefix}num_items": float(n),
        f"{prefix}pred_code_unique": float(len(np.unique(pred))),
        f"{prefix}gt_code_unique": float(len(np.unique(gt))),
    })
    for s, a in enumerate(M.per_position_accuracy(gt, pred)):
        out[f"{prefix}token_accuracy_pos{s}"] = float(a)
    return out


def vector_stats(pred: np.ndarray, gt: np.ndarray, prefix: str) -> dict:
    """The seed's vector stats family: pred/gt mean, std, L2 mean, MSE, MAE, cosine mean, unique counts and
    fractions (rows rounded to a 1e-3 grid, as the seed did; see docs/METRICS.md §3 for why that is weak)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    gt = np.asarray(gt, dtype=np.float64).reshape(len(gt), -1)
    n = len(pred)
    if n == 0:
        return {}
    pn = np.linalg.norm(pred, axis=1)
    gn = np.linalg.norm(gt, axis=1)
    pu = len({tuple(r) for r in np.round(pred, 3).tolist()})
    gu = len({tuple(r) for r in np.round(gt, 3).tolist()})
    return {
        f"{prefix}pred_mean": float(pred.mean()), f"{prefix}gt_mean": float(gt.mean()),
        f"{prefix}pred_std": float(pred.std()), f"{prefix}gt_std": float(gt.std()),
        f"{prefix}pred_l2_mean": float(pn.mean()), f"{prefix}gt_l2_mean": float(gn.mean()),
        f"{prefix}mse": M.mse(gt, pred), f"{prefix}mae": M.mae(gt, pred),
        f"{prefix}cosine_mean": M.cosine(gt, pred),
        f"{prefix}pred_unique": float(pu), f"{prefix}gt_unique": float(gu),
        f"{prefix}pred_unique_frac": pu / n, f"{prefix}gt_unique_frac": gu / n,
        f"{prefix}variance_ratio": M.variance_ratio(gt, pred),
    }


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name)


def dataset_mix_stats(names: Iterable[str], prefix: str = "val/dataset_mix_", top: int = 8) -> dict:
    """``unique``, ``top1_frac``, ``entropy_norm`` (entropy / ln n_unique; 1.0 for a single dataset is reported as
    0) and ``frac_<name>`` for the ``top`` most frequent datasets."""
    counts = Counter(names)
    total = sum(counts.values())
    if total == 0:
        return {}
    p = np.array([c / total for c in counts.values()])
    h = float(-(p * np.log(p)).sum())
    out = {f"{prefix}unique": float(len(counts)), f"{prefix}top1_frac": float(p.max()),
           f"{prefix}entropy_norm": h / math.log(len(counts)) if len(counts) > 1 else 0.0}
    for name, c in counts.most_common(top):
        out[f"{prefix}frac_{_safe(name)}"] = c / total
    return out


def batch_mix_line(tag: str, step: int, names: Iterable[str]) -> str:
    """``[Train][BatchMix] step=12 name=count ...`` (names sorted by count, then name)."""
    counts = sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0]))
    return f"[{tag}][BatchMix] step={step} " + " ".join(f"{k}={v}" for k, v in counts)


def masked_action_arrays(pred: np.ndarray, gt: np.ndarray, action_dim: Optional[np.ndarray]) -> tuple:
    """Rows flattened over the valid (unpadded) action dimensions only."""
    A = pred.shape[1]
    gt = gt[:, :A]
    if action_dim is None:
        return pred, gt
    mask = np.arange(A)[None, :] < np.asarray(action_dim)[:, None]
    return np.where(mask, pred, 0.0), np.where(mask, gt, 0.0)
