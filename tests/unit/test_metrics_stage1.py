"""Stage-1 action-alignment metrics: NMI and the episode-split linear probe, with shuffled controls."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy as sp_entropy

from hlrp_core import metrics as M
from hlrp_core.metrics import names as n
from hlrp_core.metrics.stage1 import bin_actions, mutual_information, nmi, one_hot_codes


@pytest.fixture(scope="module")
def toy():
    """5 discrete actions (stay / up / down / left / right) as 2-d moves; 40 episodes of 25 steps."""
    rng = np.random.default_rng(0)
    moves = np.array([[0, 0], [0, 2], [0, -2], [-2, 0], [2, 0]], float)
    a_id = rng.integers(0, 5, 1000)
    actions = moves[a_id] + 0.01 * rng.normal(size=(1000, 2))
    ep = np.repeat(np.arange(40), 25)
    return a_id, actions, ep, rng


def test_mutual_information_matches_entropy_identity():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, 5000)
    y = (x + (rng.random(5000) < 0.3)) % 4
    i, hx, hy = mutual_information(x, y)
    joint = np.bincount(x * 4 + y, minlength=16)
    assert hx == pytest.approx(sp_entropy(np.bincount(x)))
    assert i == pytest.approx(sp_entropy(np.bincount(x)) + sp_entropy(np.bincount(y)) - sp_entropy(joint))
    assert mutual_information(x, x)[0] == pytest.approx(hx)


def test_action_nmi_aligned_vs_random(toy):
    a_id, noisy, ep, rng = toy
    actions = np.round(noisy)                                     # exactly discrete: bins = the distinct values
    codes = (a_id + 3) % 8                                        # a relabelled action: perfect alignment
    assert M.action_nmi(codes, actions, n_bins=5) > 0.55          # per-dim NMI: each dim sees 3 of 5 moves
    assert M.action_nmi(codes, noisy, n_bins=5) > 0.4             # quantile bins split the noisy "0" cluster
    assert M.action_nmi(codes, actions, n_bins=5, joint=True) == pytest.approx(1.0, abs=0.02)
    rand = rng.integers(0, 8, 1000)
    assert M.action_nmi(rand, actions, n_bins=5, joint=True) < 0.05
    assert M.action_nmi_shuffled(codes, actions, n_bins=5, joint=True) < 0.05
    tuples = np.stack([codes, np.zeros_like(codes)], 1)          # (N, S) tuple with a constant slot
    assert M.action_nmi(tuples, actions, n_bins=5, joint=True) == pytest.approx(1.0, abs=0.02)
    b = bin_actions(np.random.default_rng(0).normal(size=(1000, 1)), 4)
    assert np.bincount(b[:, 0]).tolist() == [250, 250, 250, 250]


def test_linear_probe_by_episode(toy):
    a_id, actions, ep, rng = toy
    feats = actions @ rng.normal(size=(2, 16)) + 0.05 * rng.normal(size=(1000, 16))
    r2 = M.linear_probe_r2(feats, actions, ep, seed=0)
    assert r2 > 0.95
    assert M.linear_probe_r2_shuffled(feats, actions, ep, seed=0) < 0.05
    assert M.linear_probe_r2(rng.normal(size=(1000, 16)), actions, ep) < 0.05
    # integer codes are one-hot encoded
    assert M.linear_probe_r2(a_id[:, None], actions, ep) > 0.95
    out = M.linear_probe(feats, actions, ep, seed=0)
    assert out["n_test"] > 0 and out["n_train"] > 0 and out["n_test"] % 25 == 0   # whole episodes held out
    assert np.isnan(M.linear_probe_r2(feats, actions, np.zeros(1000)))           # one episode: no split
    assert one_hot_codes(np.array([[0, 1], [1, 0]]), 2).tolist() == [[1, 0, 0, 1], [0, 1, 1, 0]]


def test_stage1_action_metrics_and_spread(toy):
    a_id, actions, ep, rng = toy
    out = M.stage1_action_metrics(a_id, actions, ep, n_bins=5)
    assert out[n.ACTION_NMI_EXCESS] > 0.5 and out[n.PROBE_R2_EXCESS] > 0.9
    assert out[n.WITHIN_CODE_SPREAD] < 0.01
    assert M.within_code_spread(rng.integers(0, 8, 1000), actions) > 0.9


def test_reconstruction_metrics():
    rng = np.random.default_rng(0)
    frames = rng.random((200, 4, 4))
    nxt = np.roll(frames, 1, axis=1)
    good = nxt + 0.01 * rng.normal(size=nxt.shape)
    out = M.stage1_reconstruction_metrics(good, nxt, frames, pred_next_shuffled=frames, n_boot=200)
    assert out[n.hi(n.COPY_RATIO)] < 0.05 and out[n.CLOSER_TO_FUTURE] == 1.0 and out[n.lo(n.DELTA_PSNR)] > 10


def test_nmi_limits_follow_sklearn():
    """A collapsed codebook (one code) gets NMI 0, not NaN, so metrics.json stays finite; both constant -> 1."""
    actions = np.repeat(np.arange(4), 10)[:, None].astype(float)
    assert M.action_nmi(np.zeros(40, int), actions) == 0.0
    assert nmi(np.zeros(5, int), np.zeros(5, int)) == 1.0
    from sklearn.metrics import normalized_mutual_info_score as sk   # dev extra: a missing oracle fails the test

    assert nmi(np.zeros(40, int), actions[:, 0].astype(int)) == sk(actions[:, 0], np.zeros(40), average_method="geometric")


def test_psnr_of_one_mse_matches_the_per_item_form():
    """``psnr`` (training's ``val/recon_psnr``) is 10 log10(1 / MSE) and agrees with ``psnr_items`` on one item."""
    from hlrp_core.metrics.stage1 import psnr, psnr_items

    rng = np.random.default_rng(0)
    target = rng.random((1, 3, 8, 8))
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    mse = float(((pred - target) ** 2).mean())
    assert psnr(mse) == pytest.approx(float(psnr_items(pred, target)[0]), rel=1e-12)
    assert psnr(0.01) == pytest.approx(20.0) and psnr(0.0) == pytest.approx(120.0)  # MSE floored at 1e-12
