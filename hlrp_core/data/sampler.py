"""Deterministic sample keys (DATA_ADAPTER section 3.3): key i = (dataset d, episode e, start t, gap k) is a pure
function of (seed, epoch, i), computed with a counter-based hash (splitmix64), so the same config gives the same keys
whatever the thread count or timing, and resuming at step s continues from index s * B.

- d: drawn by weight once per block of ``mix_block_length`` consecutive indices (inverse-CDF on the cumulative
  weights: a pure function of one uniform draw, like an alias table).
- e: ``samples_per_episode=0``: pair-uniform, P(e) proportional to T_e - k_min over eligible episodes (T_e - 1 >=
  k_min). ``samples_per_episode=N``: episode-uniform; the N indices of one group i // N that pick the same dataset
  share the episode (one read).
- k: uniform in [k_min, min(k_max, T_e - 1)]; t: uniform in {0, ..., T_e - 1 - k}. Never clamped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def uniform(seed: int, stream: int, counter: np.ndarray) -> np.ndarray:
    """U[0, 1) per counter value, a pure function of (seed, stream, counter)."""
    with np.errstate(over="ignore"):
        base = _mix(np.array([(int(seed) & 0xFFFFFFFFFFFFFFFF) ^ (int(stream) * 0x632BE59BD9B4E019 &
                                                                   0xFFFFFFFFFFFFFFFF)], np.uint64))[0]
        x = _mix(np.asarray(counter, np.uint64) * _G + base)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


@dataclass
class DatasetDraw:
    """What the sampler needs about one dataset: eligible episodes (positions into its train episode list) with
    their lengths, the gap range and its seed."""

    lengths: np.ndarray  # T of each eligible episode
    episodes: np.ndarray  # episode ids (int64) of the eligible episodes
    k_min: int
    k_max: int
    seed: int

    def __post_init__(self) -> None:
        w = (self.lengths.astype(np.float64) - self.k_min)
        self._cum = np.cumsum(w)

    @property
    def num_pairs(self) -> int:
        return int(self._cum[-1]) if len(self._cum) else 0


class KeySampler:
    """keys(start, n) -> int64 arrays (d, e_pos, t, k) for global indices start..start+n-1."""

    def __init__(self, datasets: list[DatasetDraw], weights: np.ndarray, seed: int, block: int = 1,
                 samples_per_episode: int = 0, epoch: int = 0):
        self.datasets = datasets
        w = np.asarray(weights, np.float64)
        self.cdf = np.cumsum(w / w.sum())
        self.seed = int(seed)
        self.block = max(1, int(block))
        self.spe = int(samples_per_episode)
        self.epoch = int(epoch)

    def keys(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        i = np.arange(start, start + n, dtype=np.int64)
        seed = self.seed + 7919 * self.epoch
        ud = uniform(seed, 1, i // self.block)
        d = np.minimum(np.searchsorted(self.cdf, ud, side="right"), len(self.datasets) - 1).astype(np.int64)
        e = np.zeros(n, np.int64)
        t = np.zeros(n, np.int64)
        k = np.zeros(n, np.int64)
        for di in np.unique(d):
            ds = self.datasets[int(di)]
            m = d == di
            ii = i[m]
            s = ds.seed + 7919 * self.epoch
            if self.spe <= 0:
                ue = uniform(s, 2, ii) * ds._cum[-1]
                pos = np.minimum(np.searchsorted(ds._cum, ue, side="right"), len(ds.lengths) - 1)
            else:
                ue = uniform(s, 3, ii // self.spe)
                pos = np.minimum((ue * len(ds.lengths)).astype(np.int64), len(ds.lengths) - 1)
            T = ds.lengths[pos].astype(np.int64)
            kmax = np.minimum(ds.k_max, T - 1)
            kk = ds.k_min + (uniform(s, 4, ii) * (kmax - ds.k_min + 1)).astype(np.int64)
            kk = np.minimum(kk, kmax)
            tt = (uniform(s, 5, ii) * (T - kk)).astype(np.int64)
            tt = np.minimum(tt, T - 1 - kk)
            e[m], t[m], k[m] = pos, tt, kk
        return d, e, t, k
