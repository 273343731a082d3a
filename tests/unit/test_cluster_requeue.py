"""The time-limit signal and requeue: sbatch options, the requeue decision, segments in `hlrp runs`."""

from __future__ import annotations

from hlrp_core import runs
from hlrp_core.analysis import runs_table as rt
from hlrp_core.cluster.job import requeue_decision
from hlrp_core.cluster.submit import render_script, sbatch_options
from hlrp_core.config.cluster import ClusterConfig


def test_sbatch_asks_for_the_signal_lead_and_requeue():
    c = ClusterConfig(name="g", backend="slurm", partition="p", time="24:00:00", signal_lead_s=600, max_requeues=3)
    opts = sbatch_options(c, "j", "o")
    assert "--signal=B:USR1@600" in opts and "--requeue" in opts
    off = sbatch_options(ClusterConfig(name="g", backend="slurm", partition="p", signal_lead_s=0, max_requeues=0),
                         "j", "o")
    assert not any(o.startswith(("--signal", "--requeue")) for o in off)
    script = render_script(c, "/s", "/code", "j")
    assert 'SLURM_RESTART_COUNT:-0}" != 0' in script  # a requeued job keeps its own slot claim
    problems: list[str] = []
    ClusterConfig(signal_lead_s=-1, max_requeues=-2).validate(problems)
    assert any("cluster.signal_lead_s=-1" in p for p in problems) and any("max_requeues=-2" in p for p in problems)


def test_requeue_only_after_a_checkpointed_time_limit_stop(tmp_path):
    run = tmp_path / "r"
    (run / "ckpt").mkdir(parents=True)
    (run / "ckpt" / "last.ckpt").write_bytes(b"x")
    runs.write_status(run, runs.FAILED, "time limit signal at step 80 (resumable): signal SIGUSR1 to hlrp run")
    assert requeue_decision(run, "SIGUSR1", 0, 3)[0]
    again, why = requeue_decision(run, "SIGUSR1", 3, 3)
    assert not again and "cluster.max_requeues=3 reached" in why
    assert not requeue_decision(run, "SIGTERM", 0, 3)[0]  # scancel: no requeue
    runs.write_status(run, runs.FAILED, "interrupted at step 80 (resumable): signal SIGTERM")
    assert not requeue_decision(run, "SIGUSR1", 0, 3)[0]
    runs.write_status(run, runs.DONE)
    assert not requeue_decision(run, "SIGUSR1", 0, 3)[0]


def test_segments_shown_in_the_runs_table(tmp_path):
    run = tmp_path / "study" / "2026-01-01_00-00-00_x"
    run.mkdir(parents=True)
    runs.write_status(run, runs.DONE)
    runs.start_segment(run, "start")
    runs.update_segment(run, end="FAILED: time limit signal at step 40 (resumable)", end_step=40, job_id="7")
    runs.start_segment(run, "resume")
    runs.update_segment(run, start_step=40, end_step=100, end="DONE", job_id="7")
    text = rt.format_table([rt.describe_run(run, tmp_path)])
    assert "#0 start job 7 steps 0-40 FAILED: time limit signal at step 40" in text
    assert "#1 resume job 7 steps 40-100 DONE" in text
