"""hlrp_core.metrics building blocks against closed forms, scipy and constructed cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as sp_entropy

from hlrp_core import metrics as M
from hlrp_core.metrics import names as n

LN2 = np.log(2)


def test_package_imports_neither_torch_nor_tf():
    code = "import sys, hlrp_core.metrics; bad=[m for m in ('torch','tensorflow') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    pkg = Path(M.__file__).parent
    for f in pkg.glob("*.py"):
        text = f.read_text()
        assert "import torch" not in text and "import tensorflow" not in text, f


# --- histograms -------------------------------------------------------------------------------------------------------
def test_js_of_identical_is_zero_and_bounded_by_ln2():
    rng = np.random.default_rng(0)
    p = rng.random(16)
    assert M.js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert M.js_divergence([1, 0, 0], [0, 0, 5]) == pytest.approx(LN2)
    for _ in range(50):
        a, b = rng.random(8) * (rng.random(8) > 0.5), rng.random(8)
        a[0] += 0.1
        assert 0.0 <= M.js_divergence(a, b) <= LN2 + 1e-12


def test_js_and_kl_agree_with_scipy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, q = rng.random(10), rng.random(10)
        assert M.js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2, rel=1e-9)
        assert M.kl_divergence(p, q, alpha=0.0) == pytest.approx(sp_entropy(p, q), rel=1e-9)
    counts_p, counts_q = np.array([5, 0, 3, 2]), np.array([0, 4, 4, 2])
    sm_p, sm_q = counts_p + 0.5, counts_q + 0.5
    assert M.kl_divergence(counts_p, counts_q, alpha=0.5) == pytest.approx(sp_entropy(sm_p, sm_q), rel=1e-9)
    assert np.isfinite(M.kl_divergence(counts_p, counts_q, alpha=0.5))


def test_per_position_js_and_codes_helpers():
    gt = np.array([[0, 1], [0, 1], [1, 1], [1, 1]])
    pr = np.array([[0, 0], [0, 0], [1, 0], [1, 0]])
    js = M.per_position_js(gt, pr, 2)
    assert js[0] == pytest.approx(0.0) and js[1] == pytest.approx(LN2)
    assert M.js_codes(gt, gt, 2) == 0.0
    with pytest.raises(ValueError):
        M.histogram(np.array([0, 3]), 2)


def test_js_floor_matches_spec_simulation_and_theory():
    # spec §1: K=16, N=1000 uniform -> mean JS floor 0.0038; theory (K-1)/(4N) = 0.00375
    rng = np.random.default_rng(2)
    sims = [M.js_divergence(np.bincount(rng.integers(0, 16, 1000), minlength=16),
                            np.bincount(rng.integers(0, 16, 1000), minlength=16)) for _ in range(300)]
    assert np.mean(sims) == pytest.approx(0.0038, rel=0.1)
    assert M.js_floor_theory(16, 1000) == pytest.approx(15 / 4000)


def test_split_half_floor_of_gt_against_itself_has_zero_excess():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 8, 2000)
    ep = np.repeat(np.arange(100), 20)
    half = M.episode_halves(ep, seed=0)
    assert 0.4 < half.mean() < 0.6
    floor, score, excess = M.split_half_js(gt, gt, half, 8)
    assert floor > 0 and excess == pytest.approx(0.0)
    _, _, excess_const = M.split_half_js(gt, np.zeros_like(gt), half, 8)
    assert excess_const > 0.3


# --- classification ---------------------------------------------------------------------------------------------------
def test_accuracy_exact_match_topk_and_ce():
    gt = np.array([[0, 1], [2, 3], [1, 1]])
    pr = np.array([[0, 1], [2, 0], [0, 1]])
    assert M.token_accuracy(gt, pr) == pytest.approx(4 / 6)
    np.testing.assert_allclose(M.per_position_accuracy(gt, pr), [2 / 3, 2 / 3])
    assert M.sequence_exact_match(gt, pr) == pytest.approx(1 / 3)
    logits = np.zeros((3, 2, 4))
    logits[..., 3] = 2.0
    logits[..., 2] = 1.0   # ranking: 3, 2, then 0/1
    assert M.topk_hit_rate(gt, logits, 1) == pytest.approx(1 / 6)          # only the single gt==3
    assert M.topk_hit_rate(gt, logits, 2) == pytest.approx(2 / 6)          # + gt==2
    assert M.topk_hit_rate(gt, logits, 4) == 1.0
    assert M.cross_entropy(gt, np.zeros((3, 2, 4))) == pytest.approx(np.log(4))


def test_nearest_code_decoding_and_margin():
    codebook = np.eye(3) * 2.0                                  # 3 codes in 3-d, pairwise distance 2*sqrt(2)
    gt = np.array([0, 1, 2, 2])
    vec = codebook[gt] + 0.1
    vec[3] = 0.6 * codebook[1] + 0.4 * codebook[2]              # wrong decode, GT second nearest
    dec = M.nearest_code_decode(vec, codebook)
    np.testing.assert_array_equal(dec, [0, 1, 2, 1])
    margin = M.decoding_margin(gt, vec, codebook).ravel()
    assert (margin[:3] < 0).all() and margin[3] > 0
    summ = M.margin_summary(margin, codebook)
    assert summ["margin_median"] < 0 and 0 <= summ["near_miss_share"] <= 1
    hits = M.topk_nearest_hits(gt, vec, codebook, k=2)
    assert hits.all()
    cos_dec = M.nearest_code_decode(vec * 7.0, codebook, metric="cosine")
    np.testing.assert_array_equal(cos_dec, dec)


# --- baselines / collapse ---------------------------------------------------------------------------------------------
def test_blind_baselines_closed_forms():
    gt = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert M.majority_accuracy(gt, 4) == pytest.approx(0.5)
    assert M.marginal_accuracy(gt, 4) == pytest.approx(0.25 + 0.09 + 0.04)
    assert M.marginal_accuracy(gt, 4) <= M.majority_accuracy(gt, 4)
    assert M.majority_topk(gt, 4, 2) == pytest.approx(0.8)
    assert M.uniform_accuracy(4) == 0.25 and M.uniform_topk(4, 2) == 0.5
    assert M.unconditional_ce(gt, 4) == pytest.approx(sp_entropy([0.5, 0.3, 0.2]))
    assert M.uniform_ce(4) == pytest.approx(np.log(4))
    np.testing.assert_array_equal(M.majority_predictor(gt, 4), np.zeros(100))
    big = np.random.default_rng(0).choice(3, 20000, p=[0.5, 0.3, 0.2])
    samp = M.marginal_sampler(big, 3, seed=1)
    assert M.token_accuracy(big, samp) == pytest.approx(0.38, abs=0.015)


def test_collapse_indicators():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 8, (1000, 2))
    assert M.entropy(np.bincount(gt.ravel())) == pytest.approx(sp_entropy(np.bincount(gt.ravel())))
    assert M.perplexity([1, 1, 1, 1]) == pytest.approx(4.0)
    const = np.zeros_like(gt)
    assert M.unique_ratio(gt, const) == pytest.approx(1 / 8)
    assert M.perplexity_ratio(gt, const, 8) < 0.15
    assert M.entropy_ratio(gt, gt, 8) == pytest.approx(1.0)
    assert M.top1_share(const, 8) == 1.0
    div = M.per_position_diversity(np.stack([gt[:, 0], np.zeros(1000, int)], 1), 8)
    assert div["unique"][0] == 8 and div["unique"][1] == 1 and div["entropy"][1] == 0
    use = M.codebook_usage(gt, 16)
    assert use["usage"] == 0.5 and use["n_used"] == 8
    assert M.expected_unique(4096, 256) == pytest.approx(248, abs=1)   # spec §4
    assert M.expected_unique(4096, 1000) == pytest.approx(887, abs=1)


# --- vectors ----------------------------------------------------------------------------------------------------------
def test_vector_metrics():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(500, 16))
    assert M.mse(y, y) == 0 and M.mae(y, y) == 0 and M.cosine(y, y) == pytest.approx(1.0)
    assert M.r2_score(y, y) == 1.0
    mean_pred = np.broadcast_to(y.mean(0), y.shape)
    assert M.r2_score(y, mean_pred) == pytest.approx(0.0, abs=1e-12)
    rand = y[rng.permutation(500)]                        # a random other entry: R2 about -1
    assert M.r2_score(y, rand) == pytest.approx(-1.0, abs=0.15)
    assert M.mse(y, 2 * y) == pytest.approx(np.mean(y**2))
    base = M.mean_vector_baseline(y)
    assert base["mse"] == pytest.approx(y.var(0).mean())
    assert M.variance_ratio(y, mean_pred) == pytest.approx(0.0, abs=1e-12)
    assert M.variance_ratio(y, y) == pytest.approx(1.0)
    seeds = np.stack([y + rng.normal(size=y.shape) for _ in range(5)])  # output variance from noise = 1 per dim
    assert M.seed_variance(y, seeds) == pytest.approx(1.0, rel=0.1)


# --- stats ------------------------------------------------------------------------------------------------------------
def test_wilson_closed_form_and_bounds():
    lo, hi = M.wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / 13.8415, abs=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(200):
        nn = int(rng.integers(1, 500))
        k = int(rng.integers(0, nn + 1))
        lo, hi = M.wilson_interval(k, nn)
        assert 0.0 <= lo <= k / nn <= hi <= 1.0
    assert np.isnan(M.wilson_interval(0, 0)[0])


def test_cluster_bootstrap_is_wider_for_correlated_episodes():
    rng = np.random.default_rng(0)
    ep = np.repeat(np.arange(40), 25)
    x = rng.normal(size=40)[ep] + 0.1 * rng.normal(size=1000)     # strongly clustered
    stat = lambda i: x[i].mean()                                   # noqa: E731
    clustered = M.cluster_bootstrap(stat, ep, n_boot=400)
    naive = M.cluster_bootstrap(stat, None, n_items=1000, n_boot=400)
    assert clustered.lo < clustered.value < clustered.hi
    assert (clustered.hi - clustered.lo) > 3 * (naive.hi - naive.lo)
    # clustered SE ~ 1/sqrt(40): half-width about 1.96/sqrt(40) = 0.31
    assert clustered.half_width == pytest.approx(1.96 / np.sqrt(40), rel=0.3)
    again = M.cluster_bootstrap(stat, ep, n_boot=400)
    assert (again.lo, again.hi) == (clustered.lo, clustered.hi)      # deterministic


def test_resampler_returns_whole_episodes():
    ep = np.array([3, 3, 7, 9, 9, 9])
    res = M.EpisodeResampler(ep, n_boot=20, seed=1)
    assert res.n_episodes == 3
    for idx in res:
        counts = np.bincount(ep[idx], minlength=10)
        assert all(counts[e] % np.sum(ep == e) == 0 for e in (3, 7, 9))


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.random(600) < 0.7
    b = rng.random(600) < 0.5
    res = M.paired_bootstrap(lambda i: a[i].mean(), lambda i: b[i].mean(), n_items=600, n_boot=400)
    assert res.lo > 0 and res.significant and res.p_positive > 0.99
    same = M.paired_bootstrap(lambda i: a[i].mean(), lambda i: a[i].mean(), n_items=600, n_boot=100)
    assert same.diff == 0 and same.lo == 0 and same.hi == 0 and not same.significant


def test_trend_test_and_slope():
    out = M.trend_test([1, 2, 3, 4, 5], [0.1, 0.2, 0.25, 0.3, 0.5])
    assert out["rho"] == pytest.approx(1.0) and out["p"] < 0.05 and out["min_p"] == pytest.approx(2 / 120)
    k = M.trend_test([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], method="kendall")
    assert k["rho"] == pytest.approx(-1.0)
    assert np.isnan(M.trend_test([1, 2], [1, 2])["rho"])
    rng = np.random.default_rng(0)
    ys = [rng.random(300) < p for p in (0.3, 0.4, 0.5, 0.6)]
    slope = M.bootstrap_log_slope([lambda i, y=y: y[i].mean() for y in ys], [10, 100, 1000, 10000], n_items=300,
                                  n_boot=200)
    assert slope.lo > 0
    ci = M.seed_mean_ci([1.0, 2.0, 3.0])
    assert ci.value == 2.0 and ci.hi - ci.value == pytest.approx(4.303 * 1 / np.sqrt(3), rel=1e-3)
