"""Executing a ladder: every launchable rung is its own papermill run under ``outputs/ladders/<ladder>/``.

    hlrp ladder run seed_2026_02_18 --backend local [--max-parallel 1]

- Before anything runs, the ladder is re-expanded; committed rung files that drifted from ``ladder.yaml`` are an
  error (run ``hlrp ladder expand`` and commit). ``invalid-config`` rungs are never launched; ``duplicate`` rungs
  are skipped unless ``include_duplicates``.
- For each rung the runner writes the merged notebook parameters (the ladder's ``experiment``/``overrides``/
  ``smoke``/``seed`` + the rung's ``rung_overrides``) to ``<ladder out>/params/rung_NNN.yaml``; the local backend
  passes that file to ``hlrp run`` in a child process (own session, so a rung can never leave a stray process:
  whatever is left in its process group is killed), the SLURM backend hands the files to
  ``hlrp_core.cluster.submit_array``.
- Run directories are ``<ladder out>/<timestamp>_<rung_id>``; the baseline runs ``baseline_repeats`` times.
- Re-running skips rungs that already have a finished run (``status`` DONE) and resumes the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from .. import runs
from ..config import ConfigError
from ..io import atomic_write_text
from ..paths import REPO_ROOT, output_root
from . import spec as ls

STALE_S = 600.0


@dataclass
class RungRun:
    rung_id: str
    run_dir: Optional[Path]
    status: str
    detail: str = ""


def ladder_out(name: str) -> Path:
    return output_root() / "ladders" / name


def _rung_of_dir(run_dir: Path, rung_ids: list[str]) -> Optional[str]:
    # <YYYY-MM-DD_HH-MM-SS>_<rung_id>[-N]
    tail = run_dir.name[20:] if len(run_dir.name) > 20 else ""
    base = tail.rsplit("-", 1)[0] if "-" in tail and tail.rsplit("-", 1)[1].isdigit() else tail
    return base if base in rung_ids else None


def runs_by_rung(name: str, rung_ids: list[str]) -> dict[str, list[Path]]:
    """Existing run directories of each rung, oldest first."""
    out: dict[str, list[Path]] = {r: [] for r in rung_ids}
    root = ladder_out(name)
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / runs.STATUS).exists()):
        rid = _rung_of_dir(d, rung_ids)
        if rid:
            out[rid].append(d)
    return out


def rung_status(run_dir: Path) -> tuple[str, str]:
    """The ladder status of one run directory: ``ladder/status`` from metrics.json when the notebook got that far,
    otherwise derived from the ``status`` file (a dead kernel -> ``oom``, a time limit -> ``timeout``)."""
    state, reason = runs.read_status(run_dir)
    m = runs.load_metrics(run_dir)
    if state == runs.DONE and m.get("ladder/status"):
        return str(m["ladder/status"]), str(m.get("ladder/error", ""))
    if state == runs.DONE:
        return "pass", ""
    if state == runs.RUNNING:
        age = time.time() - (run_dir / runs.STATUS).stat().st_mtime
        return ("running", "") if age < STALE_S else ("lost", f"RUNNING but no heartbeat for {age:.0f} s")
    low = reason.lower()
    if "ramguard" in low or "ram guard" in low:
        return "ram-guard", reason
    if "deadkernel" in low or "killed" in low or "memoryerror" in low:
        return "oom", reason
    if "timeout" in low or "timed out" in low:
        return "timeout", reason
    return "fail", reason


def write_params(spec: ls.LadderSpec, rung: ls.Rung) -> Path:
    """Merged notebook parameters of one rung (what papermill injects)."""
    d = ladder_out(spec.name) / "params"
    d.mkdir(parents=True, exist_ok=True)
    p = d / rung.filename
    body = {**spec.notebook_params(), "rung_overrides": list(rung.overrides)}
    atomic_write_text(p, f"# {spec.name} {rung.rung_id}: merged notebook parameters written by `hlrp ladder run`\n"
                         + yaml.safe_dump(body, sort_keys=False))
    return p


def _new_run_dir(name: str, rung_id: str) -> Path:
    parent = ladder_out(name)
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{runs.timestamp()}_{rung_id}"
    for i in range(1, 1000):
        p = parent / (base if i == 1 else f"{base}-{i}")
        if not p.exists():
            return p
    raise RuntimeError(f"no free run directory name under {parent}")


def plan(spec: ls.LadderSpec, rungs: list[ls.Rung], include_duplicates: bool = False) -> list[ls.Rung]:
    """Rungs still to run (one entry per missing run; the baseline appears up to ``baseline_repeats`` times)."""
    have = runs_by_rung(spec.name, [r.rung_id for r in rungs])
    todo = []
    for r in rungs:
        if r.status == ls.INVALID or (r.status == ls.DUPLICATE and not include_duplicates):
            continue
        want = spec.baseline_repeats if r.index == 0 else 1
        done = [d for d in have[r.rung_id] if runs.read_status(d)[0] == runs.DONE]
        todo += [r] * max(0, want - len(done))
    return todo


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_rung_local(spec: ls.LadderSpec, rung: ls.Rung, kernel: str = "", echo: bool = True) -> RungRun:
    """One rung in a child ``hlrp run`` (own session); returns its ladder status."""
    params = write_params(spec, rung)
    run_dir = _new_run_dir(spec.name, rung.rung_id)
    cmd = [sys.executable, "-m", "hlrp_core.ladder.run", str(spec.notebook), str(params), str(run_dir),
           str(spec.timeout_s), kernel]
    log_path = ladder_out(spec.name) / "params" / f"{rung.filename}.{run_dir.name}.log"
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "TQDM_DISABLE": "1"})
        try:
            proc.wait(timeout=spec.timeout_s * 3 + 120)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            if run_dir.exists() and runs.read_status(run_dir)[0] == runs.RUNNING:
                runs.write_status(run_dir, runs.FAILED, f"timeout: the rung exceeded {spec.timeout_s * 3 + 120:.0f} s")
        finally:
            _kill_group(proc.pid)  # never a stray process: the child's whole session goes
    if not run_dir.exists():
        tail = log_path.read_text()[-2000:]
        return RungRun(rung.rung_id, None, "fail", f"no run directory was created (exit {proc.returncode}): {tail}")
    status, detail = rung_status(run_dir)
    if echo:
        print(f"  {rung.rung_id:<48} {status:<10} {run_dir}", flush=True)
    return RungRun(rung.rung_id, run_dir, status, detail)


def run_local(spec: ls.LadderSpec, rungs: list[ls.Rung], max_parallel: int = 1, include_duplicates: bool = False,
              kernel: str = "") -> list[RungRun]:
    todo = plan(spec, rungs, include_duplicates)
    skipped = [r for r in rungs if r.status != ls.OK and not (r.status == ls.DUPLICATE and include_duplicates)]
    for r in skipped:
        print(f"  {r.rung_id:<48} {r.status:<10} not launched: {r.reason}", flush=True)
    print(f"hlrp ladder run {spec.name}: {len(todo)} run(s) to do -> {ladder_out(spec.name)}", flush=True)
    if max_parallel <= 1:
        return [run_rung_local(spec, r, kernel) for r in todo]
    with ThreadPoolExecutor(max_parallel) as pool:
        return list(pool.map(lambda r: run_rung_local(spec, r, kernel), todo))


def run_slurm(spec: ls.LadderSpec, rungs: list[ls.Rung], max_parallel: int = 0, cluster: str = "",
              include_duplicates: bool = False, dry_run: bool = False) -> Any:
    """Submit the rungs still to run as one SLURM job array (``hlrp_core.cluster.submit_array``); task i runs the
    merged parameter file of rung i into ``outputs/ladders/<ladder>/<timestamp>_<rung_id>`` like the local backend
    (baseline repeats are named ``<rung_id>-2``, ``-3``, ...)."""
    try:
        from ..cluster import submit_array
    except ImportError:
        raise ConfigError("--backend slurm needs hlrp_core.cluster.submit_array (the cluster issue), which is not "
                          "available in this checkout; use --backend local") from None
    if not cluster:
        raise ConfigError("--backend slurm needs --cluster <preset> (see hlrp_core/configs/cluster/)")
    todo = plan(spec, rungs, include_duplicates)
    if not todo:
        print(f"hlrp ladder run {spec.name}: nothing to submit (every launchable rung has a finished run)")
        return None
    files, names, seen = [], [], {}
    for r in todo:
        files.append(str(write_params(spec, r)))
        seen[r.rung_id] = seen.get(r.rung_id, 0) + 1
        names.append(r.rung_id if seen[r.rung_id] == 1 else f"{r.rung_id}-{seen[r.rung_id]}")
    return submit_array(files, spec.notebook, cluster, max_parallel, names=names, study=f"ladders/{spec.name}",
                        dry_run=dry_run)


def run_ladder(name: str, backend: str = "local", max_parallel: int = 1, include_duplicates: bool = False,
               cluster: str = "", kernel: str = "", dry_run: bool = False) -> list[RungRun] | Any:
    spec = ls.load_spec(name)
    rungs = ls.expand(spec)
    problems = ls.drift(spec, rungs)
    if problems:
        raise ConfigError([f"params/ladders/{spec.name}/{p}" for p in problems] +
                          [f"run `hlrp ladder expand {spec.name}` and commit the rung files before running"])
    if backend == "local":
        return run_local(spec, rungs, max_parallel, include_duplicates, kernel)
    if backend == "slurm":
        return run_slurm(spec, rungs, max_parallel, cluster, include_duplicates, dry_run)
    raise ConfigError(f"--backend {backend!r}: use local or slurm")


def _child(notebook: str, params: str, run_dir: str, timeout_s: str, kernel: str = "") -> int:
    """Entry of the per-rung child process (``python -m hlrp_core.ladder.run ...``)."""
    import logging

    from ..launch import KERNEL, execute

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    code, _ = execute(notebook, [params], [], run_dir=run_dir, kernel=kernel or KERNEL,
                      timeout_s=float(timeout_s) or None)
    return code


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
