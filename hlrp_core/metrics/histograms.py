"""Code histograms: GT vs predicted distribution distance (docs/METRICS.md §1). Natural log (nats) throughout.

- KL with a pseudo-count alpha per bin: p~_k = (n_k + alpha) / (N + alpha K); KL(p~ || q~) punishes mode dropping.
- Jensen-Shannon: symmetric, no pseudo-count, in [0, ln 2]. ``scipy.spatial.distance.jensenshannon`` returns its
  square root.
- Finite-sample floor: two samples of the same distribution still have JS > 0. :func:`split_half_js` builds the
  matched floor JS(GT_A, GT_B) on an episode split and the score JS(pred_A, GT_B); report excess = score - floor.
- :func:`tuple_ids`: joint code tuples (sequence level) mapped to consistent integer ids.

Codes are int arrays of shape (N,) or (N, S); histograms pool positions unless a per-position function is used.
"""

from __future__ import annotations

import numpy as np

LN2 = float(np.log(2.0))


def histogram(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Counts of each code 0..K-1 over all entries of ``codes`` (any shape), (K,) float."""
    c = np.asarray(codes).ravel().astype(np.int64)
    if c.size and (c.min() < 0 or c.max() >= n_codes):
        raise ValueError(f"codes must lie in [0, {n_codes}); got min {c.min()}, max {c.max()}")
    return np.bincount(c, minlength=n_codes).astype(float)


def as_positions(codes: np.ndarray) -> np.ndarray:
    """(N,) -> (N, 1); (N, S) unchanged."""
    codes = np.asarray(codes)
    return codes[:, None] if codes.ndim == 1 else codes


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, float)
    s = p.sum()
    if s <= 0:
        raise ValueError("empty histogram")
    return p / s


def kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray, alpha: float = 0.5) -> float:
    """KL(p~ || q~) in nats between two count vectors with pseudo-count ``alpha`` per bin (alpha=0: plain KL)."""
    p = np.asarray(p_counts, float) + alpha
    q = np.asarray(q_counts, float) + alpha
    p, q = _normalise(p), _normalise(q)
    m = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in nats between two count or probability vectors; in [0, ln 2]."""
    p, q = _normalise(p), _normalise(q)
    m = 0.5 * (p + q)

    def _kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * (np.log(a[nz]) - np.log(m[nz]))))

    return float(min(max(0.5 * _kl(p) + 0.5 * _kl(q), 0.0), LN2))


def kl_codes(gt_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int, alpha: float = 0.5) -> float:
    """KL(GT~ || pred~) of the pooled code histograms."""
    return kl_divergence(histogram(gt_codes, n_codes), histogram(pred_codes, n_codes), alpha)


def js_codes(gt_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int) -> float:
    """JS of the pooled code histograms, nats."""
    return js_divergence(histogram(gt_codes, n_codes), histogram(pred_codes, n_codes))


def per_position_js(gt_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int) -> np.ndarray:
    """JS per position s for (N, S) codes, (S,)."""
    gt, pr = as_positions(gt_codes), as_positions(pred_codes)
    return np.array([js_codes(gt[:, s], pr[:, s], n_codes) for s in range(gt.shape[1])])


def js_floor_theory(n_codes: int, n_p: int, n_q: int | None = None) -> float:
    """Large-sample JS floor of two independent samples of one distribution over K used codes:
    (K - 1)(1/N_p + 1/N_q) / 8. Within 5% once N >= 10 K; underestimates by 10-20% at N = 1-4 K."""
    n_q = n_p if n_q is None else n_q
    return float((n_codes - 1) * (1.0 / n_p + 1.0 / n_q) / 8.0)


def episode_halves(episode_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Boolean (N,) mask: True for items of half A of a seeded random split of the episodes into two halves."""
    episode_ids = np.asarray(episode_ids)
    uniq = np.unique(episode_ids)
    rng = np.random.default_rng(seed)
    a = rng.permutation(uniq)[: len(uniq) // 2]
    return np.isin(episode_ids, a)


def split_half_js(
    gt_codes: np.ndarray, pred_codes: np.ndarray, half_a: np.ndarray, n_codes: int
) -> tuple[float, float, float]:
    """Matched split-half floor: (floor = JS(GT_A, GT_B), score = JS(pred_A, GT_B), excess = score - floor).

    ``half_a`` is a boolean item mask (see :func:`episode_halves`); codes of all positions are pooled.
    """
    half_a = np.asarray(half_a, bool)
    gt_a, gt_b = histogram(gt_codes[half_a], n_codes), histogram(gt_codes[~half_a], n_codes)
    pr_a = histogram(pred_codes[half_a], n_codes)
    floor = js_divergence(gt_a, gt_b)
    score = js_divergence(pr_a, gt_b)
    return floor, score, score - floor


def tuple_ids(*code_arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Map the rows (joint code tuples) of several (N_i, S) arrays to shared integer ids; returns (ids, n_tuples)."""
    arrs = [as_positions(a) for a in code_arrays]
    stacked = np.concatenate(arrs, axis=0)
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    out, start = [], 0
    for a in arrs:
        out.append(inverse[start : start + len(a)])
        start += len(a)
    return out, int(inverse.max()) + 1 if len(inverse) else 0


def coarsen_top_m(
    codes: np.ndarray, reference_codes: np.ndarray, n_codes: int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-M coarsening: keep the M most frequent codes of ``reference_codes`` (a separate split), map every other
    code to bin M. Returns (coarse codes in [0, M], kept code ids). Keep M <= N/10 so bins stay populated."""
    ref = histogram(reference_codes, n_codes)
    kept = np.argsort(-ref, kind="stable")[:m]
    lut = np.full(n_codes, m, dtype=np.int64)
    lut[kept] = np.arange(len(kept))
    return lut[np.asarray(codes, np.int64)], kept
