"""kill -9 of a local training -> LOST after the stale period -> `hlrp resume` finishes it in the same directory, and
its timeseries.csv after the resume point equals an uninterrupted run's (docs/ROBUSTNESS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from hlrp_core import runs
from hlrp_core.analysis.runs_table import describe_run
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration
HLRP = [sys.executable, "-m", "hlrp_core.cli"]
LAQ = "notebooks/10_train_laq.ipynb"
SETS = ["training.max_steps=30", "training.checkpoint.every_n_train_steps=10", "training.log_every_n_steps=1",
        "training.validation.check_interval=10", "training.heartbeat_every_n_steps=1"]
#: columns that measure the machine, not the training
MACHINE = ("sys/", "perf/", "mem/", "time", "throughput", "wall", "_s")


def _args(root):
    out = [*HLRP, "run", LAQ, "--study", "t"]
    for s in SETS:
        out += ["--set", s]
    return out


def _env(root):
    return {**os.environ, "HLRP_OUTPUT_ROOT": str(root)}


def _series(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "timeseries.csv")
    cols = [c for c in df.columns if c != "step" and not any(m in c for m in MACHINE)]
    return df[["step", *sorted(cols)]]


def _recorded(run_dir: Path, step: int) -> bool:
    """The time series holds a row at ``step`` (CSVLogger flushes after a validation and every 100 steps; a kill
    before the flush of the validation at the checkpoint step loses those rows: the resumed fit does not redo it)."""
    try:
        df = pd.read_csv(run_dir / "timeseries.csv")
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return False
    return bool((df.step >= step).any())


def test_kill9_lost_resume_continues_exactly(tmp_path):
    ref = subprocess.run(_args(tmp_path / "a"), env=_env(tmp_path / "a"), cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=400)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    (ref_dir,) = [p.parent for p in (tmp_path / "a").rglob("status")]

    proc = subprocess.Popen(_args(tmp_path / "b"), env=_env(tmp_path / "b"), cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline:
        found = [p.parent for p in (tmp_path / "b").rglob("status")]
        ck = found[0] / "ckpt" if found else None
        if ck and (ck / "step_000020.ckpt").exists() and (ck / "last.ckpt").exists() \
                and (ck / "last.ckpt").stat().st_mtime >= (ck / "step_000020.ckpt").stat().st_mtime \
                and _recorded(found[0], 20):
            run_dir = found[0]  # last.ckpt holds step 20, and the step-20 validation's rows reached the file
            break
        assert proc.poll() is None, "the run ended before step 20"
        time.sleep(0.2)
    assert run_dir is not None, "no step-20 checkpoint within 300 s"
    victims = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in victims:  # kill -9 of the launcher and its kernel: nobody can write a status
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    time.sleep(2.5)
    assert runs.read_status(run_dir)[0] == "RUNNING"
    row = describe_run(run_dir, stale_after_s=2)
    assert row.status == "LOST" and row.failure == "lost", (row.status, row.failure, row.reason)

    res = subprocess.run([*HLRP, "resume", str(run_dir), "--stale-after", "2"], env=_env(tmp_path / "b"),
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert runs.read_status(run_dir)[0] == "DONE"
    segs = json.loads((run_dir / "segments.json").read_text())
    assert [s["how"] for s in segs] == ["start", "resume"] and segs[1]["start_step"] >= 20
    assert segs[1]["end"] == "DONE" and segs[0]["end"] is None  # the killed segment never recorded an end
    resumed_at = segs[1]["start_step"]
    a, b = _series(ref_dir), _series(run_dir)
    assert len(a) == len(b)  # no step recorded twice, none missing
    a_after = a[a.step >= resumed_at].reset_index(drop=True)
    b_after = b[b.step >= resumed_at].reset_index(drop=True)
    assert len(a_after) > 5 and list(a_after.columns) == list(b_after.columns)
    pd.testing.assert_frame_equal(a_after, b_after, rtol=1e-5, atol=1e-7, check_dtype=False)
    assert "===== segment 1: resuming" in (run_dir / "unified.log").read_text()
    assert (run_dir / "segments" / "notebook.seg0.ipynb").exists() and (run_dir / "notebook.ipynb").exists()


def test_resume_refuses_done_live_and_result_changing_overrides(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("training:\n  max_steps: 30\n")
    (run / "params.yaml").write_text("experiment: laq_tiny\n")
    runs.write_status(run, runs.DONE)
    res = subprocess.run([*HLRP, "resume", str(run), "--set", "training.lr=1", "--set", "training.max_steps=10"],
                         env=_env(tmp_path), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    for expect in ("is DONE", "ckpt/last.ckpt", "training.lr may change results", "may only grow"):
        assert expect in res.stderr, (expect, res.stderr)
    runs.write_status(run, runs.RUNNING)
    res = subprocess.run([*HLRP, "resume", str(run)], env=_env(tmp_path), cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "is RUNNING (heartbeat" in res.stderr, res.stderr
