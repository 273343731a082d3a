"""Blind baselines: what a model that ignores its inputs scores (docs/METRICS.md §2-§3).

| baseline | token accuracy | top-k | cross-entropy |
|---|---|---|---|
| uniform guess | 1/K | k/K | ln K |
| majority code (a collapsed model) | max_k p_k | sum of the k largest p_k | - |
| sampling from the GT marginal (ignores inputs) | sum_k p_k^2 | - | - |
| best unconditional model | max_k p_k | as majority | H(p) |

sum p_k^2 <= max p_k, so the majority code is the strongest blind baseline: report lift = acc - max p_k.
Per position for (N, S) codes (the pooled value is the mean over positions).
"""

from __future__ import annotations

import numpy as np

from .collapse import entropy
from .histograms import as_positions, histogram
from .vectors import mean_vector_baseline  # noqa: F401  (re-exported: the vector baseline)


def uniform_accuracy(n_codes: int) -> float:
    return 1.0 / n_codes


def uniform_topk(n_codes: int, k: int) -> float:
    return min(k, n_codes) / n_codes


def uniform_ce(n_codes: int) -> float:
    return float(np.log(n_codes))


def _shares(gt_codes: np.ndarray, n_codes: int) -> list[np.ndarray]:
    c = as_positions(gt_codes)
    return [histogram(c[:, s], n_codes) / len(c) for s in range(c.shape[1])]


def majority_accuracy(gt_codes: np.ndarray, n_codes: int) -> float:
    """Mean over positions of max_k p_k (the always-the-mode predictor)."""
    return float(np.mean([p.max() for p in _shares(gt_codes, n_codes)]))


def majority_topk(gt_codes: np.ndarray, n_codes: int, k: int) -> float:
    """Mean over positions of the sum of the k largest shares."""
    return float(np.mean([np.sort(p)[::-1][:k].sum() for p in _shares(gt_codes, n_codes)]))


def marginal_accuracy(gt_codes: np.ndarray, n_codes: int) -> float:
    """Mean over positions of sum_k p_k^2 (expected accuracy of sampling the GT marginal independently)."""
    return float(np.mean([(p**2).sum() for p in _shares(gt_codes, n_codes)]))


def unconditional_ce(gt_codes: np.ndarray, n_codes: int) -> float:
    """Mean over positions of H(p): the cross-entropy of the best input-blind model."""
    return float(np.mean([entropy(p) for p in _shares(gt_codes, n_codes)]))


def majority_predictor(gt_codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Codes of the always-the-mode predictor, same shape as ``gt_codes``."""
    c = as_positions(gt_codes)
    modes = np.array([np.argmax(histogram(c[:, s], n_codes)) for s in range(c.shape[1])])
    out = np.broadcast_to(modes, c.shape).copy()
    return out.reshape(np.shape(gt_codes))


def marginal_sampler(gt_codes: np.ndarray, n_codes: int, seed: int = 0) -> np.ndarray:
    """Codes drawn independently from the per-position GT marginal (input-blind but distribution-matching)."""
    rng = np.random.default_rng(seed)
    c = as_positions(gt_codes)
    cols = [rng.choice(n_codes, size=len(c), p=p) for p in _shares(gt_codes, n_codes)]
    return np.stack(cols, axis=1).reshape(np.shape(gt_codes))
