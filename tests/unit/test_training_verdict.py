"""VerdictCallback / metrics.predictions.score_file on npz files written in the Stage-1 and Stage-2 modules' formats."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from verdict_cases import stage1_npz as _stage1_npz
from verdict_cases import stage2_npz as _stage2_npz

from hlrp_core.metrics import predictions as P
from hlrp_core.training import verdict as V

class FakeRun:
    def __init__(self, d: Path):
        self.dir, self.rows, self.log = d, {}, logging.getLogger("test.verdict")

    def record(self, m: dict) -> None:
        self.rows.update(m)


class FakeLogger:
    def __init__(self):
        self.logged = []

    def log_metrics(self, m, step=None):
        self.logged.append((step, dict(m)))


@pytest.mark.parametrize("kind,word", [("aligned", "learning"), ("collapsed", "collapsed"),
                                       ("ignored", "random-like")])
def test_stage1_file_verdicts(tmp_path, kind, word):
    m = P.score_file(_stage1_npz(tmp_path, 10, kind), P.VerdictSettings(n_boot=200))
    w, ev = m["verdict"], m["verdict_evidence"]
    assert m["head"] == "stage1"
    assert w == word, ev
    assert ev.startswith(word)


@pytest.mark.parametrize("mode", ["codes", "flow"])
@pytest.mark.parametrize("kind,word", [("perfect", "learning"), ("marginal", "random-like"),
                                       ("constant", "collapsed")])
def test_stage2_file_verdicts(tmp_path, mode, kind, word):
    m = P.score_file(_stage2_npz(tmp_path, 10, kind, mode), P.VerdictSettings(n_boot=200))
    w, ev = m["verdict"], m["verdict_evidence"]
    assert m["head"] == ("token" if mode == "codes" else "vector")
    assert w == word, ev


def test_callback_records_and_logs_only_the_current_step(tmp_path):
    run = FakeRun(tmp_path)
    cb = V.VerdictCallback(run, P.VerdictSettings(n_boot=100))
    lg = FakeLogger()
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=20, logger=lg)
    module = SimpleNamespace(replacement={"events": 0, "last_replaced": 0})

    cb.on_validation_end(trainer, module)                         # no file at all: nothing recorded
    assert run.rows == {}
    _stage1_npz(tmp_path, 10, "aligned")
    cb.on_validation_end(trainer, module)                         # stale file (step 10 != 20): skipped
    assert run.rows == {}

    _stage1_npz(tmp_path, 20, "aligned")
    cb.on_validation_end(trainer, module)
    assert run.rows["verdict"] == "learning"
    assert run.rows["verdict_evidence"].startswith("learning:")
    assert run.rows["verdict/step"] == 20
    assert run.rows["verdict/copy_ratio_hi"] < 1 < 1.0 + run.rows["verdict/delta_psnr_lo"]
    step, logged = lg.logged[-1]
    assert step == 20 and logged["verdict/code"] == 0 and "verdict/delta_psnr_lo" in logged

    trainer.global_step = 30
    _stage2_npz(tmp_path, 30, "constant")
    cb.on_validation_end(trainer, SimpleNamespace())
    assert run.rows["verdict"] == "collapsed" and run.rows["verdict/step"] == 30
    assert run.rows["verdict/head"] == "token" and "verdict/lift_lo" in run.rows

    trainer.sanity_checking = True                                # sanity check: never recorded
    trainer.global_step = 40
    _stage2_npz(tmp_path, 40, "perfect")
    cb.on_validation_end(trainer, SimpleNamespace())
    assert run.rows["verdict/step"] == 30


def test_callback_survives_a_broken_file(tmp_path):
    run = FakeRun(tmp_path)
    (tmp_path / "val_predictions").mkdir()
    np.savez(tmp_path / "val_predictions" / "step_000005.npz", something=np.arange(3))
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=5, logger=None)
    V.VerdictCallback(run).on_validation_end(trainer, SimpleNamespace())
    assert run.rows == {}


def test_replaced_rising_makes_stage1_collapsed(tmp_path):
    run = FakeRun(tmp_path)
    cb = V.VerdictCallback(run, P.VerdictSettings(n_boot=100))
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=0, logger=None)
    for i, replaced in enumerate([1, 3, 7]):
        trainer.global_step = 10 * (i + 1)
        _stage1_npz(tmp_path, trainer.global_step, "aligned", replacement=(i + 1, replaced))
        cb.on_validation_end(trainer, SimpleNamespace())
    assert run.rows["verdict"] == "collapsed", run.rows["verdict_evidence"]
    assert "replaced_rising" in run.rows["verdict_evidence"]
    # the counters live in the files, so a later reader (notebook 30) reaches the same verdict
    assert P.score_latest(tmp_path, P.VerdictSettings(n_boot=100))["verdict"] == "collapsed"


def test_shuffled_labeller_keeps_the_marginal_and_breaks_the_pairing():
    import torch

    from hlrp_core.training.policy.label_ablation import ShuffledLabeller
    from hlrp_core.training.policy.labels import StandInLabeller

    inner = StandInLabeller()
    lab = ShuffledLabeller(inner, seed=0)
    frames = torch.randint(0, 255, (64, 3, 2, 32, 32), dtype=torch.uint8)
    c0, v0 = inner.label(frames)
    c1, v1 = lab.label(frames)
    c2, _ = lab.label(frames)
    assert sorted(map(tuple, c0.tolist())) == sorted(map(tuple, c1.tolist()))      # same multiset of labels
    assert (c1 != c0).any() and (c2 != c1).any()                                    # new pairing every call
    assert torch.equal(v1, inner.codebook[c1])                                      # rows stay consistent
    assert lab.identity["hash"].endswith("-shuffled") and lab.spec == inner.spec
    assert ShuffledLabeller(inner, seed=0).label(frames)[0].equal(c1)               # deterministic


def test_label_ablation_knob_wraps_the_labeller(tmp_path):
    """``model.laq.label_ablation=shuffled`` (the issue-6 control run from the notebook) wraps the LAQ labeller in
    ``ShuffledLabeller``; a typo is a ConfigError naming the knob before anything is built."""
    from hlrp_core.config import ConfigError, load
    from hlrp_core.training.policy.label_ablation import ShuffledLabeller
    from hlrp_core.training.policy.fit import build_policy_module
    from hlrp_core.training.run_handle import DirRun

    cfg = load("policy_tiny", ["model.laq.label_ablation=shuffled"], smoke=True)
    module = build_policy_module(cfg, DirRun(tmp_path))
    assert isinstance(module.labeller, ShuffledLabeller)
    plain = build_policy_module(load("policy_tiny", [], smoke=True), DirRun(tmp_path / "plain"))
    assert not isinstance(plain.labeller, ShuffledLabeller)
    with pytest.raises(ConfigError, match="model.laq.label_ablation"):
        load("policy_tiny", ["model.laq.label_ablation=shuffle"])


def test_verdict_thresholds_come_from_the_config():
    """``training.verdict.*`` reaches the rule: 10 episodes are "insufficient data" under the spec's 30, and
    ``learning`` once a researcher lowers ``min_episodes``; bad values fail at load time, naming the knob."""
    from hlrp_core import metrics as M
    from hlrp_core.config import ConfigError, load
    from hlrp_core.metrics import names as n
    from hlrp_core.training.verdict import thresholds_from_config

    rng = np.random.default_rng(0)
    ep = np.repeat(np.arange(10), 20)
    gt = rng.integers(0, 4, size=(len(ep), 1))
    m = M.evaluate_codes(gt, pred_codes=gt.copy(), episode_ids=ep, n_codes=4, n_boot=200)
    default = thresholds_from_config(load("policy_tiny").training.verdict)
    assert default == M.VerdictThresholds()
    assert M.verdict(m, thresholds=default)[0] == n.INCONCLUSIVE
    low = load("policy_tiny", ["training.verdict.min_episodes=5", "training.verdict.random_tolerance=0.05"])
    th = thresholds_from_config(low.training.verdict)
    assert th.min_episodes == 5 and th.random_tolerance[n.LIFT] == 0.05
    assert M.verdict(m, thresholds=th)[0] == n.LEARNING
    with pytest.raises(ConfigError, match="training.verdict.min_episodes=-1"):
        load("policy_tiny", ["training.verdict.min_episodes=-1"])
