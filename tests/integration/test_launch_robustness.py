"""`hlrp run` under faults: SIGTERM mid-training -> FAILED (interrupted, resumable) with a checkpoint within seconds;
bad inputs -> a clear error and no run directory; a read-only output root -> a clear error (docs/ROBUSTNESS.md)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hlrp_core import runs
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration
HLRP = [sys.executable, "-m", "hlrp_core.cli"]
LAQ = "notebooks/10_train_laq.ipynb"


def _env(out_root):
    return {**os.environ, "HLRP_OUTPUT_ROOT": str(out_root)}


def _hlrp(*args, out_root, timeout=300):
    return subprocess.run([*HLRP, *args], capture_output=True, text=True, cwd=REPO_ROOT, env=_env(out_root),
                          timeout=timeout)


def _run_dirs(root: Path):
    return sorted(p.parent for p in Path(root).rglob("status"))


def _steps(run_dir: Path) -> int:
    path = run_dir / "timeseries.csv"
    if not path.exists():
        return 0
    rows = list(csv.DictReader(path.open()))
    return max((int(r["step"]) for r in rows if r.get("step")), default=0)


def test_sigterm_to_hlrp_run_fails_resumable_with_checkpoint(tmp_path, embedded_root):
    proc = subprocess.Popen([*HLRP, "run", LAQ, "--set", f"data.root={embedded_root}", "--set",
                             "training.max_steps=100000", "--set", "training.log_every_n_steps=1", "--set",
                             "training.validation.check_interval=100000", "--stop-grace", "60"],
                            cwd=REPO_ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            dirs = _run_dirs(tmp_path)
            if dirs and _steps(dirs[0]) >= 3:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(1)
        else:
            pytest.fail("training did not reach step 3 within 240 s")
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    (run_dir,) = _run_dirs(tmp_path)
    state, reason = runs.read_status(run_dir)
    assert state == "FAILED" and "interrupted at step " in reason and "(resumable)" in reason, (reason, out)
    step = int(reason.split("interrupted at step ")[1].split()[0])
    import torch

    assert torch.load(run_dir / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == step
    assert proc.returncode == 128 + signal.SIGTERM
    assert not (run_dir / "stop_request").exists() and not (run_dir / "artifacts" / "laq_artifact.pt").exists()
    print(f"SIGTERM -> FAILED in {took:.1f} s at step {step}")
    assert took < 60


@pytest.mark.parametrize("args, expect", [
    (["--set", "training.resume_from=outputs"], "is a directory; point it at a checkpoint file"),
    (["--set", "training.resume_from=/nonexistent/last.ckpt"], "no such checkpoint"),
    (["--set", "data.root=/nonexistent/mirror"], "data.root='/nonexistent/mirror': no such directory"),
    (["--set", "training.betas[0]=0.8"], "list elements cannot be set one by one"),
])
def test_bad_inputs_fail_before_a_run_dir(tmp_path, args, expect):
    res = _hlrp("run", LAQ, *args, out_root=tmp_path)
    assert res.returncode == 2 and expect in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and _run_dirs(tmp_path) == []


def test_truncated_checkpoint_and_bad_params_files(tmp_path):
    trunc = tmp_path / "last.ckpt"
    trunc.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    res = _hlrp("run", LAQ, "--set", f"training.resume_from={trunc}", out_root=tmp_path / "o1")
    assert res.returncode == 2 and "not a readable torch checkpoint (truncated" in res.stderr, res.stderr
    cases = {"notyaml.yaml": ("experiment: laq_tiny\noverrides: [a\n  - b: :\n", "is not valid YAML at line"),
             "badtype.yaml": ("seed: abc\n", "parameter seed='abc' is a str"),
             "strover.yaml": ("overrides: \"training.max_steps=5\"\n", "parameter overrides='training.max_steps=5' "
                                                                         "is a str")}
    for name, (text, expect) in cases.items():
        (tmp_path / name).write_text(text)
        res = _hlrp("run", LAQ, "-f", str(tmp_path / name), out_root=tmp_path / name)
        assert res.returncode == 2 and expect in res.stderr and "Traceback" not in res.stderr, (name, res.stderr)
        if name == "notyaml.yaml":
            assert str(tmp_path / name) in res.stderr
        assert _run_dirs(tmp_path / name) == []


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (``tmpfs(size, ro=False)``); skipped where mounting is not permitted (not root / no
    CAP_SYS_ADMIN). Unmounted at the end."""
    mounted = []

    def mount(size: str, ro: bool = False) -> Path:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}); needs root")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_full_disk_fails_with_the_path_and_no_half_checkpoint(tmpfs):
    root = tmpfs("2m")  # holds the run's small files, not one 3 MB laq_tiny checkpoint
    res = _hlrp("run", LAQ, out_root=root)
    assert res.returncode == 1, res.stdout + res.stderr
    (run_dir,) = _run_dirs(root)
    state, reason = runs.read_status(run_dir)
    assert state == "FAILED" and "cannot write checkpoint" in reason and "disk (or quota) is full" in reason, reason
    assert "free space there:" in reason and "HLRP_OUTPUT_ROOT" in reason
    ckpts = list((run_dir / "ckpt").glob("*")) if (run_dir / "ckpt").exists() else []
    assert ckpts == [], ckpts  # neither a truncated step_*.ckpt nor a temp file is left behind
    from hlrp_core.analysis.runs_table import describe_run

    assert describe_run(run_dir).failure == "disk"


def test_read_only_output_root(tmpfs):
    ro = tmpfs("1m", ro=True)
    res = _hlrp("run", "notebooks/00_workbench_check.ipynb", out_root=ro)
    assert res.returncode == 2 and "cannot write run directory" in res.stderr and "read-only" in res.stderr, \
        res.stderr
    assert "free space there" in res.stderr and "Traceback" not in res.stderr
