"""One-call evaluation of a validation set: a flat dict of metric names (``names``) with 95% CI bounds.

- :func:`evaluate_codes`: token head (GT codes vs predicted codes or logits).
- :func:`evaluate_vectors`: vector head (GT vs predicted latent vectors; optional codebook for nearest-code metrics).

CIs come from one episode-cluster bootstrap (``stats.EpisodeResampler``, B = ``n_boot``) shared by all statistics,
so the numbers are mutually consistent. Without ``episode_ids`` every item is its own episode (optimistic CIs if
items of one episode are correlated). Input ablations are re-scorings of the same items with corrupted inputs
(``{"shuffled_images": pred, ...}``); each gives a paired Delta = primary(true) - primary(ablated) with a CI.
Feed the result to :func:`hlrp_core.metrics.verdict.verdict`.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from . import names as n
from .classification import code_distances, cross_entropy_items, decoding_margin, margin_summary, topk_hits
from .collapse import entropy, seed_variance, variance_ratio
from .histograms import as_positions, episode_halves, js_divergence, js_floor_theory, kl_divergence, tuple_ids
from .stats import CI, EpisodeResampler, bootstrap_many, paired_bootstrap


def _hist(x: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(x.ravel(), minlength=k).astype(float)


def _ppl_ratio(g: np.ndarray, p: np.ndarray, k: int) -> float:
    return float(np.exp(entropy(_hist(p, k)) - entropy(_hist(g, k))))


def _unique_ratio(g: np.ndarray, p: np.ndarray, k: int) -> float:
    return float((_hist(p, k) > 0).sum() / max((_hist(g, k) > 0).sum(), 1))


def _top1(x: np.ndarray, k: int) -> float:
    h = _hist(x, k)
    return float(h.max() / h.sum())


def _majority(g: np.ndarray, k: int) -> float:
    """Mean over positions of the max share; g (M, S)."""
    return float(np.mean([_hist(g[:, s], k).max() for s in range(g.shape[1])]) / len(g))


def _put(out: dict, name: str, ci: CI) -> None:
    out.update(ci.as_dict(name))


def evaluate_codes(
    gt_codes: np.ndarray,
    pred_codes: np.ndarray | None = None,
    *,
    pred_logits: np.ndarray | None = None,
    n_codes: int | None = None,
    episode_ids: np.ndarray | None = None,
    train_episode_ids: Iterable | None = None,
    ablations: Mapping[str, np.ndarray] | None = None,
    topk: Iterable[int] = (5,),
    kl_alpha: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    prefix: str = "",
) -> dict[str, float]:
    """Token-head metrics with 95% episode-bootstrap CIs.

    Args:
        gt_codes: (N,) or (N, S) int GT codes.
        pred_codes: Same shape, predicted codes. Optional when ``pred_logits`` is given (argmax is used).
        pred_logits: (N, S, K) or (N, K) logits; adds top-k, cross-entropy and information gain.
        n_codes: K (default: logits width, else max code + 1).
        episode_ids: (N,) episode of each item (the bootstrap cluster). Default: one episode per item.
        train_episode_ids: Episodes used in training; their overlap with the eval set is reported (must be 0).
        ablations: ``{name: predicted codes or logits on corrupted inputs}`` for the same items.
        topk: k values for top-k hit rates (needs logits).
        kl_alpha: Pseudo-count per bin of the KL.
        n_boot: Bootstrap resamples.
        seed: Bootstrap / split seed.
        prefix: Prepended to every key (``val/``).

    Returns: flat dict; see ``names`` (``acc``, ``lift``, ``js_excess``, ``unique_ratio_pos0``, ... and ``*_lo/_hi``).
    """
    gt = as_positions(np.asarray(gt_codes)).astype(np.int64)                  # (N, S)
    logits = None
    if pred_logits is not None:
        logits = np.asarray(pred_logits, float)
        logits = logits[:, None, :] if logits.ndim == 2 else logits           # (N, S, K)
        if pred_codes is None:
            pred_codes = logits.argmax(-1)
    if pred_codes is None:
        raise ValueError("evaluate_codes needs pred_codes or pred_logits")
    pr = as_positions(np.asarray(pred_codes)).astype(np.int64)
    if pr.shape != gt.shape:
        raise ValueError(f"pred_codes shape {pr.shape} != gt_codes shape {gt.shape}")
    N, S = gt.shape
    K = int(n_codes or (logits.shape[-1] if logits is not None else max(gt.max(), pr.max()) + 1))
    ep = np.arange(N) if episode_ids is None else np.asarray(episode_ids)
    res = EpisodeResampler(ep, n_boot=n_boot, seed=seed)
    half_a = episode_halves(ep, seed)
    (gt_t, pr_t), n_tuples = tuple_ids(gt, pr)
    corr = gt == pr                                                           # (N, S)

    out: dict[str, float] = {
        n.HEAD: "token", n.N_ITEMS: N, n.N_EPISODES: res.n_episodes, n.N_CODES: K, n.N_POSITIONS: S,
        n.N_BOOT: n_boot, n.KL_ALPHA: kl_alpha,
        n.UNIFORM_ACC: 1.0 / K, n.UNIFORM_CE: float(np.log(K)),
        n.JS_FLOOR_THEORY: js_floor_theory(K, N * S),
    }
    if train_episode_ids is not None:
        out[n.EPISODE_OVERLAP] = int(np.isin(np.unique(ep), np.asarray(list(train_episode_ids))).sum())

    # The blind baseline is one fixed predictor: the majority code per position (and the majority tuple), chosen
    # once on the whole eval set. Re-taking the max share inside each resample biased every resampled baseline up
    # (the max of noisy shares), so with balanced codes the interval sat below its own point estimate and a model
    # that always emits the majority code got a lift interval below 0 instead of exactly [0, 0].
    is_major = gt == np.array([_hist(gt[:, s], K).argmax() for s in range(S)])[None, :]  # (N, S)
    is_major_t = gt_t == _hist(gt_t, n_tuples).argmax()                                    # (N,)
    st: dict = {
        n.ACC: lambda i: corr[i].mean(),
        n.LIFT: lambda i: corr[i].mean() - is_major[i].mean(),
        n.SEQ_EXACT: lambda i: corr[i].all(1).mean(),
        n.SEQ_LIFT: lambda i: corr[i].all(1).mean() - is_major_t[i].mean(),
        n.KL: lambda i: kl_divergence(_hist(gt[i], K), _hist(pr[i], K), kl_alpha),
        n.JS: lambda i: js_divergence(_hist(gt[i], K), _hist(pr[i], K)),
        n.JS_FLOOR: lambda i: js_divergence(_hist(gt[i][half_a[i]], K), _hist(gt[i][~half_a[i]], K)),
        n.JS_SPLIT: lambda i: js_divergence(_hist(pr[i][half_a[i]], K), _hist(gt[i][~half_a[i]], K)),
        n.JS_EXCESS: lambda i: js_divergence(_hist(pr[i][half_a[i]], K), _hist(gt[i][~half_a[i]], K))
        - js_divergence(_hist(gt[i][half_a[i]], K), _hist(gt[i][~half_a[i]], K)),
        n.UNIQUE_RATIO: lambda i: _unique_ratio(gt[i], pr[i], K),
        n.PPL_RATIO: lambda i: _ppl_ratio(gt[i], pr[i], K),
        n.TOP1_SHARE_PRED: lambda i: _top1(pr[i], K),
        n.seq(n.UNIQUE_RATIO): lambda i: _unique_ratio(gt_t[i], pr_t[i], n_tuples),
        n.seq(n.PPL_RATIO): lambda i: _ppl_ratio(gt_t[i], pr_t[i], n_tuples),
        n.seq(n.TOP1_SHARE_PRED): lambda i: _top1(pr_t[i], n_tuples),
    }
    if S > 1:
        for s in range(S):
            g, p, c = gt[:, s], pr[:, s], corr[:, s]
            st[n.pos(n.ACC, s)] = lambda i, c=c: c[i].mean()
            st[n.pos(n.LIFT, s)] = lambda i, c=c, mj=is_major[:, s]: c[i].mean() - mj[i].mean()
            st[n.pos(n.JS, s)] = lambda i, g=g, p=p: js_divergence(_hist(g[i], K), _hist(p[i], K))
            st[n.pos(n.UNIQUE_RATIO, s)] = lambda i, g=g, p=p: _unique_ratio(g[i], p[i], K)
            st[n.pos(n.PPL_RATIO, s)] = lambda i, g=g, p=p: _ppl_ratio(g[i], p[i], K)
            st[n.pos(n.TOP1_SHARE_PRED, s)] = lambda i, p=p: _top1(p[i], K)
    if logits is not None:
        if logits.shape[:2] != gt.shape:
            raise ValueError(f"pred_logits shape {logits.shape} does not match gt_codes {gt.shape}")
        ce = cross_entropy_items(gt, logits)                                  # (N, S)
        hp = lambda i: float(np.mean([entropy(_hist(gt[i][:, s], K)) for s in range(S)]))  # noqa: E731
        st[n.CE] = lambda i: ce[i].mean()
        st[n.IG] = lambda i: hp(i) - ce[i].mean()
        for k in topk:
            hits = topk_hits(gt, logits, k)
            st[n.topk(k)] = lambda i, h=hits: h[i].mean()
            out[n.topk_majority(k)] = float(np.mean([np.sort(_hist(gt[:, s], K))[::-1][:k].sum() / N
                                                     for s in range(S)]))
        out[n.UNCOND_CE] = hp(np.arange(N))

    for name, ci in bootstrap_many(st, res).items():
        _put(out, name, ci)

    # point-only descriptors
    hist_g, hist_p = _hist(gt, K), _hist(pr, K)
    out[n.MAJORITY_ACC] = _majority(gt, K)
    out[n.MARGINAL_ACC] = float(np.mean([((_hist(gt[:, s], K) / N) ** 2).sum() for s in range(S)]))
    out[n.TOP1_SHARE_GT] = _top1(gt, K)
    out[n.seq(n.TOP1_SHARE_GT)] = _top1(gt_t, n_tuples)
    out[n.UNIQUE_PRED] = float((hist_p > 0).sum())
    out[n.UNIQUE_GT] = float((hist_g > 0).sum())
    out[n.ENTROPY_PRED] = entropy(hist_p)
    out[n.ENTROPY_GT] = entropy(hist_g)
    out[n.ENTROPY_RATIO] = out[n.ENTROPY_PRED] / out[n.ENTROPY_GT] if out[n.ENTROPY_GT] > 0 else float("nan")
    out[n.CODE_USAGE] = float((hist_p > 0).mean())
    out[n.CODES_USED] = float((hist_p > 0).sum())
    out[n.PPL_PRED] = float(np.exp(out[n.ENTROPY_PRED]))
    if S > 1:
        for s in range(S):
            out[n.pos(n.TOP1_SHARE_GT, s)] = _top1(gt[:, s], K)
            out[n.pos(n.CODES_USED, s)] = float((_hist(pr[:, s], K) > 0).sum())
            out[n.pos(n.ENTROPY_PRED, s)] = entropy(_hist(pr[:, s], K))
    if logits is not None and out[n.UNCOND_CE] > 0:
        out[n.IG_RATIO] = out[n.IG] / out[n.UNCOND_CE]

    for name, abl in (ablations or {}).items():
        a = np.asarray(abl)
        a_codes = as_positions(a.argmax(-1) if a.ndim == 3 or (a.ndim == 2 and a.dtype.kind == "f") else a)
        ca = gt == a_codes
        pb = paired_bootstrap(lambda i: corr[i].mean(), lambda i, ca=ca: ca[i].mean(), resampler=res)
        out.update(pb.as_dict(n.ablation(name)))
    return {prefix + k: v for k, v in out.items()}


def evaluate_vectors(
    gt_vectors: np.ndarray,
    pred_vectors: np.ndarray,
    *,
    episode_ids: np.ndarray | None = None,
    train_episode_ids: Iterable | None = None,
    train_mean: np.ndarray | None = None,
    seed_samples: np.ndarray | None = None,
    codebook: np.ndarray | None = None,
    gt_codes: np.ndarray | None = None,
    code_metric: str = "euclidean",
    ablations: Mapping[str, np.ndarray] | None = None,
    topk: Iterable[int] = (5,),
    n_boot: int = 1000,
    seed: int = 0,
    prefix: str = "",
) -> dict[str, float]:
    """Vector-head metrics with 95% episode-bootstrap CIs.

    Args:
        gt_vectors: (N, D) or (N, S, D) GT latent vectors.
        pred_vectors: Same shape, predictions (one fixed noise seed).
        episode_ids: (N,) episode of each item. Default: one episode per item.
        train_episode_ids: Training episodes, for the overlap check.
        train_mean: Mean of the GT vectors on the train split (shape of one item); default: the eval mean.
        seed_samples: (n_seeds, N, ...) predictions under several noise seeds -> ``seed_var``.
        codebook: (K, D) codebook; adds nearest-code accuracy, lift, top-k, margins and every ``evaluate_codes``
            histogram/collapse metric on the decoded codes.
        gt_codes: GT codes (N,) / (N, S); default: nearest-code decoding of ``gt_vectors``.
        code_metric: ``euclidean`` or ``cosine`` for decoding.
        ablations: ``{name: predicted vectors on corrupted inputs}`` -> paired Delta R^2.
        topk: k for nearest-code top-k hit rates.
        n_boot, seed, prefix: As in ``evaluate_codes``.
    """
    y = np.asarray(gt_vectors, float)
    yh = np.asarray(pred_vectors, float)
    if y.shape != yh.shape:
        raise ValueError(f"pred_vectors shape {yh.shape} != gt_vectors shape {y.shape}")
    N = len(y)
    yf, yhf = y.reshape(N, -1), yh.reshape(N, -1)
    ref = yf.mean(0) if train_mean is None else np.broadcast_to(np.asarray(train_mean, float), y.shape[1:]).reshape(-1)
    ep = np.arange(N) if episode_ids is None else np.asarray(episode_ids)
    res = EpisodeResampler(ep, n_boot=n_boot, seed=seed)
    se = ((yhf - yf) ** 2).sum(1)                                             # (N,)
    ae = np.abs(yhf - yf).sum(1)
    sst_items = ((yf - ref) ** 2).sum(1)
    den = np.linalg.norm(yf, axis=1) * np.linalg.norm(yhf, axis=1)
    cos = np.where(den > 0, (yf * yhf).sum(1) / np.maximum(den, 1e-300), 0.0)
    nref = np.linalg.norm(ref)
    den_m = np.linalg.norm(yf, axis=1) * nref
    cos_mean = np.where(den_m > 0, (yf @ ref) / np.maximum(den_m, 1e-300), 0.0)
    D = yf.shape[1]

    def r2(i: np.ndarray, e: np.ndarray = se) -> float:
        return float(1.0 - e[i].sum() / sst_items[i].sum())

    def vr(i: np.ndarray) -> float:
        return float(yhf[i].var(0).sum() / yf[i].var(0).sum())

    st = {
        n.MSE: lambda i: se[i].mean() / D,
        n.MAE: lambda i: ae[i].mean() / D,
        n.COSINE: lambda i: cos[i].mean(),
        n.R2: r2,
        n.VAR_RATIO: vr,
    }
    if seed_samples is not None:
        ss = np.asarray(seed_samples, float).reshape(len(seed_samples), N, -1)
        sv_items = ss.var(0, ddof=1).sum(1)                                          # (N,)
        st[n.SEED_VAR] = lambda i: sv_items[i].mean() / yf[i].var(0).sum()
    out: dict = {n.HEAD: "vector", n.N_ITEMS: N, n.N_EPISODES: res.n_episodes, n.N_BOOT: n_boot,
                 n.MEAN_MSE: float(sst_items.mean() / D), n.MEAN_COSINE: float(cos_mean.mean())}
    if train_episode_ids is not None:
        out[n.EPISODE_OVERLAP] = int(np.isin(np.unique(ep), np.asarray(list(train_episode_ids))).sum())
    for name, ci in bootstrap_many(st, res).items():
        _put(out, name, ci)

    for name, abl in (ablations or {}).items():
        a = np.asarray(abl, float).reshape(N, -1)
        se_a = ((a - yf) ** 2).sum(1)
        pb = paired_bootstrap(r2, lambda i, e=se_a: r2(i, e), resampler=res)
        out.update(pb.as_dict(n.ablation(name)))

    if codebook is not None:
        e = np.asarray(codebook, float)
        d_pred = code_distances(yh, e, code_metric)                           # (N, [S,] K)
        pred_c = d_pred.argmin(-1)
        gc = np.argmin(code_distances(y, e, code_metric), -1) if gt_codes is None else np.asarray(gt_codes)
        codes = evaluate_codes(gc, pred_codes=pred_c, pred_logits=-d_pred, n_codes=len(e), episode_ids=ep,
                               topk=topk, n_boot=n_boot, seed=seed)
        for k in (n.CE, n.IG, n.IG_RATIO, n.UNCOND_CE, n.HEAD, n.N_ITEMS, n.N_EPISODES, n.N_BOOT):
            for suffix in ("", n.LO, n.HI):
                codes.pop(k + suffix, None)
        out.update(codes)
        for suffix in ("", n.LO, n.HI):
            out[n.NEAREST_ACC + suffix] = codes[n.ACC + suffix]
            out[n.NEAREST_LIFT + suffix] = codes[n.LIFT + suffix]
        out.update(margin_summary(decoding_margin(gc, yh, e, code_metric), e, code_metric))
    return {prefix + k: v for k, v in out.items()}
