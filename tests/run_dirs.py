"""Real run directories for the runs-table and dashboard tests, built with ``hlrp_core.runs.start/record/finish``.

``make_runs(root)`` writes, under ``root``:

- ``demo/..._good``: DONE, batch_size 48, a Lightning-CSVLogger-style ``timeseries.csv`` (sparse rows: loss,
  throughput, RSS, a learning metric with CI columns), a figure, two sample panels (PNG + JSON), verdict "learning";
- ``demo/..._ramguard``: FAILED by the RAM guard (batch_size 96);
- ``demo/..._crash``: FAILED with an exception (state_dict mismatch), no timeseries;
- ``ladders/bs/..._lost``: RUNNING with a heartbeat one hour old and an OOM-kill line in ``unified.log``;
- ``ladders/bs/..._live``: RUNNING with a fresh heartbeat.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from hlrp_core import runs

EXPERIMENT = "workbench_check"


def _timeseries(path: Path, steps: int, loss0: float = 2.0) -> None:
    """The layout Lightning's CSVLogger writes: one header, sparse rows (train rows and val rows apart)."""
    cols = ["epoch", "step", "train/loss", "throughput/steps_per_s", "mem/rss_mb", "mem/available_mb",
            "val/lift", "val/lift_lo", "val/lift_hi"]
    lines = [",".join(cols)]
    for s in range(0, steps + 1, 5):
        lines.append(f"0,{s},{loss0 / (1 + s / 10):.4f},{3.0 + 0.01 * s:.3f},{900 + 2 * s},{5000 - 3 * s},,,")
        if s and s % 20 == 0:
            lift = 0.02 * s / 20
            lines.append(f"0,{s},,,,,{lift:.4f},{lift - 0.01:.4f},{lift + 0.01:.4f}")
    path.write_text("\n".join(lines) + "\n")


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 32, 3), value, np.uint8)).save(path)


def make_runs(root: Path) -> dict[str, Path]:
    root = Path(root)
    out: dict[str, Path] = {}

    _, run = runs.start(EXPERIMENT, ["data.loader.batch_size=48"], smoke=True,
                        run_dir=str(root / "demo" / "2026-02-18_22-05-43_good"))
    _timeseries(run.dir / "timeseries.csv", 40)
    fig = Figure(figsize=(2, 2))
    fig.add_subplot(111).plot([0, 1], [1, 0])
    run.save_figure(fig, "loss_curve")
    _png(run.dir / "samples" / "val" / "step_000020.png", 40)
    (run.dir / "samples" / "val" / "step_000020.json").write_text(json.dumps({"step": 20, "instruction": "a"}))
    _png(run.dir / "samples" / "val" / "step_000040.png", 200)
    (run.dir / "samples" / "val" / "step_000040.json").write_text(json.dumps({"step": 40, "instruction": "b"}))
    os.utime(run.dir / "samples" / "val" / "step_000020.png", (time.time() - 60, time.time() - 60))
    run.record({"global_step": 20, "train/loss": 0.5})
    run.finish({"global_step": 40, "train/loss": 0.2, "throughput/steps_per_s": 3.4, "verdict": "learning",
                "verdict_evidence": "lift 0.04 [0.03, 0.05] > 0"})
    out["good"] = run.dir

    _, run = runs.start(EXPERIMENT, ["data.loader.batch_size=96"], smoke=True,
                        run_dir=str(root / "demo" / "2026-02-18_23-31-19_ramguard"))
    _timeseries(run.dir / "timeseries.csv", 15)
    run.record({"global_step": 15})
    run.fail("RamGuardError: MemAvailable 812 MB < training.ram_guard.min_available_mb=1000 at step 15")
    out["ramguard"] = run.dir

    _, run = runs.start(EXPERIMENT, ["data.loader.batch_size=48", "training.max_steps=7"], smoke=True,
                        run_dir=str(root / "demo" / "2026-02-18_23-33-27_crash"))
    run.fail("RuntimeError: Error(s) in loading state_dict for PolicyModule: size mismatch")
    out["crash"] = run.dir

    _, run = runs.start(EXPERIMENT, ["data.loader.batch_size=128"], smoke=True,
                        run_dir=str(root / "ladders" / "bs" / "2026-02-19_01-44-00_lost"))
    _timeseries(run.dir / "timeseries.csv", 10)
    run._sampler.stop()
    with open(run.dir / "unified.log", "a") as fh:
        fh.write("2026-02-19 08:14:00 ERROR slurm: Detected 1 oom-kill event(s) in StepId=42.batch\n")
    hour_ago = time.time() - 3600
    os.utime(run.dir / "status", (hour_ago, hour_ago))
    out["lost"] = run.dir

    _, run = runs.start(EXPERIMENT, [], smoke=True, run_dir=str(root / "ladders" / "bs" / "2026-02-19_09-00-00_live"))
    run._sampler.stop()
    run.heartbeat()
    out["live"] = run.dir
    return out
