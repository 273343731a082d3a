"""Calibration suite: constructed learning / collapsed / random-like runs of both stages, judged through both paths --
during training (``VerdictCallback`` after each validation) and afterwards (``evaluate_run`` + ``overall_verdict``,
what notebook 30 calls) -- every verdict right and the two paths equal at every checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from verdict_cases import stage1_npz, stage2_npz

from hlrp_core.analysis import learning as L
from hlrp_core.metrics import predictions as P
from hlrp_core.training.verdict import VerdictCallback

SETTINGS = P.VerdictSettings(n_boot=200)
STEPS = (10, 20, 30)


class FakeRun:
    def __init__(self, d: Path):
        self.dir, self.rows, self.log = d, {}, logging.getLogger("test.calibration")

    def record(self, m: dict) -> None:
        self.rows.update(m)


def _write(run_dir: Path, stage: str, kind: str, i: int, step: int) -> None:
    if stage == "stage1":
        # replaced counts fall (healthy); the collapsed case's codebook is one code anyway
        stage1_npz(run_dir, step, kind, seed=0, replacement=(i + 1, 3 - i))
    elif kind == "improving":
        stage2_npz(run_dir, step, kind, keep=0.4 + 0.25 * i, pred_seed=100 + i)
    else:
        stage2_npz(run_dir, step, kind, mode=stage, pred_seed=100 + i)


CASES = [("stage1", "aligned", "learning"), ("stage1", "collapsed", "collapsed"),
         ("stage1", "ignored", "random-like"), ("codes", "improving", "learning"),
         ("codes", "constant", "collapsed"), ("codes", "marginal", "random-like"),
         ("flow", "perfect", "learning"), ("flow", "constant", "collapsed"), ("flow", "marginal", "random-like")]


@pytest.mark.parametrize("stage,kind,word", CASES)
def test_both_paths_give_the_right_verdict(tmp_path, stage, kind, word):
    run = FakeRun(tmp_path)
    cb = VerdictCallback(run, SETTINGS)
    during = {}
    for i, step in enumerate(STEPS):                       # the training path: one validation after another
        _write(tmp_path, stage, kind, i, step)
        trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, global_step=step, logger=None)
        cb.on_validation_end(trainer, SimpleNamespace())
        assert run.rows["verdict/step"] == step
        during[step] = (run.rows["verdict"], run.rows["verdict_evidence"])
    table = L.evaluate_run(tmp_path, settings=SETTINGS)    # the notebook-30 path, afterwards
    after = {int(r["step"]): (r["verdict"], r["verdict_evidence"]) for _, r in table.iterrows()}
    assert after == during                                 # same word and the same evidence at every checkpoint
    overall, evidence = L.overall_verdict(table)
    assert overall == word, evidence
    assert L.summary_metrics(table, run_dir=tmp_path).get("analysis/agrees_with_training") is None  # no metrics.json


def test_improving_run_gets_a_paired_trend_and_a_degrading_one_is_not_learning(tmp_path):
    """Stage 2: the latest-minus-first paired bootstrap enters the verdict on both paths."""
    up, down = tmp_path / "up", tmp_path / "down"
    for i, step in enumerate(STEPS):
        stage2_npz(up, step, "improving", keep=0.4 + 0.25 * i, pred_seed=100 + i)
        stage2_npz(down, step, "improving", keep=0.95 - 0.3 * i, pred_seed=100 + i)
    last_up = P.score_latest(up, SETTINGS)
    assert last_up["trend_diff_lo"] > 0 and last_up["verdict"] == "learning"
    last_down = P.score_latest(down, SETTINGS)
    assert last_down["trend_diff_hi"] < 0 and last_down["verdict"] != "learning", last_down["verdict_evidence"]
    assert "degrading" in last_down["verdict_evidence"]
    assert L.evaluate_run(down, settings=SETTINGS).iloc[-1]["verdict"] == last_down["verdict"]


def test_trend_evidence_names_the_exact_test(tmp_path):
    for i, step in enumerate((10, 20, 30, 40, 50)):
        stage2_npz(tmp_path, step, "improving", keep=0.3 + 0.15 * i, pred_seed=100 + i)
    _, evidence = L.overall_verdict(L.evaluate_run(tmp_path, settings=SETTINGS))
    assert "exact over 120 orderings" in evidence and "rho=1.00" in evidence
    assert "p=0.0167" in evidence                          # 2/5!: the smallest exact two-sided p


def test_dashboard_shows_the_recorded_verdict_or_scores_the_newest_file(tmp_path):
    """``current_verdict`` (the dashboard's call): the training's recorded verdict when it belongs to the newest
    prediction file; a newer file without a recorded verdict (run killed in between) is scored by the same scorer."""
    stage2_npz(tmp_path, 10, "constant")
    recorded = {"verdict": "collapsed", "verdict_evidence": "collapsed: recorded", "verdict/step": 10}
    cur = P.current_verdict(tmp_path, recorded, SETTINGS)
    assert cur["verdict_evidence"] == "collapsed: recorded" and cur["source"].startswith("metrics.json")
    stage2_npz(tmp_path, 20, "perfect")
    cur = P.current_verdict(tmp_path, recorded, SETTINGS)
    assert cur["verdict"] == "learning" and cur["step"] == 20 and "scored now" in cur["source"]
    assert cur["verdict_evidence"] == P.score_latest(tmp_path, SETTINGS)["verdict_evidence"]
    assert P.current_verdict(tmp_path / "none", {})["verdict"] == "(none recorded)"
