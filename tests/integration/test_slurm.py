"""hlrp_core.cluster against a real single-node SLURM (tests/slurm_fixture.py starts it; SLURM_CI.md has the recipe).

Jobs run the real launcher (``hlrp run`` -> papermill) on a code snapshot. The time-limit job is submitted first by a
module fixture and checked last, so its >= 60 s wait overlaps the other tests (SLURM checks time limits every 30 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hlrp_core.paths import REPO_ROOT

# the slurm_cluster fixture comes from conftest.py: importing it here would define a second session fixture
# (a second cluster that waits forever for the first one's lock)

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

PROBE = "tests/fixtures/cluster/probe.ipynb"
FAST, SLOW = "slurm_ci_fast", "slurm_ci_slow"


def _wait(pred, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _rows(sub_dir) -> list[dict]:
    from hlrp_core.cluster import list_jobs

    return [r for r in list_jobs() if r["submission"] == str(sub_dir)]


def _settled(sub_dir, n: int | None = None) -> list[dict] | None:
    from hlrp_core.cluster.slurm import FINAL

    rows = _rows(sub_dir)
    if rows and (n is None or len(rows) == n) and all(r["slurm_state"] in FINAL for r in rows):
        return rows
    return None


def _hlrp(*args: str, cwd: Path = REPO_ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(cwd)
    r = subprocess.run([sys.executable, "-m", "hlrp_core.cli", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"hlrp {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def _submission_dir(stdout: str) -> Path:
    line = next(l for l in stdout.splitlines() if l.startswith("submission record: "))
    return Path(line.split(": ", 1)[1])


@pytest.fixture(scope="module")
def slurm_env(slurm_cluster, tmp_path_factory):  # noqa: F811
    """A fresh output root for this module, and a kernel that exists (``hlrp`` once `make setup` registered it)."""
    from jupyter_client.kernelspec import KernelSpecManager

    saved = {k: os.environ.get(k) for k in ("HLRP_OUTPUT_ROOT", "HLRP_KERNEL")}
    os.environ["HLRP_OUTPUT_ROOT"] = str(tmp_path_factory.mktemp("slurm-outputs"))
    if "hlrp" not in KernelSpecManager().find_kernel_specs():
        os.environ["HLRP_KERNEL"] = "python3"
    yield slurm_cluster
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module", autouse=True)
def time_limited(slurm_env):
    """Submitted before the other tests: a probe that sleeps 300 s under a 1-minute limit, with one auto-resume."""
    from hlrp_core.cluster import submit

    os.environ["HLRP_PROBE_SLEEP_S"] = "300"
    try:
        sub = submit(PROBE, [], ["experiment.name=slow_probe"], FAST, time_limit="1", auto_resume=1)
    finally:
        del os.environ["HLRP_PROBE_SLEEP_S"]
    return sub


def test_notebook_job_end_to_end(slurm_env):
    """`hlrp submit` of the workbench-check notebook: run dir with the executed notebook, DONE, commits recorded."""
    r = _hlrp("submit", "notebooks/00_workbench_check.ipynb", "--set", "data.loader.batch_size=48",
              "--cluster", FAST)
    sub_dir = _submission_dir(r.stdout)
    rows = _wait(lambda: _settled(sub_dir, 1), 120, "the notebook job to finish")
    row = rows[0]
    assert row["slurm_state"] == "COMPLETED" and row["state"] == "DONE", row
    run_dir = Path(row["run_dir"])
    assert run_dir.parent.name == "data" and run_dir.name.endswith("_workbench_check")
    assert (run_dir / "notebook.ipynb").exists() and (run_dir / "metrics.json").exists()
    assert (run_dir / "status").read_text().split()[0] == "DONE"
    assert (run_dir / f"slurm-{row['job_id']}.out").read_text().count("hlrp run: DONE") == 1
    params = (run_dir / "params.yaml").read_text()
    assert "data.loader.batch_size=48" in params
    env = json.loads((run_dir / "env.json").read_text())
    sub = json.loads((sub_dir / "submission.json").read_text())
    assert env["git_sha"] == env["submitted_git_sha"] == sub["submitted_commit"] != ""
    assert env["job"]["job_id"] == row["job_id"] and env["slurm"]["SLURM_JOB_PARTITION"] == "hlrp_fast"
    assert env["job"]["code"].startswith(str(sub_dir)), "the job must run the snapshot, not the checkout"
    out = _hlrp("jobs").stdout
    assert row["job_id"] in out and str(run_dir) in out


def test_dry_run_submits_nothing(slurm_env):
    from hlrp_core.cluster.slurm import squeue

    before = set(squeue())
    r = _hlrp("submit", PROBE, "--cluster", FAST, "--also", SLOW, "--dry-run")
    assert "#SBATCH --partition=hlrp_fast" in r.stdout and "#SBATCH --partition=hlrp_slow" in r.stdout
    assert "sbatch --parsable --hold" in r.stdout and "submission record" not in r.stdout
    assert set(squeue()) == before
    made = [p for p in Path(os.environ["HLRP_OUTPUT_ROOT"]).glob("scratch/*") if p.name.split("_", 2)[-1] == "probe"]
    assert not made, "a dry run creates no run directory"


def test_dual_queue_held_queue_is_cancelled(slurm_env):
    """Twins on two queues; the slow queue's twin is held, so the fast one starts, claims the run and cancels it."""
    from hlrp_core.cluster import slurm

    r = _hlrp("submit", PROBE, "--set", "experiment.name=twins", "--cluster", SLOW, "--also", FAST, "--hold")
    sub_dir = _submission_dir(r.stdout)
    jobs = {j["preset"]: j["job_id"] for j in json.loads((sub_dir / "submission.json").read_text())["jobs"]}
    time.sleep(1.5)
    assert {slurm.squeue([jobs[SLOW]])[jobs[SLOW]]["state"], slurm.squeue([jobs[FAST]])[jobs[FAST]]["state"]} == \
        {"PENDING"}, "held twins must not start"
    slurm.release([jobs[FAST]])  # the fast queue "starts first"; the slow one stays held (a long queue)
    rows = _wait(lambda: _settled(sub_dir, 2), 120, "the twins to settle")
    by_preset = {row["preset"]: row for row in rows}
    winner, loser = by_preset[FAST], by_preset[SLOW]
    assert winner["state"] == "DONE" and winner["run_dir"], winner
    assert loser["slurm_state"] == "CANCELLED" and loser["state"] == f"CANCELLED (twin {jobs[FAST]} won)", loser
    assert loser["run_dir"] == "" and not (sub_dir / f"slurm-{jobs[SLOW]}.out").exists(), "the loser never ran"
    assert len(list(Path(winner["run_dir"]).parent.glob("*_twins"))) == 1, "exactly one run directory"
    dual = json.loads((Path(winner["run_dir"]) / "job.json").read_text())["dual_queue"]
    assert dual["winner_preset"] == FAST and dual["twins"][jobs[SLOW]]["outcome"] == "cancelled"
    assert dual["twins"][jobs[FAST]]["waited_s"] >= 1.5 and dual["twins"][jobs[SLOW]]["waited_s"] >= 1.5
    out = _hlrp("jobs").stdout
    assert f"CANCELLED (twin {jobs[FAST]} won)" in out and winner["run_dir"] in out


