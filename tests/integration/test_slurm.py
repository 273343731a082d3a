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
import yaml

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


def _hlrp(*args: str, cwd: Path = REPO_ROOT, env: dict | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(cwd)
    r = subprocess.run([sys.executable, "-m", "hlrp_core.cli", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=timeout)
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


def test_dual_queue_laq_notebook_one_running_one_cancelled(slurm_env, embedded_root):
    """The acceptance command (notebook 10, params/laq_tiny.yaml; + the smoke profile so the job is short), twins
    released together on two queues: exactly one job runs the notebook, the other ends CANCELLED without a run
    directory, and `hlrp jobs` shows the winner with its run directory while it runs and after it finished."""
    r = _hlrp("submit", "notebooks/10_train_laq.ipynb", "-f", "params/laq_tiny.yaml", "-f", "params/smoke.yaml",
              "--set", f"data.root={embedded_root}", "--set", "experiment.name=laq_twins", "--cluster", FAST,
              "--also", SLOW)
    sub_dir = _submission_dir(r.stdout)
    ids = [j["job_id"] for j in json.loads((sub_dir / "submission.json").read_text())["jobs"]]
    assert len(ids) == 2

    def one_running_one_cancelled():
        rows = _rows(sub_dir)
        won = [x for x in rows if x["run_dir"] and x["slurm_state"] == "RUNNING"]
        lost = [x for x in rows if x["slurm_state"] == "CANCELLED" and not x["run_dir"]]
        return (won[0], lost[0], _hlrp("jobs").stdout) if len(rows) == 2 and len(won) == len(lost) == 1 else None

    winner, loser, out = _wait(one_running_one_cancelled, 90, "one twin running and the other cancelled")
    print(out)
    assert loser["state"] == f"CANCELLED (twin {winner['job_id']} won)", loser
    line = next(x for x in out.splitlines() if x.split()[1:2] == [winner["job_id"]])
    assert "RUNNING" in line and winner["run_dir"] in line, line
    assert f"CANCELLED (twin {winner['job_id']} won)" in out

    rows = {x["job_id"]: x for x in _wait(lambda: _settled(sub_dir, 2), 400, "the LAQ smoke run to finish")}
    won, lost = rows[winner["job_id"]], rows[loser["job_id"]]
    assert won["slurm_state"] == "COMPLETED" and won["state"] == "DONE", won
    assert lost["slurm_state"] == "CANCELLED" and lost["run_dir"] == "", lost
    run_dir = Path(won["run_dir"])
    assert len(list(run_dir.parent.glob("*_laq_twins"))) == 1, "exactly one run directory"
    assert (run_dir / "notebook.ipynb").exists() and (run_dir / "ckpt" / "last.ckpt").exists()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["global_step"] == 20 and m["val/recon_mse"] > 0, m  # the smoke profile of laq_tiny: 20 steps
    dual = json.loads((run_dir / "job.json").read_text())["dual_queue"]
    assert dual["winner_job_id"] == winner["job_id"] and dual["twins"][loser["job_id"]]["outcome"] == "cancelled"
    out = _hlrp("jobs").stdout
    line = next(x for x in out.splitlines() if x.split()[1:2] == [winner["job_id"]])
    assert "DONE" in line and str(run_dir) in line, line


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


NUMERIC = ["steps/s", "samples/s", "first batch s", "peak RSS MB", "min MemAvailable MB", "delta vs baseline %"]


def test_ladder_slurm_backend_gives_the_local_report(slurm_env, embedded_root, tmp_path):
    """`hlrp ladder run <data-only ladder> --backend slurm` (one job array, one task per run, throttled to one task at
    a time) leaves the same report as `--backend local`: same rows, columns, rung names and statuses (a passing
    baseline x2, a passing knob rung, a RAM-guard rung, an invalid rung never launched); every measured cell filled."""
    import pandas as pd

    src = yaml.safe_load((REPO_ROOT / "params/ladders/data_loader_smoke/ladder.yaml").read_text())
    spec = {**src, "baseline_repeats": 2,
            "baseline": [f"data.root={embedded_root}"] + [b if not b.startswith("training.max_steps=") else
                                                         "training.max_steps=30" for b in src["baseline"]],
            "axes": {"data.loader.batch_size": src["axes"]["data.loader.batch_size"][:1],
                     "training.ram_guard.min_available_mb": [100000000],
                     "data.adapter.tf.pipeline.interleave_parallelism": [2]}}
    lad = tmp_path / "dls_ci"
    lad.mkdir()
    (lad / "ladder.yaml").write_text("# data_loader_smoke, reduced for CI\n" + yaml.safe_dump(spec, sort_keys=False))
    tables = {}
    for backend in ("slurm", "local"):
        env = {**os.environ, "HLRP_OUTPUT_ROOT": str(tmp_path / f"out_{backend}")}
        _hlrp("ladder", "expand", str(lad), env=env)
        extra = ["--cluster", FAST, "--max-parallel", "1", "--wait"] if backend == "slurm" else []
        r = _hlrp("ladder", "run", str(lad), "--backend", backend, *extra, env=env, timeout=600)
        assert "4 run(s): pass=3, ram-guard=1" in r.stdout, r.stdout
        _hlrp("ladder", "report", str(lad), env=env)
        out = tmp_path / f"out_{backend}" / "ladders" / "dls_ci"
        tables[backend] = pd.read_csv(out / "report" / "ladder_report.csv", keep_default_na=False)
        run_dirs = sorted(p.parent for p in out.glob("*/status"))
        assert len(run_dirs) == 4, run_dirs
        jobs = [json.loads((d / "job.json").read_text()) for d in run_dirs if (d / "job.json").exists()]
        if backend == "local":
            assert not jobs, "the local backend runs no SLURM job"
            continue
        # one array, one task per run; %1: the tasks ran one after the other although 2 CPUs were free
        assert len(jobs) == 4 and len({j["job_id"].split("_")[0] for j in jobs}) == 1, jobs
        assert sorted(int(j["job_id"].split("_")[1]) for j in jobs) == [0, 1, 2, 3]
        spans = sorted((j["started_at"], j["ended_at"]) for j in jobs)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), f"tasks overlapped despite %1: {spans}"
        sub = json.loads((Path(jobs[0]["submission"]) / "submission.json").read_text())
        assert sub["array"] and sub["max_parallel"] == 1 and len(sub["jobs"]) == 1
    slurm_t, local_t = tables["slurm"], tables["local"]
    print(slurm_t.to_string(), local_t.to_string(), sep="\n")
    assert list(slurm_t.columns) == list(local_t.columns)
    same = ["rung", "changed knob", "value", "effective value", "status", "runs"]
    assert slurm_t[same].astype(str).values.tolist() == local_t[same].astype(str).values.tolist()
    assert list(local_t["status"]) == ["pass", "pass", "ram-guard", "invalid-config"]
    for t in (slurm_t, local_t):
        for _, row in t.iterrows():
            if row["status"] == "pass":  # measured: every number and the verdict filled
                assert all(row[c] not in ("", "—") for c in NUMERIC + ["verdict"]), row.to_dict()
                assert all(float(row[c]) > 0 for c in NUMERIC if c != "delta vs baseline %"), row.to_dict()
            elif row["status"] == "invalid-config":  # never launched: no numbers
                assert all(row[c] in ("", "—") for c in NUMERIC + ["verdict"]), row.to_dict()
        assert t.loc[t["status"] == "invalid-config", "note"].str.contains("interleave").all()
        assert t.loc[t["status"] == "ram-guard", "note"].str.contains("RAM guard").all()


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



def test_array_task_applies_the_cell_timeout(slurm_env, tmp_path):
    """A ladder's per-rung ``timeout_s`` reaches the SLURM task: a probe that would sleep 120 s under a 5 s cell
    timeout fails with a timeout reason in seconds (not at the preset's time limit), and job.json records it."""
    from hlrp_core.cluster import submit_array

    rung = tmp_path / "rung_0.yaml"
    rung.write_text("seed: 1\nrung_overrides: ['experiment.description=timeout']\n")
    os.environ["HLRP_PROBE_SLEEP_S"] = "120"
    try:
        sub = submit_array([str(rung)], PROBE, FAST, study="ladders/ci_timeout", cell_timeout_s=5)
    finally:
        del os.environ["HLRP_PROBE_SLEEP_S"]
    row = _wait(lambda: _settled(sub.dir, 1), 100, "the timed-out task")[0]
    run_dir = Path(sub.run_dirs[0])
    status = (run_dir / "status").read_text()
    assert status.split()[0] == "FAILED" and "timeout" in status.lower(), (row, status)
    job = json.loads((run_dir / "job.json").read_text())
    assert job["cell_timeout_s"] == 5 and job["command"][-2:] == ["--cell-timeout", "5"], job["command"]
    assert job["ended_at"] - job["started_at"] < 90
