"""Confidence intervals and trend tests (docs/METRICS.md §7).

- :func:`wilson_interval`: binomial proportion CI (accuracy, top-k, success rates).
- :class:`EpisodeResampler` + :func:`cluster_bootstrap`: resample **episodes** with replacement and recompute a
  statistic on the pooled items of each resample (items inside an episode are correlated).
- :func:`paired_bootstrap`: metric_A - metric_B on the same items and the same resamples (two checkpoints, or true
  vs ablated input).
- :func:`trend_test`: Spearman / Kendall of a metric against step (exact permutation p);
  :func:`bootstrap_log_slope`: slope vs log(step)
  with the same episode resamples for every checkpoint.
- :func:`seed_mean_ci`: mean +- t * s / sqrt(n) across seeds.

A statistic is a callable ``stat(idx) -> float`` where ``idx`` is an int array of item indices (with repeats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from scipy import stats as _st

Statistic = Callable[[np.ndarray], float]

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``; returns (lo, hi) in [0, 1] (NaNs if n == 0).

    (p + z^2/(2n) +- z * sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n).
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    lo = 0.0 if successes <= 0 else max(0.0, (centre - half) / denom)    # exact at the edges (no rounding residue)
    hi = 1.0 if successes >= n else min(1.0, (centre + half) / denom)
    return float(lo), float(hi)


class EpisodeResampler:
    """Deterministic episode-cluster bootstrap resamples of item indices.

    ``for idx in EpisodeResampler(episode_ids, n_boot, seed)`` yields ``n_boot`` int arrays; iterating again gives
    the same arrays (the generator is re-seeded), so several statistics - or two checkpoints scored on the same
    items - see identical resamples without storing them.

    Args:
        episode_ids: (N,) episode id of each item (any hashable dtype). ``None`` = every item its own episode.
        n_boot: Number of resamples B.
        seed: Seed of the resampling.
    """

    def __init__(self, episode_ids: np.ndarray | None, n_items: int | None = None, n_boot: int = 1000, seed: int = 0):
        if episode_ids is None:
            if n_items is None:
                raise ValueError("EpisodeResampler needs episode_ids or n_items")
            episode_ids = np.arange(n_items)
        episode_ids = np.asarray(episode_ids)
        self.n_items = len(episode_ids)
        _, inverse = np.unique(episode_ids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")                         # items grouped by episode
        self._order = order
        self._lengths = np.bincount(inverse)                               # (E,)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]])
        self.n_episodes = len(self._lengths)
        self.n_boot = int(n_boot)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.n_boot

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        E = self.n_episodes
        for _ in range(self.n_boot):
            ep = rng.integers(0, E, size=E)
            lens = self._lengths[ep]
            total = int(lens.sum())
            # positions inside the grouped order: start of each sampled episode + 0..len-1
            offsets = np.repeat(self._starts[ep] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            yield self._order[offsets + np.arange(total)]


@dataclass
class CI:
    """A point estimate with a percentile bootstrap (or Wilson) interval."""

    value: float
    lo: float
    hi: float

    def as_dict(self, name: str) -> dict[str, float]:
        return {name: self.value, name + "_lo": self.lo, name + "_hi": self.hi}

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def _percentiles(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if len(s) < max(10, 0.5 * len(samples)):  # too many failed replicates: no honest CI
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _value(stat: Statistic, idx: np.ndarray) -> float:
    """``stat(idx)``, NaN where the statistic is undefined on that resample (an empty class, a zero denominator)."""
    try:
        return float(stat(idx))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return float("nan")


def bootstrap_matrix(statistics: Sequence[Statistic], resampler: EpisodeResampler) -> np.ndarray:
    """The one bootstrap loop: every statistic on every resample (the index arrays are generated once),
    (n_statistics, B) floats, NaN where a statistic failed."""
    out = np.full((len(statistics), len(resampler)), np.nan)
    for b, idx in enumerate(resampler):
        for i, stat in enumerate(statistics):
            out[i, b] = _value(stat, idx)
    return out


def bootstrap_samples(stat: Statistic, resampler: EpisodeResampler) -> np.ndarray:
    """The statistic on every resample, (B,) floats (NaN where it failed)."""
    return bootstrap_matrix([stat], resampler)[0]


def cluster_bootstrap(
    stat: Statistic,
    episode_ids: np.ndarray | None = None,
    *,
    n_items: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    resampler: EpisodeResampler | None = None,
) -> CI:
    """Episode-cluster percentile bootstrap CI of ``stat`` (point estimate on all items)."""
    resampler = resampler or EpisodeResampler(episode_ids, n_items, n_boot, seed)
    with np.errstate(all="ignore"):
        value = float(stat(np.arange(resampler.n_items)))
        lo, hi = _percentiles(bootstrap_samples(stat, resampler), alpha)
    return CI(value, lo, hi)


@dataclass
class PairedResult:
    """metric_A - metric_B on the same items: point diff, CI and P(diff > 0) over resamples."""

    diff: float
    lo: float
    hi: float
    p_positive: float

    @property
    def significant(self) -> bool:
        return bool(np.isfinite(self.lo) and (self.lo > 0 or self.hi < 0))

    def as_dict(self, name: str) -> dict[str, float]:
        return {name: self.diff, name + "_lo": self.lo, name + "_hi": self.hi, name + "_p_positive": self.p_positive}


def paired_bootstrap(
    stat_a: Statistic,
    stat_b: Statistic,
    episode_ids: np.ndarray | None = None,
    *,
    n_items: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    resampler: EpisodeResampler | None = None,
) -> PairedResult:
    """Paired episode bootstrap of ``stat_a(idx) - stat_b(idx)`` (same resample for both each time)."""
    resampler = resampler or EpisodeResampler(episode_ids, n_items, n_boot, seed)
    with np.errstate(all="ignore"):
        full = np.arange(resampler.n_items)
        diff = float(stat_a(full) - stat_b(full))
        samples = bootstrap_samples(lambda idx: stat_a(idx) - stat_b(idx), resampler)
        lo, hi = _percentiles(samples, alpha)
    fin = samples[np.isfinite(samples)]
    p_pos = float(np.mean(fin > 0)) if len(fin) else float("nan")
    return PairedResult(diff, lo, hi, p_pos)


#: Orderings a permutation trend test enumerates exactly (8! = 40320); more checkpoints use this many random ones.
TREND_PERMUTATIONS = 40_320


def trend_test(steps: Sequence[float], values: Sequence[float], method: str = "spearman",
               seed: int = 0) -> dict[str, Any]:
    """Rank correlation of a metric against step with a small-sample-exact two-sided p: ``{"rho", "p", "n",
    "min_p", "method"}``.

    The p-value is a permutation test of the rank correlation (scipy ``permutation_test``, pairings): exact over all
    m! orderings up to 8 checkpoints, else :data:`TREND_PERMUTATIONS` random orderings (``seed``). Why not scipy's
    default p: it is asymptotic and too small for a few checkpoints (rho 0.9 on 5 gives 0.037; exact 0.083).
    ``min_p`` is the smallest attainable exact p (2/m! without ties). ``method``: ``spearman`` or ``kendall``.
    NaN values are dropped; fewer than 3 points or a constant metric give NaN.
    """
    if method not in ("spearman", "kendall"):
        raise ValueError(f"trend_test method={method!r}: use 'spearman' or 'kendall'")
    steps = np.asarray(steps, float)
    values = np.asarray(values, float)
    ok = np.isfinite(steps) & np.isfinite(values)
    steps, values = steps[ok], values[ok]
    m = len(steps)
    n_orders = math.factorial(m) if m > 0 else 0
    min_p = 2.0 / n_orders if m > 1 else float("nan")
    exact = n_orders <= TREND_PERMUTATIONS
    label = (f"{method} permutation test, exact over {n_orders} orderings" if exact else
             f"{method} permutation test, {TREND_PERMUTATIONS} random orderings")
    if m < 3 or np.all(values == values[0]) or np.all(steps == steps[0]):
        return {"rho": float("nan"), "p": float("nan"), "n": float(m), "min_p": min_p, "method": label}
    if method == "kendall":
        res = _st.kendalltau(steps, values, method="exact" if exact else "auto")
        return {"rho": float(res.statistic), "p": float(min(res.pvalue, 1.0)), "n": float(m), "min_p": min_p,
                "method": f"kendall tau, {'exact' if exact else 'asymptotic'} p"}
    rs = _st.rankdata(steps)
    rs = (rs - rs.mean()) / np.linalg.norm(rs - rs.mean())

    def statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:   # Spearman rho of every permuted row at once
        r = _st.rankdata(x, axis=axis)
        r = r - r.mean(axis=axis, keepdims=True)
        return (r * rs).sum(axis=axis) / np.linalg.norm(r, axis=axis)

    res = _st.permutation_test((values,), statistic, permutation_type="pairings", alternative="two-sided",
                               n_resamples=TREND_PERMUTATIONS, vectorized=True, rng=np.random.default_rng(seed))
    return {"rho": float(res.statistic), "p": float(min(res.pvalue, 1.0)), "n": float(m), "min_p": min_p,
            "method": label}


def bootstrap_log_slope(
    stats_per_checkpoint: Sequence[Statistic],
    steps: Sequence[float],
    episode_ids: np.ndarray | None = None,
    *,
    n_items: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> CI:
    """Least-squares slope of the metric against log(step), CI from the same episode resamples at every checkpoint."""
    x = np.log(np.maximum(np.asarray(steps, float), 1.0))
    if len(x) < 2:
        return CI(float("nan"), float("nan"), float("nan"))
    resampler = EpisodeResampler(episode_ids, n_items, n_boot, seed)

    def slope(idx: np.ndarray) -> float:
        y = np.array([f(idx) for f in stats_per_checkpoint], float)
        return float(np.polyfit(x, y, 1)[0])

    return cluster_bootstrap(slope, resampler=resampler, alpha=alpha)


def seed_mean_ci(values: Sequence[float], alpha: float = 0.05) -> CI:
    """Mean across seeds with a t interval (t = 4.30 for 3 seeds)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        m = float(v.mean()) if len(v) else float("nan")
        return CI(m, float("nan"), float("nan"))
    t = _st.t.ppf(1 - alpha / 2, len(v) - 1)
    half = t * v.std(ddof=1) / np.sqrt(len(v))
    return CI(float(v.mean()), float(v.mean() - half), float(v.mean() + half))


def bootstrap_many(
    statistics: dict[str, Statistic], resampler: EpisodeResampler, alpha: float = 0.05
) -> dict[str, CI]:
    """Several statistics on the same resamples (the index arrays are generated once): ``{name: CI}``."""
    names = list(statistics)
    full = np.arange(resampler.n_items)
    with np.errstate(all="ignore"):
        points = {n: _value(statistics[n], full) for n in names}
        samples = bootstrap_matrix([statistics[n] for n in names], resampler)
    out = {}
    for i, n in enumerate(names):
        lo, hi = _percentiles(samples[i], alpha)
        out[n] = CI(points[n], lo, hi)
    return out
