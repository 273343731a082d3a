"""Stage 1 (LAQ): does the latent encode the action? (docs/METRICS.md §5)

Called by the LAQ training code at every validation; pure numpy, cheap (ms for N ~ 1e4).

- :func:`action_nmi`: NMI(C; A) = I(C; A) / sqrt(H(C) H(A)) between the code tuple of each item and its binned true
  action (geometric-mean normalisation; sklearn's default is the arithmetic mean). By default each action
  dimension is binned into ``n_bins`` quantile bins (or its own values if it has <= n_bins distinct values) and the
  NMI is averaged over non-constant dimensions; ``joint=True`` bins the action tuple instead. NMI is biased upward
  at small N / many bins, so always compare with :func:`action_nmi_shuffled` (codes permuted across items) and,
  better, with an untrained LAQ (a random translation-invariant encoder plus k-means already "aligns").
- :func:`linear_probe_r2`: ridge regression latent -> action fitted on some episodes and scored on the others
  (held-out R^2 vs the train-mean predictor, averaged over action dimensions). Integer codes are one-hot encoded.
  :func:`linear_probe_r2_shuffled` is the same probe with features permuted across items (~0 or below).
- :func:`within_code_spread`: sum_c n_c Var(a | c) / (N Var(a)); 1 = the codes say nothing about the action.
- :func:`copy_ratio_items`, :func:`closer_to_future_items`, :func:`psnr_items`: per-item pieces of the copy ratio,
  the "closer to the future" share and Delta PSNR (feed them to ``stats.cluster_bootstrap``); :func:`psnr` of one
  mean squared error (the training validation's ``val/recon_psnr``).
"""

from __future__ import annotations

import math

import numpy as np

from .collapse import entropy
from .histograms import as_positions, tuple_ids


def _code_ids(codes: np.ndarray) -> np.ndarray:
    c = np.asarray(codes)
    if c.ndim == 1:
        return np.unique(c, return_inverse=True)[1].ravel()
    return tuple_ids(c)[0][0]


def bin_actions(actions: np.ndarray, n_bins: int = 8) -> np.ndarray:
    """(N, A) float -> (N, A) int bins: quantile bins, or the distinct values for a dimension with <= n_bins."""
    a = np.asarray(actions, float)
    a = a[:, None] if a.ndim == 1 else a.reshape(len(a), -1)
    out = np.zeros(a.shape, np.int64)
    for j in range(a.shape[1]):
        col = a[:, j]
        vals = np.unique(col)
        if len(vals) <= n_bins:
            out[:, j] = np.searchsorted(vals, col)
        else:
            edges = np.unique(np.quantile(col, np.linspace(0, 1, n_bins + 1)[1:-1]))
            out[:, j] = np.searchsorted(edges, col, side="right")
    return out


