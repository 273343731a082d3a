"""A small real ladder end to end (issue 7): expand -> run (local, real papermill + the data adapter on the embedded
data) -> report (CLI and the report notebook), plus a RAM-floor rung that must end as ``ram-guard``."""

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from hlrp_core import runs
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration
HLRP = [sys.executable, "-m", "hlrp_core.cli"]


def _hlrp(*args, out_root):
    env = {**os.environ, "HLRP_OUTPUT_ROOT": str(out_root)}
    return subprocess.run([*HLRP, *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=420)


def test_small_ladder_end_to_end(tmp_path, embedded_root):
    lad = tmp_path / "tiny_ladder"
    lad.mkdir()
    (lad / "ladder.yaml").write_text(textwrap.dedent(f"""
        # test ladder
        notebook: notebooks/20_speed_ladder.ipynb
        experiment: speed_ladder
        smoke: false
        baseline: ["data.root={embedded_root}", "data.loader.batch_size=16", "data.adapter.threads=1",
                   "training.max_steps=30"]
        axes:
          data.loader.batch_size: [32]
          training.ram_guard.min_available_mb: [100000000]
          data.adapter.tf.pipeline.interleave_parallelism: [2]
        baseline_repeats: 2
        timeout_s: 240
    """))
    out = tmp_path / "out"
    res = _hlrp("ladder", "expand", str(lad), out_root=out)
    assert res.returncode == 0, res.stderr
    assert "invalid-config" in res.stdout and len(list(lad.glob("rung_*.yaml"))) == 4

    children_before = {c.pid for c in psutil.Process().children(recursive=True)}
    res = _hlrp("ladder", "run", str(lad), "--backend", "local", out_root=out)
    assert res.returncode == 0, res.stdout + res.stderr
    run_dirs = sorted(p.parent for p in (out / "ladders" / "tiny_ladder").rglob("status"))
    assert len(run_dirs) == 4  # 2 baseline repeats + batch 32 + RAM floor; the invalid rung never launched
    assert not any("interleave_parallelism" in d.name for d in run_dirs)
    guard = [d for d in run_dirs if "ram_guard" in d.name]
    assert len(guard) == 1
    m = runs.load_metrics(guard[0])
    assert runs.read_status(guard[0])[0] == "DONE"          # stopped itself and recorded, not killed
    assert m["ladder/status"] == "ram-guard" and "floor" in m["ladder/error"]
    for d in run_dirs:
        if d not in guard:
            mm = runs.load_metrics(d)
            assert mm["ladder/status"] == "pass" and mm["ladder/samples_per_s"] > 0, d
            assert mm["ladder/workload"] == "adapter" and mm["ladder/stray_threads"] == 0
    assert {c.pid for c in psutil.Process().children(recursive=True)} <= children_before  # no stray process

    # re-running resumes: nothing left to do
    res = _hlrp("ladder", "run", str(lad), "--backend", "local", out_root=out)
    assert "0 run(s) to do" in res.stdout

    res = _hlrp("ladder", "report", str(lad), out_root=out)
    assert res.returncode == 0, res.stderr
    rows = [l for l in res.stdout.splitlines() if l.startswith("| r0")]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if "pass" in cells[4]:
            assert all(c and c != "—" for c in cells[:12]), row  # every column filled for measured rungs
    assert any("ram-guard" in r for r in rows) and any("invalid-config" in r for r in rows)
    assert "noise" in res.stdout and "best:" in res.stdout

    res = _hlrp("run", "notebooks/90_ladder_report.ipynb", "-p", f"study={lad}", out_root=out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (rep_dir,) = [p.parent for p in (out / "reports").rglob("status")]
    assert (rep_dir / "ladder_report.csv").exists() and (rep_dir / "ladder_report.md").exists()
    assert len(list((rep_dir / "figures").glob("*.png"))) == 3
    assert runs.load_metrics(rep_dir)["report/passing_rungs"] == 2
