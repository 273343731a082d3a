"""Deterministic sample keys (docs/data_at_scale.md): key i = (dataset d, episode e, start t, gap k) is a pure
function of (seed, epoch, i) and the data, computed with a counter-based hash (splitmix64), so the same config gives
the same keys whatever the thread count, timing or cache state, and resuming at step s continues from index s * B.

- d: drawn by weight once per block of ``mix_block_length`` consecutive indices (inverse-CDF on the cumulative
  weights: a pure function of one uniform draw).
- e, ``unit=episode`` (default): uniform over the split slice [lo, hi) from dataset_info.json alone; with
  ``samples_per_episode=N >= 2`` the N indices of one group i // N that pick the same dataset share the episode. An
  episode too short for k_min (T - 1 < k_min) is skipped deterministically: attempt a + 1 redraws from stream
  100 + a of the same counter, so every process makes the same choice.
- e, ``unit=step``: P(e) proportional to T_e - k_min over eligible episodes (needs every length: from the index
  cache filled by ``hlrp data verify`` or a previous full pass).
- k uniform in [k_min, min(k_max, T_e - 1)]; t uniform in {0, ..., T_e - 1 - k}, both from uniforms drawn per index
  and applied once T_e is known (from the one read of the episode the pair needs anyway). Never clamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)

#: Redraws of a too-short episode before the dataset is reported as having (almost) no usable episode.
MAX_ATTEMPTS = 64


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
    """What the sampler needs about one dataset: the split slice [lo, hi), the gap range, its seed and (``unit=step``
    only) the cumulative eligible pairs of the slice's episodes."""

    lo: int
    hi: int
    k_min: int
    k_max: int
    seed: int
    cum_pairs: Optional[np.ndarray] = None


def pick_tk(T: int, k_min: int, k_max: int, uk: float, ut: float) -> tuple[int, int]:
    """(t, k) of an episode of T steps from the two uniforms of its key (requires T - 1 >= k_min)."""
    kmax = min(k_max, T - 1)
    k = min(k_min + int(uk * (kmax - k_min + 1)), kmax)
    t = min(int(ut * (T - k)), T - 1 - k)
    return t, k


class KeySampler:
    """Draws per global index i: dataset, episode (per attempt) and the (uk, ut) uniforms."""

    def __init__(self, datasets: list[DatasetDraw], weights: np.ndarray, seed: int, block: int = 1,
                 samples_per_episode: int = 0, unit: str = "episode", epoch: int = 0):
        self.datasets = datasets
        w = np.asarray(weights, np.float64)
        self.cdf = np.cumsum(w / w.sum())
        self.seed = int(seed)
        self.block = max(1, int(block))
        self.spe = int(samples_per_episode)
        self.unit = unit
        self.epoch = int(epoch)

    def dataset_of(self, i: np.ndarray) -> np.ndarray:
        ud = uniform(self.seed + 7919 * self.epoch, 1, np.asarray(i, np.int64) // self.block)
        return np.minimum(np.searchsorted(self.cdf, ud, side="right"), len(self.datasets) - 1).astype(np.int64)

    def episode(self, di: int, i: int, attempt: int = 0) -> int:
        """Episode position of index ``i`` in dataset ``di`` at redraw ``attempt`` (0 = first choice)."""
        ds = self.datasets[di]
        s = ds.seed + 7919 * self.epoch
        if self.unit == "step":
            u = float(uniform(s, 2, np.array([i]))[0]) * float(ds.cum_pairs[-1])
            return ds.lo + min(int(np.searchsorted(ds.cum_pairs, u, side="right")), ds.hi - ds.lo - 1)
        group = i // self.spe if self.spe >= 2 else i
        u = float(uniform(s, 3 if attempt == 0 else 100 + attempt, np.array([group]))[0])
        return ds.lo + min(int(u * (ds.hi - ds.lo)), ds.hi - ds.lo - 1)

    def gap_uniforms(self, di: int, i: int) -> tuple[float, float]:
        s = self.datasets[di].seed + 7919 * self.epoch
        c = np.array([i])
        return float(uniform(s, 4, c)[0]), float(uniform(s, 5, c)[0])

    def resolve(self, di: int, i: int, length_of) -> tuple[int, int, int, int]:
        """(episode, t, k, redraws) of index ``i`` in dataset ``di``; ``length_of(di, pos)`` gives T. Episodes too
        short for k_min are redrawn (deterministically); raises ``ValueError`` after ``MAX_ATTEMPTS``."""
        ds = self.datasets[di]
        for attempt in range(MAX_ATTEMPTS):
            pos = self.episode(di, i, attempt)
            T = int(length_of(di, pos))
            if T - 1 >= ds.k_min:
                uk, ut = self.gap_uniforms(di, i)
                t, k = pick_tk(T, ds.k_min, ds.k_max, uk, ut)
                return pos, t, k, attempt
        raise ValueError(f"{MAX_ATTEMPTS} draws found no episode with T >= {ds.k_min + 1}")

    def keys(self, start: int, n: int, length_of) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """int64 arrays (d, episode, t, k) of global indices start..start+n-1 (``length_of`` as in ``resolve``)."""
        i = np.arange(start, start + n, dtype=np.int64)
        d = self.dataset_of(i)
        e, t, k = (np.zeros(n, np.int64) for _ in range(3))
        for r, (di, ii) in enumerate(zip(d.tolist(), i.tolist())):
            e[r], t[r], k[r], _ = self.resolve(di, ii, length_of)
        return d, e, t, k
