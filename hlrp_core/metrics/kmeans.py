"""The one k-means of hlrp: best of several Lloyd runs by inertia (scipy ``kmeans2`` + ``vq``).

Used by the NSVQ codebook refit (:mod:`hlrp_core.models.laq.quantizers`) and by the untrained-LAQ baseline of the
Stage-1 validation (:mod:`hlrp_core.training.laq.module`), so "NMI above the untrained LAQ" compares two codebooks
clustered the same way (same restarts, same seeds). A single-start Lloyd merges clusters now and then (on ~500
latents of 8 clusters: inertia 0.51 vs 0.37 for the best of 11, measured), which would flatter the trained model if
only the baseline used it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

#: k-means++ restarts besides the warm start (the refit's current codebook); 10 + 1 candidates in all.
RESTARTS = 10


@dataclass
class KMeansResult:
    centres: np.ndarray       # (K, D) float64
    labels: np.ndarray        # (N,) int64 nearest centre of each point
    inertia: float            # mean squared distance of the points to their nearest centre
    init_inertia: float       # inertia of ``init`` (NaN when no warm start was given)


def inertia(x: np.ndarray, centres: np.ndarray) -> float:
    """Mean squared distance of the rows of ``x`` to their nearest centre (no (N, K, D) array)."""
    from scipy.cluster.vq import vq

    return float((vq(np.asarray(x, np.float64), np.asarray(centres, np.float64))[1] ** 2).mean())


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, restarts: int = RESTARTS,
           init: Optional[np.ndarray] = None) -> KMeansResult:
    """Best (lowest inertia) of Lloyd's k-means from ``init`` (when given) and from ``restarts`` k-means++ seeds
    (``seed * 1000 + r``). Without ``init`` one more k-means++ seed takes its place, so both uses run 11 candidates.

    Args:
        x: (N, D) points.
        k: Clusters (without ``init``: capped at the number of distinct points; with it: ``len(init)``).
        seed: Seed of the k-means++ starts.
        restarts: k-means++ starts besides the warm start.
        init: (K, D) warm start (the refit's current codebook: a refit then never quantizes worse than before).
    """
    from scipy.cluster.vq import kmeans2, vq

    xs = np.asarray(x, np.float64).reshape(len(x), -1)
    # a warm start fixes K (a codebook keeps its size); otherwise no more clusters than distinct points
    k = len(init) if init is not None else int(max(1, min(k, len(np.unique(xs, axis=0)))))
    n_seeds = restarts if init is not None else restarts + 1
    with warnings.catch_warnings():
        # scipy warns when a centre ends with no point (it keeps the old one); the inertia comparison already judges
        # such a candidate, so the warning only adds noise to every training log
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        candidates = [kmeans2(xs, np.asarray(init, np.float64).copy(), minit="matrix")[0]] if init is not None else []
        candidates += [kmeans2(xs, k, minit="++", seed=seed * 1_000 + r)[0] for r in range(n_seeds)]
    scores = [inertia(xs, c) for c in candidates]
    best = int(np.argmin(scores))
    centres = candidates[best]
    return KMeansResult(centres=centres, labels=vq(xs, centres)[0].astype(np.int64), inertia=scores[best],
                        init_inertia=inertia(xs, init) if init is not None else float("nan"))


def kmeans_labels(x: np.ndarray, k: int, seed: int = 0, restarts: int = RESTARTS) -> np.ndarray:
    """Labels (N,) of :func:`kmeans` (the untrained-LAQ baseline's codes)."""
    return kmeans(x, k, seed=seed, restarts=restarts).labels
