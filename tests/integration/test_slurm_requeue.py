"""A SLURM time limit that lands mid-training (docs/ROBUSTNESS.md, "Time limits on SLURM"): the sbatch ``--signal`` lead
reaches the job, the training checkpoints at its current step, the job requeues itself and continues the same run
directory until ``training.max_steps``; the result equals an uninterrupted run with the same seed.

One plain job and one job-array rung run side by side with a local uninterrupted reference, so the test pays for
the longest of the three (a few minutes on 2 cores). SLURM sends the warning signal at a periodic check (every
30 s), so a 2-minute limit with a 30 s lead signals 30-60 s after the start; the training is sized to outlast that.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hlrp_core import runs
from hlrp_core.paths import REPO_ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

LAQ = "notebooks/10_train_laq.ipynb"
PARAMS = ["params/laq_tiny.yaml", "params/smoke.yaml"]
SETS = ["training.max_steps=800", "training.validation.check_interval=200", "training.validation.limit_batches=2",
        "training.checkpoint.every_n_train_steps=400", "training.log_every_n_steps=10"]
# a fast machine needs 2 segments; the cap leaves room for a loaded CI machine at a third of the speed
LIMIT = {"time_limit": "2", "preset_overrides": {"signal_lead_s": 30, "max_requeues": 6}}
#: columns that measure the machine, not the training
MACHINE = ("sys/", "perf/", "mem/", "time", "throughput", "wall", "_s")


def _series(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "timeseries.csv")
    cols = [c for c in df.columns if c != "step" and not any(m in c for m in MACHINE)]
    return df[["step", *sorted(cols)]]


def _extra_rows(got: pd.DataFrame, reference: pd.DataFrame, steps: set) -> pd.Series:
    """Rows of ``got`` at ``steps`` beyond those the reference has there (a row is known by its step and which
    columns it fills: a train log row, a validation row, a verdict row)."""
    cols = list(reference.columns)
    key = lambda df: list(zip(df.step, map(tuple, df[cols].notna().to_numpy())))  # noqa: E731
    budget = collections.Counter(key(reference[reference.step.isin(steps)]))
    out = []
    for k in key(got):
        out.append(k[0] in steps and budget[k] <= 0)
        budget[k] -= k[0] in steps
    return pd.Series(out, index=got.index)


def _job(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def _evidence(run_dir: Path) -> str:
    """What a failed wait shows: the segments and the tail of every job log of the run."""
    out = [f"segments: {(run_dir / 'segments.json').read_text() if (run_dir / 'segments.json').exists() else '-'}"]
    for log in sorted(run_dir.glob("slurm-*.out")):
        out.append(f"--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    return "\n".join(out)


def _wait_done(run_dir: Path, job_id: str, timeout: float) -> dict:
    """Until the run is DONE and its job COMPLETED. A requeued job may wait for a begin time: start it at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(job_id)
        if job.get("JobState") == "PENDING" and job.get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True)
        if job.get("JobState") == "COMPLETED" and runs.read_status(run_dir)[0] == runs.DONE:
            return job
        assert job.get("JobState") not in ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"), \
            f"{job}\n{_evidence(run_dir)}"
        time.sleep(1)
    raise AssertionError(f"{run_dir}: job {job_id} not COMPLETED + DONE within {timeout} s: {_job(job_id)}\n"
                         f"{_evidence(run_dir)}")


@pytest.fixture(scope="module")
def outputs(slurm_cluster, tmp_path_factory):
    from jupyter_client.kernelspec import KernelSpecManager

    saved = {k: os.environ.get(k) for k in ("HLRP_OUTPUT_ROOT", "HLRP_KERNEL")}
    root = tmp_path_factory.mktemp("requeue-outputs")
    os.environ["HLRP_OUTPUT_ROOT"] = str(root / "slurm")
    if "hlrp" not in KernelSpecManager().find_kernel_specs():
        os.environ["HLRP_KERNEL"] = "python3"
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_time_limit_mid_training_requeues_and_equals_uninterrupted(outputs, embedded_root):
    from hlrp_core.cluster import submit, submit_array

    sets = [f"data.root={embedded_root}", *SETS]
    rung = outputs / "rung_0.yaml"
    rung.write_text("overrides: ['experiment.description=requeue rung']\n")  # changes no result
    job = submit(LAQ, PARAMS, [*sets, "experiment.name=requeue_job"], "slurm_ci_fast", **LIMIT)
    arr = submit_array([str(rung)], LAQ, "slurm_ci_fast", params_files=PARAMS,
                       sets=[*sets, "experiment.name=requeue_rung"], study="ladders/requeue", **LIMIT)
    script = (Path(job.dir) / "job_slurm_ci_fast.sh").read_text()
    assert "#SBATCH --signal=B:USR1@30" in script and "#SBATCH --requeue" in script, script

    ref_root = outputs / "reference"
    args = [sys.executable, "-m", "hlrp_core.cli", "run", LAQ, *sum((["-f", p] for p in PARAMS), []),
            *sum((["--set", s] for s in [*sets, "experiment.name=reference"]), [])]
    ref = subprocess.run(args, cwd=REPO_ROOT, env={**os.environ, "HLRP_OUTPUT_ROOT": str(ref_root)},
                         capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    (ref_dir,) = [p.parent for p in ref_root.rglob("status")]
    reference, ref_metrics = _series(ref_dir), json.loads((ref_dir / "metrics.json").read_text())

    for sub, job_id in ((job, job.job_ids[0]), (arr, f"{arr.job_ids[0]}_0")):
        run_dir = Path(sub.run_dirs[0])
        info = _wait_done(run_dir, job_id, 1200)
        segs = json.loads((run_dir / "segments.json").read_text())
        command = json.loads((run_dir / "job.json").read_text())["command"]
        assert command[command.index("--time-limit-grace") + 1] == "25", command  # max(25 s, 30 s lead - 20 s)
        print(run_dir, json.dumps(segs, indent=1))
        assert int(info["Restarts"]) >= 1 and len(segs) == int(info["Restarts"]) + 1, (info, segs)
        assert [s["how"] for s in segs] == ["start"] + ["resume"] * (len(segs) - 1)
        for seg in segs[:-1]:  # every segment but the last ended at the signal, with a checkpoint, and requeued
            assert seg["end"].startswith("FAILED: time limit signal at step") and seg["end_step"], seg
            assert seg["requeue"].startswith("requeue "), seg
        assert 0 < segs[0]["end_step"] < 800, "the time limit must land mid-training"
        assert segs[-1]["end"] == "DONE" and segs[-1]["end_step"] == 800, segs[-1]
        log = (run_dir / "unified.log").read_text()
        assert "received SIGUSR1 (the time-limit lead)" in log and "===== segment 1: resuming" in log
        got = _series(run_dir)
        # the stop itself logs, validates and scores once (so a cut-short segment has a verdict): those rows sit at
        # the stop step, where the uninterrupted run records nothing; every other row must match exactly
        stops = {st for seg in segs[:-1] for st in (seg["end_step"] - 1, seg["end_step"])}
        extra = _extra_rows(got, reference, stops)
        assert extra.any() and set(got.step[extra]) <= stops
        got = got[~extra].reset_index(drop=True)[list(reference.columns)]
        assert len(got) == len(reference), "no step recorded twice, none missing"
        pd.testing.assert_frame_equal(got, reference, rtol=1e-5, atol=1e-7, check_dtype=False)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for key in [k for k in ref_metrics if k.startswith("val/")] + ["global_step"]:
            assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-5, abs=1e-7), key
        assert (run_dir / "artifacts" / "laq_artifact.pt").exists()
