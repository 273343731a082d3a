"""Feedback end to end (docs/FEEDBACK.md): a Stage-1 smoke run through `hlrp run` leaves an offline wandb run, TB
events and figures/curves.png, logs one-line progress and no bar, keeps the kernel's start-up warning out of the
terminal; a resume continues the same wandb run id; a kernel without papermill shows the progress widget."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hlrp_core import runs
from hlrp_core.paths import REPO_ROOT
from hlrp_core.training import loggers as LG

pytestmark = pytest.mark.integration
FEEDBACK = ["logging.use_wandb=true", "logging.tensorboard=true", "logging.progress_every_s=1"]


@pytest.fixture(scope="module")
def cli_run(embedded_root, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("feedback")
    sets = [f"data.root={embedded_root}", *FEEDBACK]
    env = {k: v for k, v in os.environ.items() if k != "HLRP_HEADLESS"}
    env["HLRP_OUTPUT_ROOT"] = str(out_root)
    cmd = [sys.executable, "-m", "hlrp_core.cli", "run", "notebooks/10_train_laq.ipynb"]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (run_dir,) = sorted(p.parent for p in out_root.rglob("status"))
    return res, run_dir


def test_offline_wandb_run_reads_back(cli_run):
    res, run_dir = cli_run
    (offline,) = LG.offline_run_dirs(run_dir)
    wb = LG.read_offline_run(offline)
    assert wb["id"] == LG.wandb_run_id(run_dir) == run_dir.name.replace(".", "-")
    assert wb["name"] == run_dir.name and wb["project"] == "hlrp" and "laq_tiny" in wb["tags"]
    assert wb["config"]["training"]["max_steps"] == 20 and wb["config"]["logging"]["use_wandb"] is True
    steps = [h["trainer/global_step"] for h in wb["history"] if "train/loss" in h]
    assert steps and max(steps) >= 15
    assert any("verdict/copy_ratio" in h for h in wb["history"])  # the verdict's numbers reach wandb too
    assert wb["exited"]  # finished, so the next run in the same kernel gets its own wandb run
    assert f"wandb sync {run_dir}/wandb/offline-run-*" in res.stdout


def test_tensorboard_events_read_back(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = cli_run
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "train/loss" in scalars and "sys/host_rss_mb" in scalars and "perf/train_steps_per_s" in scalars
    assert [e.step for e in acc.Scalars("train/loss")][-1] >= 15
    assert "verdict/copy_ratio" in scalars


def test_curves_and_headless_progress(cli_run):
    res, run_dir = cli_run
    assert (run_dir / "figures" / "curves.png").stat().st_size > 10_000
    assert "[Progress] step" in res.stdout and "steps/s" in res.stdout and "ETA" in res.stdout
    assert "validation at step 10 took" in res.stdout
    assert "it/s]" not in res.stdout + res.stderr and "\r" not in res.stdout  # no tqdm bar
    terminal = res.stdout + res.stderr
    assert "running over TCP without encryption" not in terminal  # the kernel's own stderr went to unified.log
    assert "[Progress] step" in (run_dir / "unified.log").read_text()


def test_resume_continues_the_same_wandb_run(cli_run, embedded_root):
    from hlrp_core.training.laq.fit import fit_laq

    _, first = cli_run
    cfg, run = runs.start("laq_tiny", [f"data.root={embedded_root}", *FEEDBACK, "training.max_steps=30",
                                       f"training.resume_from={first}/ckpt/last.ckpt"], smoke=True)
    metrics = fit_laq(cfg, run)
    run.finish(metrics)
    assert metrics["global_step"] == 30
    (offline,) = LG.offline_run_dirs(run.dir)
    wb = LG.read_offline_run(offline)
    assert wb["id"] == LG.read_offline_run(LG.offline_run_dirs(first)[0])["id"] == LG.wandb_run_id(first)
    steps = [h["trainer/global_step"] for h in wb["history"] if "train/loss" in h]
    assert min(steps) > 20 and max(steps) >= 25  # appends after the first run's steps
    assert (run.dir / "figures" / "curves.png").exists()


def test_kernel_without_papermill_shows_the_progress_widget(embedded_root, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from hlrp_core.launch import KERNEL

    for var in ("HLRP_HEADLESS", "CI", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path))
    nb = nbformat.read(REPO_ROOT / "notebooks" / "10_train_laq.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "overrides: list = []" in params.source
    params.source = params.source.replace(
        "overrides: list = []", "overrides: list = " + json.dumps([f"data.root={embedded_root}",
                                                                 "training.max_steps=10"]))
    NotebookClient(nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "no progress widget in the notebook output"
    text = "".join(o.get("text", "") for o in outputs)
    assert "[Progress] step" not in text  # the bar replaces the periodic line
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images  # the curves (and Stage-1 figures) are displayed
