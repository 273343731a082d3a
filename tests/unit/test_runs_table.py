"""``hlrp runs`` and the runs table behind the dashboard, on real run directories (tests/run_dirs.py)."""

import json
import os
import subprocess
import sys

import pytest

from hlrp_core.analysis import runs_table as rt
from hlrp_core.cli import main
from tests.run_dirs import make_runs


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    return root, make_runs(root)


def _by_name(rows):
    return {r.run.split("_")[-1]: r for r in rows}


def test_status_failure_class_and_steps(runs_root):
    root, _ = runs_root
    rows = _by_name(rt.collect_runs(root))
    assert set(rows) == {"good", "ramguard", "crash", "lost", "live"}
    assert (rows["good"].status, rows["good"].failure, rows["good"].steps) == ("DONE", "", 40)
    assert rows["good"].metrics["verdict"] == "learning" and rows["good"].metrics["loss"] == pytest.approx(0.2)
    assert rows["good"].metrics["peak_rss_mb"] > 0
    assert (rows["ramguard"].status, rows["ramguard"].failure, rows["ramguard"].steps) == ("FAILED", "ram_guard", 15)
    assert (rows["crash"].status, rows["crash"].failure, rows["crash"].steps) == ("FAILED", "exception", None)
    assert "state_dict" in rows["crash"].reason
    # RUNNING with a heartbeat one hour old -> LOST; the log's oom-kill line names the cause; steps from timeseries
    assert (rows["lost"].status, rows["lost"].failure, rows["lost"].steps) == ("LOST", "oom_kill", 10)
    assert "no heartbeat for" in rows["lost"].reason
    assert (rows["live"].status, rows["live"].failure) == ("RUNNING", "")
    assert rows["good"].study == "demo" and rows["lost"].study == "ladders/bs"


def test_stale_threshold_decides_lost(runs_root):
    root, _ = runs_root
    rows = _by_name(rt.collect_runs(root, stale_after_s=7200))
    assert rows["lost"].status == "RUNNING" and rows["lost"].failure == ""


def test_classify_failure_patterns():
    assert rt.classify_failure("FAILED", "DeadKernelError: Kernel died (the kernel died: killed by the OOM killer)") \
        == "oom_kill"
    assert rt.classify_failure("FAILED", "CellTimeoutError: A cell timed out while it was being executed") \
        == "time_limit"
    assert rt.classify_failure("LOST", "no heartbeat", "slurmstepd: *** JOB 7 CANCELLED DUE TO TIME LIMIT ***") \
        == "time_limit"
    assert rt.classify_failure("LOST", "no heartbeat", "INFO step 3") == "lost"
    assert rt.classify_failure("FAILED", "ValueError: bad") == "exception"
    assert rt.classify_failure("DONE", "") == ""


def test_filters(runs_root):
    root, _ = runs_root
    assert {r.run.split("_")[-1] for r in rt.collect_runs(root, study="ladders")} == {"lost", "live"}
    assert {r.run.split("_")[-1] for r in rt.collect_runs(root, status="failed,lost")} == {"ramguard", "crash", "lost"}
    assert rt.collect_runs(root, study="demo", status="RUNNING") == []


def test_config_diff_against_run_and_preset(runs_root):
    root, paths = runs_root
    # vs the good run (the "shared family"): only the batch size differs for the RAM-guard run
    d = rt.config_diff(paths["ramguard"], "2026-02-18_22-05-43_good", root)
    assert d == {"data.loader.batch_size": (48, 96)}
    d = rt.config_diff(paths["crash"], str(paths["good"]), root)
    assert d["training.max_steps"][1] == 7 and "data.loader.batch_size" not in d
    # vs the named preset (loaded with the run's smoke flag): the override shows up
    d = rt.config_diff(paths["ramguard"], "workbench_check", root)
    assert d["data.loader.batch_size"][1] == 96
    assert rt.config_diff(paths["live"], "workbench_check", root) == {}
    with pytest.raises(ValueError, match="not an experiment preset"):
        rt.reference_config("no_such_thing", root)


def test_robust_to_missing_and_broken_files(tmp_path):
    run = tmp_path / "scratch" / "2026-01-01_00-00-00_bare"
    run.mkdir(parents=True)
    (run / "status").write_text("FAILED\n")
    (run / "metrics.json").write_text("{ half a file")
    (run / "timeseries.csv").write_text("")
    row = rt.describe_run(run, tmp_path)
    assert (row.status, row.failure, row.steps, row.metrics) == ("FAILED", "exception", None, {})
    assert rt.read_timeseries(run).empty
    assert rt.config_diff(run, {"a": 1}) == {"a": (1, None)}


def test_hlrp_runs_cli(runs_root, capsys):
    root, _ = runs_root
    assert main(["runs", "--root", str(root), "--diff-against", "2026-02-18_22-05-43_good"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["run", "study", "status", "failure", "steps"]
    row = next(l for l in lines if l.startswith("2026-02-18_23-31-19_ramguard"))
    assert "FAILED" in row and "ram_guard" in row and " 15 " in row
    assert "why runs did not finish:" in out and "RamGuardError" in out and "LOST" in out
    assert "config diff vs run 2026-02-18_22-05-43_good:" in out
    assert "data.loader.batch_size=96 (was 48)" in out
    assert "2 FAILED" in out and "1 LOST" in out and "1 DONE" in out

    assert main(["runs", "--root", str(root), "--status", "DONE", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["DONE"] and rows[0]["verdict"] == "learning"

    assert main(["runs", "--root", str(root), "--diff-against", "nope"]) == 2
    assert "not an experiment preset" in capsys.readouterr().out


def test_hlrp_runs_console_script(runs_root):
    root, _ = runs_root
    exe = os.path.join(os.path.dirname(sys.executable), "hlrp")
    res = subprocess.run([exe, "runs", "--root", str(root), "--study", "ladders"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "LOST" in res.stdout and "oom_kill" in res.stdout and "good" not in res.stdout
