"""The verdict in a real Stage-1 Lightning fit on the embedded data: every validation records ``verdict`` /
``verdict_evidence`` / ``verdict/step`` in metrics.json and ``verdict/*`` in the time series, from the npz the module
wrote in the same validation; notebook 30 (``hlrp run``) on that run gives the same verdict and evidence. (The smoke
eval set has < 30 episodes, so the word itself is ``inconclusive``; the constructed cases of
tests/unit/test_verdict_calibration.py check the other words on both paths.)"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

import hlrp_core.runs as runs
from hlrp_core.metrics import names as n
from hlrp_core.training.laq.fit import fit_laq
from hlrp_core.metrics import predictions as P
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration


def test_stage1_fit_records_a_verdict_per_validation(embedded_root, tmp_path):
    cfg, run = runs.start("laq_tiny", [f"data.root={embedded_root}", "training.max_steps=20",
                                       "training.validation.check_interval=10",
                                       "training.checkpoint.every_n_train_steps=20"], smoke=True)
    metrics = fit_laq(cfg, run)
    run.finish(metrics)
    saved = json.loads((run.dir / "metrics.json").read_text())
    assert saved[n.VERDICT] in n.VERDICTS
    assert saved[n.VERDICT_EVIDENCE].startswith(saved[n.VERDICT] + ":")
    assert saved["verdict/step"] == 20 and saved["verdict/head"] == "stage1"
    assert saved["verdict/n_items"] == metrics["val/n_items"]
    # the recorded verdict is the one of the step-20 file
    row = P.score_latest(run.dir, P.settings_from_config(cfg.training.verdict))
    assert (row[n.VERDICT], row[n.VERDICT_EVIDENCE]) == (saved[n.VERDICT], saved[n.VERDICT_EVIDENCE])
    with open(run.dir / "timeseries.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("verdict/code")]
    assert sorted(int(r["step"]) for r in rows) == [10, 20]
    assert all(int(float(r["verdict/code"])) == n.VERDICTS.index(n.INCONCLUSIVE) for r in rows)
    assert "[Verdict] step=20" in (run.dir / "unified.log").read_text()

    # notebook 30 on this real run: the same verdict and evidence for the last checkpoint as the training recorded
    out = tmp_path / "analysis"
    res = subprocess.run([sys.executable, "-m", "hlrp_core.cli", "run", "notebooks/30_is_it_learning.ipynb",
                          "--set", f"analysis.run_dir={run.dir}"], capture_output=True, text=True, cwd=REPO_ROOT,
                         env={**os.environ, "HLRP_OUTPUT_ROOT": str(out)}, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (analysis_dir,) = sorted(p.parent for p in out.rglob("status"))
    am = runs.load_metrics(analysis_dir)
    assert am[n.VERDICT] == saved[n.VERDICT]
    assert am[n.VERDICT_EVIDENCE].startswith(f"step 20: {saved[n.VERDICT_EVIDENCE]}")
    assert am["analysis/training_verdict"] == saved[n.VERDICT] and am["analysis/agrees_with_training"] == 1
    with open(analysis_dir / "verdicts.csv") as f:
        assert [r["verdict"] for r in csv.DictReader(f)] == [saved[n.VERDICT]] * 2
