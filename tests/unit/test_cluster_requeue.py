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


def test_the_time_limit_lead_is_a_warning_and_a_sigterm_after_it_shortens_the_grace(tmp_path):
    """SIGUSR1 comes ``signal_lead_s`` before the limit: the kernel keeps running (a first step, a validation, the
    cells after the training) for nearly all of it; SIGTERM (the limit, scancel) brings the short grace back."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from hlrp_core.stopping import STOP_GRACE_S, StopForwarder, read_stop_request, time_limit_grace

    assert time_limit_grace(600) == 580 and time_limit_grace(30) == STOP_GRACE_S
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    fwd = StopForwarder(tmp_path, grace_s=0.5, time_limit_grace_s=60).install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(2.0)
        assert kernel.poll() is None and not fwd.killed, "killed after grace_s although the lead allows 60 s"
        assert read_stop_request(tmp_path)["kind"] == "time_limit" and fwd.granted_s == 60
        os.kill(os.getpid(), signal.SIGTERM)
        assert kernel.wait(timeout=15) != 0 and fwd.killed and fwd.granted_s == 0.5
        assert "within 0.5 s" in fwd.unclean_reason() and "SIGUSR1" in fwd.unclean_reason()
    finally:
        fwd.uninstall()
        kernel.kill()
