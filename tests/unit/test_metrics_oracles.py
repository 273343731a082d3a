"""hlrp_core.metrics against independent implementations (scikit-learn, statsmodels, scipy, brute force).

scikit-learn and statsmodels are in the dev extra (pyproject.toml, environment.yml): imported at module level, so a
missing oracle fails this file instead of passing it silently.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from hlrp_core import metrics as M
from hlrp_core.metrics.kmeans import kmeans
from hlrp_core.metrics.stage1 import nmi


@pytest.mark.parametrize("seed", range(5))
def test_nmi_matches_sklearn_geometric(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 8, 500)
    y = np.where(rng.random(500) < 0.6, x % 5, rng.integers(0, 5, 500))
    assert nmi(x, y) == pytest.approx(normalized_mutual_info_score(x, y, average_method="geometric"), abs=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_js_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    p, q = rng.random(16) ** 3, rng.random(16) ** 3
    p[:3] = 0.0                                            # zero bins on one side
    assert M.js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-12)


@pytest.mark.parametrize("k,n", [(0, 20), (3, 20), (17, 20), (20, 20), (512, 1000), (1, 7)])
def test_wilson_matches_statsmodels(k, n):
    lo, hi = M.wilson_interval(k, n)
    slo, shi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (lo, hi) == pytest.approx((slo, shi), abs=1e-9)


def test_episode_bootstrap_covers_the_true_mean_about_95_percent():
    """Items correlated within episodes (episode effect + item noise): the episode-cluster percentile bootstrap
    covers the true mean in ~95% of 200 simulated data sets; an item-level interval (statsmodels' t interval that
    ignores the clustering) covers far less -- which is why the bootstrap resamples episodes."""
    rng = np.random.default_rng(0)
    n_ep, per = 40, 10
    ep = np.repeat(np.arange(n_ep), per)
    cover = naive = 0
    reps = 200
    for r in range(reps):
        y = 1.0 + np.repeat(rng.normal(0, 1.0, n_ep), per) + rng.normal(0, 0.5, n_ep * per)
        ci = M.cluster_bootstrap(lambda i: y[i].mean(), ep, n_boot=300, seed=r)
        cover += ci.lo <= 1.0 <= ci.hi
        lo, hi = DescrStatsW(y).tconfint_mean(0.05)
        naive += lo <= 1.0 <= hi
    assert 0.89 <= cover / reps <= 0.99, cover / reps
    assert naive / reps < 0.75, naive / reps


def test_episode_bootstrap_width_matches_statsmodels_on_independent_items():
    """One item per episode: the bootstrap CI of a mean has about the width of the t interval."""
    y = np.random.default_rng(1).normal(size=400)
    ci = M.cluster_bootstrap(lambda i: y[i].mean(), np.arange(400), n_boot=2000, seed=0)
    lo, hi = DescrStatsW(y).tconfint_mean(0.05)
    assert (ci.hi - ci.lo) == pytest.approx(hi - lo, rel=0.1)


@pytest.mark.parametrize("values", [[1, 2, 3, 5, 4], [3, 1, 4, 1.5, 5, 9], [2, 1, 3, 4], [5, 4, 3, 2, 1, 0.5, 0]])
def test_trend_p_is_the_brute_force_exact_permutation_p(values):
    steps = np.arange(len(values)) * 100.0
    t = M.trend_test(steps, values)
    from scipy.stats import spearmanr

    rho = spearmanr(steps, values).statistic
    perms = [spearmanr(steps, np.asarray(values)[list(p)]).statistic
             for p in itertools.permutations(range(len(values)))]
    exact = np.mean(np.abs(perms) >= abs(rho) - 1e-12)
    assert t["rho"] == pytest.approx(rho)
    assert t["p"] == pytest.approx(exact, abs=1e-9)
    assert "exact" in t["method"]


def test_trend_p_for_rho_09_on_5_checkpoints_is_not_the_asymptotic_one():
    t = M.trend_test([1, 2, 3, 4, 5], [1, 2, 3, 5, 4])
    assert t["rho"] == pytest.approx(0.9) and t["p"] == pytest.approx(10 / 120)   # scipy's asymptotic p: 0.037


@pytest.mark.parametrize("seed", range(3))
def test_kmeans_reaches_sklearn_inertia(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (8, 4))
    x = centres[rng.integers(0, 8, 600)] + rng.normal(0, 0.6, (600, 4))
    ours = kmeans(x, 8, seed=seed)
    sk = KMeans(8, n_init=11, random_state=seed).fit(x)
    assert ours.inertia <= 1.02 * sk.inertia_ / len(x)
    assert nmi(ours.labels, sk.labels_) > 0.95
