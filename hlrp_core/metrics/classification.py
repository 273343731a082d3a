"""Token accuracy, top-k and nearest-codebook decoding (docs/METRICS.md §2).

Shapes: codes (N,) or (N, S) int; logits (N, S, K) (or (N, K)); latent vectors (N, S, D) (or (N, D)); codebook
(K, D) in the codebook's own space (un-standardise predictions first). Accuracies are plain means; their Wilson
intervals are in :mod:`hlrp_core.metrics.stats` and episode-bootstrap intervals come from ``evaluate_codes``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .histograms import as_positions


def _logits3(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, float)
    return logits[:, None, :] if logits.ndim == 2 else logits


def correct(gt_codes: np.ndarray, pred_codes: np.ndarray) -> np.ndarray:
    """(N, S) bool: per item and position, prediction == GT."""
    gt, pr = as_positions(gt_codes), as_positions(pred_codes)
    if gt.shape != pr.shape:
        raise ValueError(f"gt_codes {gt.shape} and pred_codes {pr.shape} differ in shape")
    return gt == pr


def token_accuracy(gt_codes: np.ndarray, pred_codes: np.ndarray) -> float:
    """Accuracy pooled over items and positions."""
    return float(correct(gt_codes, pred_codes).mean())


def per_position_accuracy(gt_codes: np.ndarray, pred_codes: np.ndarray) -> np.ndarray:
    """(S,) accuracy at each position."""
    return correct(gt_codes, pred_codes).mean(axis=0)


def sequence_exact_match(gt_codes: np.ndarray, pred_codes: np.ndarray) -> float:
    """Share of items whose S codes are all correct."""
    return float(correct(gt_codes, pred_codes).all(axis=1).mean())


def topk_hits(gt_codes: np.ndarray, logits: np.ndarray, k: int) -> np.ndarray:
    """(N, S) bool: GT code among the k highest logits (ties broken by index)."""
    lg = _logits3(logits)                                                     # (N, S, K)
    gt = as_positions(gt_codes)
    k = min(k, lg.shape[-1])
    top = np.argpartition(-lg, k - 1, axis=-1)[..., :k]                       # (N, S, k)
    return (top == gt[..., None]).any(axis=-1)


def topk_hit_rate(gt_codes: np.ndarray, logits: np.ndarray, k: int) -> float:
    return float(topk_hits(gt_codes, logits, k).mean())


def cross_entropy_items(gt_codes: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """(N, S) per-item cross-entropy in nats, -log softmax(logits)[gt]."""
    lg = _logits3(logits)
    gt = as_positions(gt_codes)
    logp = lg - logsumexp(lg, axis=-1, keepdims=True)
    return -np.take_along_axis(logp, gt[..., None].astype(np.int64), axis=-1)[..., 0]


def cross_entropy(gt_codes: np.ndarray, logits: np.ndarray) -> float:
    return float(cross_entropy_items(gt_codes, logits).mean())


def code_distances(vectors: np.ndarray, codebook: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distances from every vector to every code: vectors (..., D), codebook (K, D) -> (..., K).

    ``metric``: ``euclidean`` or ``cosine`` (1 - cos; use it when the codes are l2-normalised).
    """
    v = np.asarray(vectors, float)
    e = np.asarray(codebook, float)
    if metric == "euclidean":
        d2 = (v**2).sum(-1, keepdims=True) - 2 * v @ e.T + (e**2).sum(-1)
        return np.sqrt(np.maximum(d2, 0.0))
    if metric == "cosine":
        vn = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        en = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
        return 1.0 - vn @ en.T
    raise ValueError(f"metric={metric!r}: use 'euclidean' or 'cosine'")


def nearest_code_decode(vectors: np.ndarray, codebook: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """argmin_j d(y^, e_j): (..., D) -> (...) int codes."""
    return np.argmin(code_distances(vectors, codebook, metric), axis=-1)


def topk_nearest_hits(
    gt_codes: np.ndarray, vectors: np.ndarray, codebook: np.ndarray, k: int, metric: str = "euclidean"
) -> np.ndarray:
    """(N, S) bool: GT code among the k nearest codebook entries of y^."""
    d = code_distances(vectors, codebook, metric)
    if d.ndim == 2:
        d = d[:, None, :]
    return topk_hits(gt_codes, -d, k)


def decoding_margin(
    gt_codes: np.ndarray, vectors: np.ndarray, codebook: np.ndarray, metric: str = "euclidean"
) -> np.ndarray:
    """m = d(y^, e_gt) - min_{j != gt} d(y^, e_j), same shape as the codes; m < 0 means a correct decode."""
    d = code_distances(vectors, codebook, metric)
    if d.ndim == 2:
        d = d[:, None, :]
    gt = as_positions(gt_codes).astype(np.int64)
    d_gt = np.take_along_axis(d, gt[..., None], axis=-1)[..., 0]
    others = d.copy()
    np.put_along_axis(others, gt[..., None], np.inf, axis=-1)
    return d_gt - others.min(axis=-1)


def margin_summary(
    margins: np.ndarray, codebook: np.ndarray, metric: str = "euclidean", near: float = 0.1
) -> dict[str, float]:
    """``margin_median`` and ``near_miss_share`` (|m| < ``near`` x median inter-code distance)."""
    e = np.asarray(codebook, float)
    d = code_distances(e, e, metric)
    off = d[~np.eye(len(e), dtype=bool)]
    scale = float(np.median(off)) if off.size else float("nan")
    m = np.asarray(margins, float).ravel()
    return {"margin_median": float(np.median(m)), "near_miss_share": float(np.mean(np.abs(m) < near * scale))}
