"""Analysis of real-format run directories: val_predictions/*.npz -> per-step verdicts, verdicts.csv, comparisons,
and notebook 30 end to end through `hlrp run` on a given run directory."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hlrp_core import runs
from hlrp_core.analysis import learning as L
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration
B = 200


def _write_policy_style_run(root: Path, kind: str, steps=(50, 100, 150, 200, 250), seed=0) -> Path:
    """A run directory shaped like the Stage-2 policy module writes it (string episode ids, dataset names, frame
    indices, an empty pred_vectors for a token-only head, the codebook), plus timeseries/metrics/config/status."""
    rng = np.random.default_rng(seed)
    run = root / f"2026-01-01_00-00-00_{kind}"
    (run / "val_predictions").mkdir(parents=True)
    (run / "ckpt").mkdir()
    (run / "ckpt" / "last.ckpt").write_bytes(b"not a real checkpoint")
    n_ep, per, S, K = 36, 10, 4, 8
    p = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
    gt = rng.choice(K, size=(n_ep * per, S), p=p)
    ep = np.array([f"fetch/episode_{e:03d}" for e in np.repeat(np.arange(n_ep), per)])
    codebook = rng.normal(size=(K, 8)).astype(np.float32)
    for j, step in enumerate(steps):
        if kind == "learning":
            pred = np.where(rng.random(gt.shape) < 0.15 * (j + 1), gt, rng.choice(K, size=gt.shape, p=p))
        elif kind == "collapsed":
            pred = np.full_like(gt, 2)
        else:
            pred = rng.choice(K, size=gt.shape, p=p)
        np.savez_compressed(run / "val_predictions" / f"step_{step:06d}.npz", gt_codes=gt, pred_codes=pred,
                            gt_vectors=codebook[gt], pred_vectors=np.zeros((0,)), episode_ids=ep,
                            dataset_names=np.array(["fetch"] * len(ep)), frame_idx=np.arange(len(ep)),
                            codebook=codebook, step=np.array(step), mode=np.array("token"))
    (run / "val_predictions" / ".step_000300.tmp.npz").write_bytes(b"partial")   # an in-flight write: ignored
    (run / "timeseries.csv").write_text("step,val/loss\n" + "".join(f"{s},{1.0 - 0.001 * s}\n" for s in steps))
    (run / "metrics.json").write_text('{"val/step": %d}\n' % steps[-1])
    (run / "config.yaml").write_text("experiment:\n  name: fake\n")
    (run / "status").write_text("DONE\n")
    return run


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_runs")
    return {k: _write_policy_style_run(root, k, seed=i) for i, k in enumerate(("learning", "collapsed", "random"))}


def test_verdicts_per_step_and_csv(fake_runs, tmp_path):
    expected_last = {"learning": "learning", "collapsed": "collapsed", "random": "random-like"}
    for kind, run in fake_runs.items():
        table = L.evaluate_run(run, n_boot=B)
        assert table["step"].tolist() == [50, 100, 150, 200, 250]
        assert table.iloc[-1]["verdict"] == expected_last[kind], table.iloc[-1]["verdict_evidence"]
        assert L.overall_verdict(table)[0] == expected_last[kind]
        out = tmp_path / kind
        path = L.write_verdicts_csv(table, out)
        rows = list(csv.DictReader(path.open()))
        assert [int(r["step"]) for r in rows] == [50, 100, 150, 200, 250]
        assert {"verdict", "lift", "lift_lo", "lift_hi", "js_excess", "verdict_evidence"} <= set(rows[0])
        assert all(float(r["lift_lo"]) <= float(r["lift"]) <= float(r["lift_hi"]) for r in rows)
        if kind == "learning":
            assert "trend_diff" in rows[-1] and float(rows[-1]["trend_diff_lo"]) > 0
            assert rows[-1]["verdict"] == "learning"
        if kind == "collapsed":
            assert all(r["verdict"] == "collapsed" for r in rows)
    summary = L.read_run_summary(fake_runs["learning"])
    assert summary["prediction_steps"] == [50, 100, 150, 200, 250] and summary["checkpoints"] == ["last.ckpt"]


def test_compare_runs_paired_at_matched_steps(fake_runs):
    a, r = fake_runs["learning"], fake_runs["random"]
    paired = L.paired_compare(a, r, n_boot=B)
    assert paired["step"].tolist() == [50, 100, 150, 200, 250]
    assert not paired["paired"].any()            # different GT draws: falls back to an unpaired comparison
    assert paired.iloc[-1]["diff_lo"] > 0 and paired.iloc[-1]["significant"]
    same = L.paired_compare(a, a, n_boot=B)
    assert same["paired"].all() and (same["diff"] == 0).all()
    tables = L.compare_runs([a, r], n_boot=B)
    summary = L.compare_table(tables)
    assert summary.set_index("run").loc[a.name, "verdict"] == "learning"
    fig = L.plot_learning_curves(tables)
    assert len(fig.axes[0].lines) >= 2


def test_timeseries_fallback_and_empty_run(tmp_path):
    run = tmp_path / "ts_only"
    run.mkdir()
    (run / "timeseries.csv").write_text(
        "step,val/lift,val/lift_lo,val/lift_hi,val/n_episodes,val/n_items\n"
        "10,0.01,-0.05,0.07,40,500\n20,0.3,0.25,0.35,40,500\n")
    table = L.evaluate_run(run)
    assert table["verdict"].tolist() == ["inconclusive", "learning"]
    assert (table["source"] == "timeseries.csv").all()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(L.evaluate_run(empty)) == 0
    assert L.overall_verdict(L.evaluate_run(empty))[0] == "inconclusive"
    assert L.write_verdicts_csv(L.evaluate_run(empty), empty).read_text().startswith("step,verdict")


def test_notebook_30_on_a_given_run(fake_runs, tmp_path):
    env = {**os.environ, "HLRP_OUTPUT_ROOT": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "hlrp_core.cli", "run", "notebooks/30_is_it_learning.ipynb",
                          "--set", f"analysis.run_dir={fake_runs['collapsed']}"],
                         capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (run_dir,) = sorted(p.parent for p in tmp_path.rglob("status"))
    assert runs.read_status(run_dir)[0] == "DONE"
    m = runs.load_metrics(run_dir)
    assert m["verdict"] == "collapsed" and m["analysis/is_demo"] == 0 and m["analysis/n_checkpoints"] == 5
    rows = list(csv.DictReader((run_dir / "verdicts.csv").open()))
    assert len(rows) == 5 and {r["verdict"] for r in rows} == {"collapsed"}
    assert (run_dir / "figures" / "metrics_vs_step.png").stat().st_size > 1000