def test_job_runs_submitted_code_after_checkout_changed(slurm_env, tmp_path):
    """Submit from a throw-away checkout, commit a change while the job is held: the job runs the submitted code."""
    repo = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if src.is_file() and not rel.startswith(("outputs/", "data/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    probe = repo / "hlrp_core" / "_probe.py"
    probe.write_text('VALUE = "submitted"\n')
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=repo,  # noqa
                                    check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "submitted")
    submitted = git("rev-parse", "HEAD")
    probe.with_name("_uncommitted_probe.py").write_text("X = 1\n")  # an untracked file travels too

    r = _hlrp("submit", PROBE, "--set", "experiment.name=snap", "--cluster", FAST, "--hold", cwd=repo)
    sub_dir = _submission_dir(r.stdout)
    probe.write_text('VALUE = "changed after submit"\n')
    git("commit", "-q", "-am", "changed")
    changed = git("rev-parse", "HEAD")
    job_id = json.loads((sub_dir / "submission.json").read_text())["jobs"][0]["job_id"]
    from hlrp_core.cluster import slurm

    slurm.release([job_id])
    row = _wait(lambda: _settled(sub_dir, 1), 120, "the snapshot job")[0]
    assert row["state"] == "DONE", row
    run_dir = Path(row["run_dir"])
    seen = json.loads((run_dir / "probe.json").read_text())
    assert seen["marker"] == "submitted", seen
    assert seen["hlrp_core_file"].startswith(str(sub_dir / "code")), seen
    env = json.loads((run_dir / "env.json").read_text())
    assert env["git_sha"] == env["submitted_git_sha"] == submitted != changed
    assert env["job"]["checkout_commit_at_start"] == changed
    assert (sub_dir / "code" / "hlrp_core" / "_uncommitted_probe.py").exists()
    assert "_uncommitted_probe.py" in (sub_dir / "untracked.txt").read_text()


def test_ladder_as_array(slurm_env, tmp_path):
    """Three rungs as one array, two at a time: one run dir per rung with the rung's parameters."""
    from hlrp_core.cluster import submit_array

    rungs = []
    for i in range(3):
        p = tmp_path / f"rung_{i}.yaml"
        p.write_text(f"seed: {10 + i}\nrung_overrides: ['experiment.description=rung{i}']\n")
        rungs.append(str(p))
    sub = submit_array(rungs, PROBE, FAST, max_parallel=2, study="ladders/ci")
    rows = _wait(lambda: _settled(sub.dir, 3), 150, "the array tasks")
    assert sorted(r["job_id"] for r in rows) == [f"{sub.job_ids[0]}_{i}" for i in range(3)]
    assert all(r["state"] == "DONE" for r in rows), rows
    for i, run_dir in enumerate(sub.run_dirs):
        assert Path(run_dir).name.endswith(f"_rung_{i}") and Path(run_dir).parent.name == "ci"
        assert json.loads((Path(run_dir) / "probe.json").read_text())["seed"] == 10 + i


def test_over_memory_limit_is_reported_as_oom(slurm_env):
    if not slurm_env.cgroup_v1:
        pytest.skip("memory limits are enforced only with cgroup v1 (task/cgroup); without it SLURM reports FAILED, "
                    "not OUT_OF_MEMORY (SLURM_CI.md)")
    from hlrp_core.cluster import submit

    os.environ["HLRP_PROBE_ALLOC_MB"] = "1500"
    try:
        sub = submit(PROBE, [], ["experiment.name=oom"], FAST, preset_overrides={"mem": "700M"})
    finally:
        del os.environ["HLRP_PROBE_ALLOC_MB"]
    row = _wait(lambda: _settled(sub.dir, 1), 120, "the OOM job")[0]
    assert row["slurm_state"] == "OUT_OF_MEMORY" and row["state"] == "OUT_OF_MEMORY", row
    assert row["run_status"] in ("FAILED", "RUNNING"), row  # FAILED when papermill saw the kernel die


def test_time_limit_shows_timeout_then_resumes(slurm_env, time_limited):
    """The run killed at its limit shows TIMEOUT (its status file still says RUNNING); the follow-up job resumes it
    in a new run dir that links to the old one, from the old run's ckpt/last.ckpt."""
    sub = time_limited
    rows = _wait(lambda: _settled(sub.dir, 2), 200, "the time-limited job and its resume follow-up")
    main = next(r for r in rows if r["role"] == "main")
    follow = next(r for r in rows if r["role"] == "resume")
    old = Path(main["run_dir"])
    assert main["slurm_state"] == "TIMEOUT" and main["state"] == "TIMEOUT", main
    assert main["run_status"] == "RUNNING", "the killed run never wrote its status: reconciliation must show TIMEOUT"
    assert "received SIGTERM" in (old / "unified.log").read_text()
    assert follow["state"] == "DONE", follow
    new = Path(follow["run_dir"])
    assert new != old and new.name.endswith("_slow_probe_resume1") and new.parent == old.parent
    assert (new / "resumed_from").read_text().strip() == str(old)
    seen = json.loads((new / "probe.json").read_text())
    assert seen["resume_from"] == str(old / "ckpt" / "last.ckpt"), seen
    assert json.loads((new / "job.json").read_text())["resumed_from"] == str(old)
    assert not (old / "resumed_from").exists() and (old / "status").read_text().startswith("RUNNING")
    out = _hlrp("jobs").stdout
    assert "TIMEOUT" in out and str(new) in out
