"""The verdict in a real Stage-1 Lightning fit on the embedded data: every validation records ``verdict`` /
``verdict_evidence`` / ``verdict/step`` in metrics.json and ``verdict/*`` in the time series, from the npz the module
wrote in the same validation. (The smoke eval set has < 30 episodes, so the word itself is ``inconclusive``; the
words on the full tiny runs are checked by hand, see the issue-6 report.)"""

from __future__ import annotations

import csv
import json

import pytest

import hlrp_core.runs as runs
from hlrp_core.metrics import names as n
from hlrp_core.training import trainer as T
from hlrp_core.training import verdict as V

pytestmark = pytest.mark.integration


def test_stage1_fit_records_a_verdict_per_validation(embedded_root):
    cfg, run = runs.start("laq_tiny", [f"data.root={embedded_root}", "training.max_steps=20",
                                       "training.validation.check_interval=10",
                                       "training.checkpoint.every_n_train_steps=20"], smoke=True)
    metrics = T.fit_laq(cfg, run)
    run.finish(metrics)
    saved = json.loads((run.dir / "metrics.json").read_text())
    assert saved[n.VERDICT] in n.VERDICTS
    assert saved[n.VERDICT_EVIDENCE].startswith(saved[n.VERDICT] + ":")
    assert saved["verdict/step"] == 20 and saved["verdict/head"] == "stage1"
    assert saved["verdict/n_items"] == metrics["val/n_items"]
    # the recorded verdict is the one of the step-20 file
    word, evidence, _ = V.verdict_for_file(run.dir / "val_predictions" / "step_000020.npz")
    assert (word, evidence) == (saved[n.VERDICT], saved[n.VERDICT_EVIDENCE])
    with open(run.dir / "timeseries.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("verdict/code")]
    assert sorted(int(r["step"]) for r in rows) == [10, 20]
    assert all(int(float(r["verdict/code"])) == n.VERDICTS.index(n.INCONCLUSIVE) for r in rows)
    assert "[Verdict] step=20" in (run.dir / "unified.log").read_text()