def mutual_information(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(I(X; Y), H(X), H(Y)) in nats of two int label arrays."""
    x = np.unique(np.asarray(x), return_inverse=True)[1].ravel()
    y = np.unique(np.asarray(y), return_inverse=True)[1].ravel()
    joint = np.bincount(x * (y.max() + 1) + y, minlength=(x.max() + 1) * (y.max() + 1))
    hx = entropy(np.bincount(x))
    hy = entropy(np.bincount(y))
    hxy = entropy(joint)
    return float(hx + hy - hxy), hx, hy


def nmi(x: np.ndarray, y: np.ndarray) -> float:
    """I(X; Y) / sqrt(H(X) H(Y)). Limits as in scikit-learn: 0 when exactly one labelling is constant (a collapsed
    codebook says nothing about the action), 1 when both are."""
    i, hx, hy = mutual_information(x, y)
    if hx > 0 and hy > 0:
        return float(i / np.sqrt(hx * hy))
    return 1.0 if hx == 0 and hy == 0 else 0.0


def action_nmi(
    codes: np.ndarray, actions: np.ndarray, n_bins: int = 8, seed: int = 0, joint: bool = False
) -> float:
    """NMI between the code tuple (codes (N,) or (N, S) int) and the binned true action (actions (N, A) float).

    ``seed`` is unused by the plain estimate (kept so the call matches :func:`action_nmi_shuffled`).
    """
    c = _code_ids(codes)
    b = bin_actions(actions, n_bins)
    if joint:
        return nmi(c, tuple_ids(b)[0][0])
    vals = [nmi(c, b[:, j]) for j in range(b.shape[1]) if len(np.unique(b[:, j])) > 1]  # constant dims say nothing
    return float(np.mean(vals)) if vals else float("nan")


def action_nmi_shuffled(
    codes: np.ndarray, actions: np.ndarray, n_bins: int = 8, seed: int = 0, joint: bool = False
) -> float:
    """The same NMI with the codes permuted across items (the finite-sample floor of the estimate)."""
    perm = np.random.default_rng(seed).permutation(len(codes))
    return action_nmi(np.asarray(codes)[perm], actions, n_bins, seed, joint)


def one_hot_codes(codes: np.ndarray, n_codes: int | None = None) -> np.ndarray:
    """(N,) or (N, S) int codes -> (N, S*K) float one-hot."""
    c = as_positions(codes).astype(np.int64)
    k = int(c.max()) + 1 if n_codes is None else int(n_codes)
    out = np.zeros((len(c), c.shape[1] * k))
    rows = np.repeat(np.arange(len(c)), c.shape[1])
    cols = (np.arange(c.shape[1]) * k + c).ravel()
    out[rows, cols] = 1.0
    return out


def episode_split(episode_ids: np.ndarray, test_frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """Boolean (N,) test mask holding about ``test_frac`` of the episodes (at least one episode on each side)."""
    ep = np.asarray(episode_ids)
    uniq = np.random.default_rng(seed).permutation(np.unique(ep))
    n_test = int(np.clip(round(test_frac * len(uniq)), 1, max(len(uniq) - 1, 1)))
    return np.isin(ep, uniq[:n_test])


def linear_probe(
    features: np.ndarray,
    actions: np.ndarray,
    episode_ids: np.ndarray,
    seed: int = 0,
    ridge: float = 1e-3,
    test_frac: float = 0.3,
) -> dict[str, object]:
    """Ridge probe features -> actions, split by episode. Returns ``{"r2": mean, "r2_per_dim": (A,), "n_train",
    "n_test"}``; R^2 on the held-out episodes against the train-mean predictor; constant dims are skipped."""
    x = np.asarray(features)
    if np.issubdtype(x.dtype, np.integer):
        x = one_hot_codes(x)
    x = x.reshape(len(x), -1).astype(float)
    y = np.asarray(actions, float)
    y = y[:, None] if y.ndim == 1 else y.reshape(len(y), -1)
    ep = np.asarray(episode_ids)
    if len(np.unique(ep)) < 2:
        return {"r2": float("nan"), "r2_per_dim": np.full(y.shape[1], np.nan), "n_train": len(x), "n_test": 0}
    test = episode_split(ep, test_frac, seed)
    xtr, xte, ytr, yte = x[~test], x[test], y[~test], y[test]
    mu, sd = xtr.mean(0), xtr.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ymu = ytr.mean(0)
    # ridge closed form with intercept (features centred on train, so the intercept is ymu)
    d = xtr.shape[1]
    w = np.linalg.solve(xtr.T @ xtr + ridge * len(xtr) * np.eye(d), xtr.T @ (ytr - ymu))
    pred = xte @ w + ymu
    sst = ((yte - ymu) ** 2).sum(0)
    r2 = np.where(sst > 0, 1 - ((pred - yte) ** 2).sum(0) / np.where(sst > 0, sst, 1.0), np.nan)
    fin = r2[np.isfinite(r2)]
    return {"r2": float(fin.mean()) if len(fin) else float("nan"), "r2_per_dim": r2,
            "n_train": int((~test).sum()), "n_test": int(test.sum())}


def linear_probe_r2(
    features: np.ndarray, actions: np.ndarray, episode_ids: np.ndarray, seed: int = 0, ridge: float = 1e-3
) -> float:
    """Held-out (by episode) R^2 of a ridge probe from latent vectors (N, D) or int codes (N, S) to actions (N, A)."""
    return float(linear_probe(features, actions, episode_ids, seed=seed, ridge=ridge)["r2"])


def linear_probe_r2_shuffled(
    features: np.ndarray, actions: np.ndarray, episode_ids: np.ndarray, seed: int = 0, ridge: float = 1e-3
) -> float:
    """The probe with features permuted across items: the no-information control (about 0 or below)."""
    perm = np.random.default_rng(seed + 1).permutation(len(features))
    return linear_probe_r2(np.asarray(features)[perm], actions, episode_ids, seed=seed, ridge=ridge)


def within_code_spread(codes: np.ndarray, actions: np.ndarray) -> float:
    """sum_c n_c Var(a | c) / (N Var(a)), summed over action dims; 0 = codes determine actions, 1 = no information."""
    c = _code_ids(codes)
    a = np.asarray(actions, float).reshape(len(c), -1)
    total = a.var(axis=0).sum() * len(a)
    if total <= 0:
        return float("nan")
    within = 0.0
    for k in np.unique(c):
        sel = a[c == k]
        within += sel.var(axis=0).sum() * len(sel)
    return float(within / total)


def stage1_action_metrics(
    codes: np.ndarray,
    actions: np.ndarray,
    episode_ids: np.ndarray,
    features: np.ndarray | None = None,
    n_bins: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """One call for the LAQ validation: NMI and probe R^2 (on ``features`` if given, else one-hot codes), each with
    its shuffled control and the excess over it, plus the within-code spread. Keys from ``names``."""
    from . import names as n

    feats = codes if features is None else features
    out = {
        n.ACTION_NMI: action_nmi(codes, actions, n_bins, seed),
        n.ACTION_NMI_SHUFFLED: action_nmi_shuffled(codes, actions, n_bins, seed),
        n.PROBE_R2: linear_probe_r2(feats, actions, episode_ids, seed),
        n.PROBE_R2_SHUFFLED: linear_probe_r2_shuffled(feats, actions, episode_ids, seed),
        n.WITHIN_CODE_SPREAD: within_code_spread(codes, actions),
    }
    out[n.ACTION_NMI_EXCESS] = out[n.ACTION_NMI] - out[n.ACTION_NMI_SHUFFLED]
    out[n.PROBE_R2_EXCESS] = out[n.PROBE_R2] - out[n.PROBE_R2_SHUFFLED]
    return out


def _mse_items(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float).reshape(len(a), -1)
    return ((a - np.asarray(b, float).reshape(len(a), -1)) ** 2).mean(axis=1)


def copy_ratio_items(pred_next: np.ndarray, next_frames: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-item (numerator, denominator) of rho = MSE(o^_{t+k}, o_{t+k}) / MSE(o_t, o_{t+k}); the ratio of the
    means is the copy ratio (bootstrap it as sum(num[idx]) / sum(den[idx]))."""
    return _mse_items(pred_next, next_frames), _mse_items(frames, next_frames)


def closer_to_future_items(pred_next: np.ndarray, next_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N,) bool: MSE(o^, o_{t+k}) < MSE(o^, o_t). Its mean should exceed 0.5."""
    return _mse_items(pred_next, next_frames) < _mse_items(pred_next, frames)


def psnr(mse: float) -> float:
    """PSNR = 10 log10(1 / MSE) of a mean squared error of images in [0, 1] (MSE floored at 1e-12)."""
    return float(10 * math.log10(1.0 / max(mse, 1e-12)))


def psnr_items(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N,) PSNR = 10 log10(1 / MSE) for images in [0, 1]. Delta PSNR = psnr(true z) - psnr(shuffled z)."""
    return 10.0 * np.log10(1.0 / np.maximum(_mse_items(pred, target), 1e-12))


def stage1_reconstruction_metrics(
    pred_next: np.ndarray,
    next_frames: np.ndarray,
    frames: np.ndarray,
    pred_next_shuffled: np.ndarray | None = None,
    episode_ids: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Copy ratio, closer-to-future share and (with ``pred_next_shuffled`` = decoder output with codes permuted
    across the batch) Delta PSNR, each with a 95% episode-bootstrap CI. Frames: (N, ...) in [0, 1]."""
    from . import names as n
    from .stats import EpisodeResampler, bootstrap_many

    num, den = copy_ratio_items(pred_next, next_frames, frames)
    closer = closer_to_future_items(pred_next, next_frames, frames)
    st = {
        n.COPY_RATIO: lambda i: num[i].sum() / den[i].sum(),
        n.CLOSER_TO_FUTURE: lambda i: closer[i].mean(),
    }
    if pred_next_shuffled is not None:
        dp = psnr_items(pred_next, next_frames) - psnr_items(pred_next_shuffled, next_frames)
        st[n.DELTA_PSNR] = lambda i: dp[i].mean()
    res = EpisodeResampler(episode_ids, len(num), n_boot, seed)
    out: dict[str, float] = {n.N_ITEMS: len(num), n.N_EPISODES: res.n_episodes}
    for name, ci in bootstrap_many(st, res).items():
        out.update(ci.as_dict(name))
    return out
