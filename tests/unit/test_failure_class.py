"""Failure classes come from evidence (the recorded reason, SLURM's / the kernel's own lines), not from words."""

from hlrp_core.analysis import runs_table as rt


def test_failed_reasons_written_by_the_run_code():
    assert rt.classify_failure("FAILED", "interrupted at step 12 (resumable): signal SIGTERM") == "interrupted"
    assert rt.classify_failure("FAILED", "time limit signal at step 80 (resumable): signal SIGUSR1") == "time_limit"
    assert rt.classify_failure("FAILED", "diverged at step 2: train loss nan is non-finite") == "diverged"
    assert rt.classify_failure("FAILED", "[Errno 28] cannot write checkpoint /o/ckpt/last.ckpt: the disk (or quota) "
                                         "is full (No space left on device); free space there: 0.0 MB") == "disk"
    assert rt.classify_failure("FAILED", "DeadKernelError: Kernel died (kernel ended by SIGKILL; memory cgroup "
                                         "oom_kill events +1: killed by the OOM killer)") == "oom_kill"
    # a dead kernel without OOM evidence is not called an OOM kill
    assert rt.classify_failure("FAILED", "DeadKernelError: Kernel died (kernel ended by SIGKILL; no OOM kill "
                                         "counted by the memory cgroup)") == "killed"
    assert rt.classify_failure("FAILED", "ValueError: timeout_s must be > 0") == "exception"


def test_lost_run_uses_only_evidence_lines_of_the_log():
    knob_line = "INFO hlrp: effective data knobs: loader_timeout_s=60, stall_timeout_s=300, mem_limit=4G"
    assert rt.classify_failure("LOST", "no heartbeat", knob_line) == "lost"
    tail = knob_line + "\nslurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-02-19T08:14:00 DUE TO TIME LIMIT ***"
    assert rt.classify_failure("LOST", "no heartbeat", tail) == "time_limit"
    assert rt.classify_failure("LOST", "no heartbeat", "slurmstepd: error: Detected 1 oom-kill event(s) in "
                                                        "StepId=42.batch") == "oom_kill"
