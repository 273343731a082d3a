"""Feedback machinery without a training (docs/FEEDBACK.md): progress mode and lines, wandb run ids, config checks,
the curves figure, the demo summary and the viewer lines of `hlrp runs`."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from hlrp_core import progress as P
from hlrp_core.config import ConfigError, load


def test_progress_mode_auto_is_line_outside_a_kernel_and_headless():
    assert P.mode("auto", environ={}) == "line"  # pytest is no Jupyter kernel
    assert P.headless({"HLRP_HEADLESS": "1"}) and P.headless({"SLURM_JOB_ID": "7"}) and P.headless({"CI": "true"})
    assert not P.headless({})
    assert P.mode("bar") == "bar" and P.mode("off") == "off"
    with pytest.raises(ValueError, match="logging.progress"):
        P.mode("sometimes")


def test_line_reporter_rate_limits_and_formats(caplog):
    rep = P.LineReporter("step", 100, every_s=3600, log=logging.getLogger("t.progress"), unit="steps")
    with caplog.at_level(logging.INFO, logger="t.progress"):
        assert rep.update(1, force=True)
        assert not rep.update(2)  # inside every_s: no line
        rep.close("loss 0.1")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[-1].startswith("[Progress] step 2/100 (2%)") and "steps/s" in lines[-1] and "ETA" in lines[-1]
    assert lines[-1].endswith("loss 0.1")
    assert P.fmt_duration(75) == "1m15s" and P.fmt_duration(3700) == "1h01m" and P.fmt_duration(float("inf")) == "?"


def test_track_yields_everything_and_logs(caplog):
    with caplog.at_level(logging.INFO, logger="t.track"):
        out = list(P.track(range(5), what="episodes", every_s=0.0, log=logging.getLogger("t.track")))
    assert out == [0, 1, 2, 3, 4]
    assert any("[Progress] episodes 5/5 (100%)" in r.getMessage() for r in caplog.records)
    assert list(P.track(range(3), setting="off")) == [0, 1, 2]


def test_ticker_counts_items_finished_on_threads(caplog):
    from concurrent.futures import ThreadPoolExecutor

    tick = P.Ticker(200, "verify rt1/train", every_s=3600, log=logging.getLogger("t.tick"), unit="shard")
    with caplog.at_level(logging.INFO, logger="t.tick"):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: tick(), range(200)))
        tick.close()
    assert tick.n == 200
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("[Progress] verify rt1/train 200/200 (100%)") and "shard/s" in lines[-1]
    quiet = P.Ticker(3, "x", setting="off")
    quiet()
    quiet.close()
    assert quiet.n == 1


def test_wandb_run_id_from_the_owning_run_dir(tmp_path):
    from hlrp_core.training.loggers import wandb_run_id

    first = tmp_path / "train" / "2026-02-18_22-05-43_laq_tiny"
    (first / "ckpt").mkdir(parents=True)
    (first / "config.yaml").write_text("seed: 0\n")
    (first / "status").write_text("FAILED\n")
    second = tmp_path / "train" / "2026-02-19_08-00-00_laq_tiny"
    second.mkdir()
    assert wandb_run_id(first) == "2026-02-18_22-05-43_laq_tiny"
    # a resume in a new run directory continues the run whose checkpoint it loads
    assert wandb_run_id(second, str(first / "ckpt" / "last.ckpt")) == wandb_run_id(first)
    assert wandb_run_id(second, "/elsewhere/model.ckpt") == second.name
    long = tmp_path / ("x" * 80 + " odd:name")
    rid = wandb_run_id(long)
    assert len(rid) == 64 and ":" not in rid and " " not in rid
    assert rid != wandb_run_id(tmp_path / ("x" * 80 + " other"))  # the hash keeps long names apart


def test_logging_knobs_are_validated():
    cfg = load("workbench_check", ["logging.use_wandb=true", "logging.tensorboard=true", "logging.wandb_tags=[a,b]"])
    assert cfg.logging.wandb_mode == "offline" and cfg.logging.wandb_tags == ["a", "b"]
    with pytest.raises(ConfigError, match="logging.wandb_mode"):
        load("workbench_check", ["logging.wandb_mode=onlin"])
    with pytest.raises(ConfigError, match="logging.progress"):
        load("workbench_check", ["logging.progress=bars"])
    with pytest.raises(ConfigError, match="logging.progress_every_s"):
        load("workbench_check", ["logging.progress_every_s=0"])


def _timeseries() -> pd.DataFrame:
    steps = np.arange(0, 60, 5)
    ts = pd.DataFrame(index=pd.Index(steps, name="step"))
    ts["train/loss"] = np.exp(-steps / 30.0)
    ts["train/lr"] = 1e-3
    ts["perf/train_steps_per_s"] = 2.0
    ts["sys/host_rss_mb"] = 900.0
    val = ts.index % 20 == 0
    for name, v in (("verdict/acc", 0.6), ("verdict/majority_acc", 0.3)):
        ts.loc[val, name] = v
        ts.loc[val, name + "_lo"] = v - 0.05
        ts.loc[val, name + "_hi"] = v + 0.05
    ts["epoch"] = 0
    return ts


def test_curves_figure_has_the_panels():
    from hlrp_core.training.curves import curves_figure

    fig = curves_figure(_timeseries(), title="run", metrics={"verdict": "learning", "verdict_evidence": "lift > 0"})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:4] == ["loss", "learning rate", "throughput (steps/s, samples/s)", "memory (MB)"]
    assert "acc (95% CI)" in titles  # the control (majority baseline) shares the panel, not its own
    assert not any(t.startswith("majority_acc") for t in titles)
    acc_ax = fig.axes[titles.index("acc (95% CI)")]
    assert {ln.get_label() for ln in acc_ax.get_lines()} == {"acc", "majority_acc"}
    assert len(acc_ax.collections) == 2  # the two CI bands
    assert "verdict: learning" in fig._suptitle.get_text()
    empty = curves_figure(pd.DataFrame(), title="x")
    assert "no timeseries.csv" in empty.axes[0].texts[0].get_text()


def test_write_curves_from_a_run_dir(tmp_path):
    from types import SimpleNamespace

    from hlrp_core.training.curves import write_curves

    _timeseries().reset_index().to_csv(tmp_path / "timeseries.csv", index=False)
    out = write_curves(SimpleNamespace(dir=tmp_path, log=logging.getLogger("t")))
    assert out == tmp_path / "figures" / "curves.png" and out.stat().st_size > 10_000
    assert not list((tmp_path / "figures").glob(".*tmp*"))  # written atomically


def test_demo_summary_names_verdicts_evidence_and_figures(tmp_path):
    from hlrp_core import demo, runs

    s1 = tmp_path / "laq"
    (s1 / "figures").mkdir(parents=True)
    (s1 / "figures" / "curves.png").write_bytes(b"png")
    runs.write_status(s1, runs.DONE)
    runs.record_metrics(s1, {"verdict": "learning", "verdict_evidence": "learning: NMI 0.85 > shuffled 0.02",
                             "val/action_nmi": 0.85, "val/action_nmi_shuffled": 0.02, "val/action_probe_r2": 0.83,
                             "val/action_probe_r2_shuffled": -0.01})
    s2 = tmp_path / "policy"
    s2.mkdir()
    runs.record_metrics(s2, {"verdict": "random-like", "verdict_evidence": "lift 0.00",
                             "val/token_accuracy": 0.31, "val/token_accuracy_ci_low": 0.28,
                             "val/token_accuracy_ci_high": 0.34, "val/token_accuracy_majority_baseline": 0.30,
                             "val/token_accuracy_majority_baseline_ci_high": 0.33})
    text = demo.summary_text([("laq_tiny", "DONE", str(s1)), ("policy_tiny", "DONE", str(s2)),
                              ("is_it_learning", "SKIPPED", "")], 123)
    assert "3 steps in 123 s" in text
    assert "verdict  learning: NMI 0.85" in text and "learning bar NMI >= 0.8 and probe R2 >= 0.8: met" in text
    assert "verdict  random-like: lift 0.00" in text
    assert "token accuracy 0.310 [0.280, 0.340] vs majority baseline 0.300" in text
    assert f"{s1}/figures/: curves.png" in text


def test_viewer_lines(tmp_path):
    from hlrp_core.analysis.cli import viewer_lines

    a, b, c = (tmp_path / "demo" / n for n in ("a", "b", "c"))
    (a / "tensorboard").mkdir(parents=True)
    (b / "tensorboard").mkdir(parents=True)
    (b / "wandb" / "offline-run-1-x").mkdir(parents=True)
    c.mkdir()
    lines = viewer_lines([a, b, c])
    assert lines[0] == f"TensorBoard (2 runs): tensorboard --logdir {tmp_path / 'demo'}"
    assert lines[1] == f"wandb offline (1 runs): wandb sync {b}/wandb/offline-run-*"
    assert viewer_lines([c]) == []
