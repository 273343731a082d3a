"""The RAM guard inside a real memory cgroup (docs/ROBUSTNESS.md, "Memory limits"): a Stage-1 run whose cgroup
leaves less headroom than ``training.ram_guard.min_available_mb`` stops with a checkpoint, status FAILED naming the
limit and the usage, and a non-zero exit, although the host has gigabytes available (the guard's old blind spot).

Needs a writable cgroup v1 memory controller or a cgroup v2 tree with the memory controller (root on the dev/CI
machines); elsewhere it skips with the reason. The fake-tree unit tests (tests/unit/test_sysmem.py) cover the
arithmetic for both versions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hlrp_core import runs
from hlrp_core.paths import REPO_ROOT

pytestmark = pytest.mark.integration
MB = 1024 * 1024
LIMIT_MB = 6000  # far above what the run uses (~1-1.5 GB): the kernel OOM-killer never gets involved
GUARD_MB = 3000  # headroom floor: clear at start, crossed once the ballast below joins the cgroup
BALLAST_MB = 3000  # another process of the "job" taking memory mid-training (pages really touched)


def _make_cgroup() -> tuple[Path, str]:
    """(directory, the file that takes a pid) of a fresh memory cgroup limited to LIMIT_MB, or skip."""
    name = f"hlrp-test-{os.getpid()}"
    tries = [(Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "cgroup.procs"),
             (Path("/sys/fs/cgroup"), "memory.max", "cgroup.procs")]
    errors = []
    for base, limit_file, procs in tries:
        if not (base / limit_file).exists() and not (base / "cgroup.controllers").exists():
            errors.append(f"{base}: no memory controller")
            continue
        cg = base / name
        try:
            cg.mkdir()
            (cg / limit_file).write_text(str(LIMIT_MB * MB))
            return cg, procs
        except OSError as exc:
            errors.append(f"{cg}: {exc}")
            if cg.is_dir():
                cg.rmdir()
    pytest.skip("cannot create a memory cgroup here (" + "; ".join(errors) + ")")


def test_ram_guard_stops_a_run_at_its_cgroup_limit(tmp_path, embedded_root):
    assert psutil.virtual_memory().available > (LIMIT_MB + 1000) * MB
    cg, procs = _make_cgroup()
    join = lambda: (cg / procs).write_text(str(os.getpid()))  # noqa: E731  (runs in the child before exec)
    try:
        args = [sys.executable, "-m", "hlrp_core.cli", "run", "notebooks/10_train_laq.ipynb", "-f",
                "params/laq_tiny.yaml", "-f", "params/smoke.yaml", "--set", f"data.root={embedded_root}",
                "--set", "training.max_steps=5000", "--set", "training.checkpoint.every_n_train_steps=10",
                "--set", f"training.ram_guard.min_available_mb={GUARD_MB}"]
        run = subprocess.Popen(args, cwd=REPO_ROOT, env={**os.environ, "HLRP_OUTPUT_ROOT": str(tmp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=join)
        deadline = time.monotonic() + 300
        while not list(tmp_path.rglob("ckpt/last.ckpt")):  # training is under way: a checkpoint exists
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-3000:]
            time.sleep(0.5)
        ballast = subprocess.Popen([sys.executable, "-c", f"b = bytearray(b'\\x01') * ({BALLAST_MB} * 2**20); "
                                    "import time; time.sleep(600)"], preexec_fn=join)
        out, _ = run.communicate(timeout=300)
        ballast.kill()
        (run_dir,) = [p.parent for p in tmp_path.rglob("status")]
        state, reason = runs.read_status(run_dir)
        print(out[-2000:], state, reason, sep="\n")
        assert run.returncode != 0
        assert state == runs.FAILED and "ram_guard" in reason, reason
        assert f"limit {LIMIT_MB} MB" in reason and "usage" in reason, reason
        assert "resumable" in reason and (run_dir / "ckpt" / "last.ckpt").exists()
        step = runs.load_metrics(run_dir)["stopped_step"]
        assert 0 < step < 5000
    finally:
        for pid in (cg / procs).read_text().split():
            psutil.Process(int(pid)).kill()
        time.sleep(0.5)
        cg.rmdir()
