"""`hlrp run` end to end with real papermill (issue 2 acceptance)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hlrp_core import runs
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration
HLRP = [sys.executable, "-m", "hlrp_core.cli"]


def _hlrp(*args, out_root):
    env = {**os.environ, "HLRP_OUTPUT_ROOT": str(out_root)}
    return subprocess.run([*HLRP, *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)


def _run_dirs(root: Path):
    return sorted(p.parent for p in root.rglob("status"))


def test_run_records_override_and_done(tmp_path):
    res = _hlrp("run", "notebooks/00_workbench_check.ipynb", "--set", "data.loader.batch_size=48", out_root=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = _run_dirs(tmp_path)
    assert str(run_dir) in res.stdout
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["loader"]["batch_size"] == 48
    assert runs.read_status(run_dir)[0] == "DONE"
    assert (run_dir / "notebook.ipynb").exists()
    assert runs.load_metrics(run_dir)["check/batch_size"] == 48
    log = (run_dir / "unified.log").read_text()
    assert "Executing Cell" in log or "Executing notebook" in log  # streamed papermill output
    assert "run DONE" in log  # the kernel's own logging


def test_typo_fails_before_any_work(tmp_path):
    res = _hlrp("run", "notebooks/00_workbench_check.ipynb", "--set", "data.loader.batch_sise=48", out_root=tmp_path)
    assert res.returncode == 2
    assert "batch_sise" in res.stderr and "batch_size" in res.stderr
    assert _run_dirs(tmp_path) == []  # nothing created, so nothing left RUNNING


def test_same_command_twice_gives_two_runs(tmp_path):
    for _ in range(2):
        assert _hlrp("run", "notebooks/00_workbench_check.ipynb", out_root=tmp_path).returncode == 0
    dirs = _run_dirs(tmp_path)
    assert len(dirs) == 2 and all(runs.read_status(d)[0] == "DONE" for d in dirs)


def test_failing_cell_marks_run_failed(tmp_path):
    res = _hlrp("run", "tests/fixtures/notebooks/fails_on_purpose.ipynb", out_root=tmp_path)
    assert res.returncode == 1
    (run_dir,) = _run_dirs(tmp_path)
    state, reason = runs.read_status(run_dir)
    assert state == "FAILED" and "RuntimeError" in reason and "deliberate failure" in reason
    assert "deliberate failure" in (run_dir / "unified.log").read_text()


def test_params_file_and_existing_run_dir_refused(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"overrides": ["training.max_steps=3"], "smoke": False}))
    target = tmp_path / "out" / "exact"
    res = _hlrp("run", "notebooks/00_workbench_check.ipynb", "-f", str(params), "--set", "data.loader.batch_size=4",
                "--run-dir", str(target), out_root=tmp_path)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((target / "config.yaml").read_text())
    assert cfg["training"]["max_steps"] == 3 and cfg["data"]["loader"]["batch_size"] == 4 and cfg["smoke"] is False
    again = _hlrp("run", "notebooks/00_workbench_check.ipynb", "--run-dir", str(target), out_root=tmp_path)
    assert again.returncode == 3 and "never overwritten" in again.stderr
    assert runs.read_status(target)[0] == "DONE"
