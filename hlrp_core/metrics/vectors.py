"""Vector metrics for a flow or regression head (docs/METRICS.md §3).

Items on axis 0; all other axes (positions, dims) are flattened. R^2 uses the *train* mean as the reference
predictor when given (R^2 = 0: no better than the mean; about -1: a random codebook entry). Report both the
standardised and the raw space by calling these twice.
"""

from __future__ import annotations

import numpy as np


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    return x.reshape(len(x), -1)


def squared_error_items(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N,) sum over dims of (y^ - y)^2."""
    return ((_flat(pred) - _flat(gt)) ** 2).sum(axis=1)


def mse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean over items and dimensions of (y^ - y)^2."""
    return float(((_flat(pred) - _flat(gt)) ** 2).mean())


def mae(gt: np.ndarray, pred: np.ndarray) -> float:
    return float(np.abs(_flat(pred) - _flat(gt)).mean())


def cosine_items(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N,) cosine between y^ and y per item (0 where a vector is all zeros)."""
    a, b = _flat(gt), _flat(pred)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(axis=1) / np.maximum(den, 1e-300), 0.0)


def cosine(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean cosine over items. Random directions: mean 0, sd 1/sqrt(d)."""
    return float(cosine_items(gt, pred).mean())


def r2_score(gt: np.ndarray, pred: np.ndarray, train_mean: np.ndarray | None = None) -> float:
    """R^2 = 1 - sum ||y^ - y||^2 / sum ||y - y_bar||^2, y_bar = ``train_mean`` (default: the eval mean)."""
    y = _flat(gt)
    ref = y.mean(axis=0) if train_mean is None else np.asarray(train_mean, float).reshape(-1)
    sst = ((y - ref) ** 2).sum()
    return float(1.0 - ((_flat(pred) - y) ** 2).sum() / sst) if sst > 0 else float("nan")


def mean_vector_baseline(gt: np.ndarray, train_mean: np.ndarray | None = None) -> dict[str, float]:
    """Scores of the constant predictor y_bar_train: ``mse``, ``mae``, ``cosine`` (compute it, don't assume 0)."""
    y = _flat(gt)
    ref = y.mean(axis=0) if train_mean is None else np.asarray(train_mean, float).reshape(-1)
    pred = np.broadcast_to(ref, y.shape)
    return {"mse": mse(y, pred), "mae": mae(y, pred), "cosine": cosine(y, pred)}
