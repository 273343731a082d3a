"""Executing a ladder: every launchable rung is its own papermill run under ``outputs/ladders/<ladder>/``.

    hlrp ladder run seed_2026_02_18 --backend local [--max-parallel 1]

- Before anything runs, the ladder is re-expanded; committed rung files that drifted from ``ladder.yaml`` are an
  error (run ``hlrp ladder expand`` and commit). ``invalid-config`` rungs are never launched; ``duplicate`` rungs
  are skipped unless ``include_duplicates``.
- For each rung the runner writes the merged notebook parameters (the ladder's ``experiment``/``overrides``/
  ``smoke``/``seed`` + the rung's ``rung_overrides``) to ``<ladder out>/params/rung_NNN.yaml``; the local backend
  passes that file to ``hlrp run`` in a child process (own session, so a rung can never leave a stray process:
  whatever is left in its process group is killed), the SLURM backend hands the files to
  ``hlrp_core.cluster.submit_array`` (one job array, one task per run, ``--max-parallel`` = the array throttle;
  ``--wait`` blocks until the array ended and prints the same per-rung lines as the local backend).
- Run directories are ``<ladder out>/<timestamp>_<rung_id>``; the baseline runs ``baseline_repeats`` times. Both
  backends write the same run directories, so ``hlrp ladder report`` gives the same table for either.
- Re-running skips rungs that already have a finished run (``status`` DONE) and resumes the rest; the SLURM backend
  also skips runs its earlier arrays still have queued or running.
- A SLURM job killed by its time limit / the OOM killer never writes its ``status`` (it stays RUNNING):
  ``rung_status`` asks SLURM (``job.json`` in the run dir names the job) and shows ``timeout`` / ``oom`` / ``fail``.
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
#: SLURM end state of a job whose run still says RUNNING -> the ladder status (what the local backend would show)
SLURM_END = {"TIMEOUT": "timeout", "DEADLINE": "timeout", "OUT_OF_MEMORY": "oom", "CANCELLED": "fail",
             "PREEMPTED": "fail", "NODE_FAIL": "fail", "BOOT_FAIL": "fail", "FAILED": "fail", "COMPLETED": "fail"}


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
    if state == runs.RUNNING and (run_dir / "job.json").exists():
        # a SLURM job killed by its time limit / the OOM killer / scancel never writes its status: ask SLURM
        from ..cluster.jobs import slurm_state_of_run

        sstate = slurm_state_of_run(run_dir)
        if sstate in SLURM_END:
            status = SLURM_END[sstate]
            return status, f"SLURM job {_job_id(run_dir)} ended {sstate}" + (
                "; the run never wrote its status" if sstate in ("COMPLETED", "FAILED") else "")
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


def _job_id(run_dir: Path) -> str:
    from ..io import read_json

    return str((read_json(run_dir / "job.json", default={}) or {}).get("job_id", "?"))


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


def plan(spec: ls.LadderSpec, rungs: list[ls.Rung], include_duplicates: bool = False,
         in_flight: Optional[dict[str, int]] = None) -> list[ls.Rung]:
    """Rungs still to run (one entry per missing run; the baseline appears up to ``baseline_repeats`` times).
    ``in_flight``: rung id -> runs already queued or running as SLURM jobs (counted as done here)."""
    have = runs_by_rung(spec.name, [r.rung_id for r in rungs])
    todo = []
    for r in rungs:
        if r.status == ls.INVALID or (r.status == ls.DUPLICATE and not include_duplicates):
            continue
        want = spec.baseline_repeats if r.index == 0 else 1
        done = [d for d in have[r.rung_id] if runs.read_status(d)[0] == runs.DONE]
        todo += [r] * max(0, want - len(done) - (in_flight or {}).get(r.rung_id, 0))
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


def in_flight(spec: ls.LadderSpec, rung_ids: list[str]) -> dict[str, int]:
    """Rung id -> array tasks of this ladder that SLURM still has queued or running (a second ``ladder run
    --backend slurm`` must not submit them again)."""
    from ..cluster.jobs import list_jobs
    from ..cluster.slurm import FINAL
    from ..io import read_json

    root, subs, counts = ladder_out(spec.name), {}, {}
    for row in list_jobs(limit=200):
        if row["role"] != "main" or not row["slurm_state"] or row["slurm_state"] in FINAL:
            continue
        if row["submission"] not in subs:
            subs[row["submission"]] = read_json(Path(row["submission"]) / "submission.json", default={}) or {}
        sub = subs[row["submission"]]
        if not sub.get("array") or "_" not in row["job_id"]:
            continue
        planned = Path(sub["slots"][int(row["job_id"].rsplit("_", 1)[1])]["run_dir"])
        rid = _rung_of_dir(planned, rung_ids) if planned.parent == root else None
        if rid:
            counts[rid] = counts.get(rid, 0) + 1
    return counts


def wait_array(sub: Any, spec: ls.LadderSpec, rung_ids: list[str], timeout_s: float, poll_s: float = 2.0,
               echo: bool = True) -> list[RungRun]:
    """Wait until every task of the ladder array ``sub`` has ended in SLURM, then return each task's ladder status
    (from its run directory, reconciled with SLURM's end state), printed like the local backend's lines."""
    from ..cluster.jobs import list_jobs
    from ..cluster.slurm import FINAL

    deadline = time.monotonic() + timeout_s
    n = len(sub.run_dirs)
    while True:
        rows = [r for r in list_jobs(limit=200) if r["submission"] == str(sub.dir) and r["role"] == "main"]
        # ended: SLURM says so, or SLURM forgot the job and its run wrote a final status
        if len(rows) >= n and all(r["slurm_state"] in FINAL or (r["slurm_state"] is None and r["run_status"] in (
                runs.DONE, runs.FAILED)) for r in rows):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"ladder array {sub.job_ids}: not finished after {timeout_s:.0f} s "
                               f"(states: {sorted({str(r['slurm_state']) for r in rows})}); see `hlrp jobs`")
        time.sleep(poll_s)
    by_dir = {r["run_dir"]: r for r in rows if r["run_dir"]}
    out = []
    for planned in sub.run_dirs:
        d = Path(planned)
        rid = _rung_of_dir(d, rung_ids) or d.name[20:]
        if d.is_dir() and (d / runs.STATUS).exists():
            status, detail = rung_status(d)
        else:
            row = by_dir.get(planned) or next((r for r in rows if r["run"] == d.name[20:]), {})
            status, detail, d = "fail", f"no run directory (SLURM job {row.get('job_id', '?')} ended " \
                                        f"{row.get('slurm_state', '?')})", None
        if echo:
            print(f"  {rid:<48} {status:<10} {d if d else detail}", flush=True)
        out.append(RungRun(rid, d, status, detail))
    return out


def run_slurm(spec: ls.LadderSpec, rungs: list[ls.Rung], max_parallel: int = 0, cluster: str = "",
              include_duplicates: bool = False, dry_run: bool = False, wait: bool = False,
              wait_timeout_s: Optional[float] = None) -> Any:
    """Submit the rungs still to run as one SLURM job array (``hlrp_core.cluster.submit_array``, at most
    ``max_parallel`` tasks at once); task i runs the merged parameter file of rung i into
    ``outputs/ladders/<ladder>/<timestamp>_<rung_id>`` like the local backend (baseline repeats are named
    ``<rung_id>-2``, ``-3``, ...), so ``hlrp ladder report`` reads both the same way. Rungs already queued or running
    in an earlier array of this ladder are not submitted again.

    Returns the ``Submission``; with ``wait`` it blocks until every task ended and returns ``list[RungRun]`` like
    ``run_local`` (``wait_timeout_s``: default the rung timeout x waves of ``max_parallel`` + 10 min)."""
    try:
        from ..cluster import submit_array
    except ImportError:
        raise ConfigError("--backend slurm needs hlrp_core.cluster.submit_array (the cluster issue), which is not "
                          "available in this checkout; use --backend local") from None
    if not cluster:
        raise ConfigError("--backend slurm needs --cluster <preset> (see hlrp_core/configs/cluster/)")
    ids = [r.rung_id for r in rungs]
    queued = {} if dry_run else in_flight(spec, ids)
    todo = plan(spec, rungs, include_duplicates, queued)
    for r in rungs:
        if r.status != ls.OK and not (r.status == ls.DUPLICATE and include_duplicates):
            print(f"  {r.rung_id:<48} {r.status:<10} not launched: {r.reason}", flush=True)
    if queued:
        print(f"  already queued/running in SLURM (not submitted again): "
              f"{', '.join(f'{k} x{v}' for k, v in sorted(queued.items()))}", flush=True)
    if not todo:
        print(f"hlrp ladder run {spec.name}: nothing to submit (every launchable rung has a finished or queued run)")
        return [] if wait else None
    print(f"hlrp ladder run {spec.name}: {len(todo)} run(s) to do -> {ladder_out(spec.name)} (SLURM array)",
          flush=True)
    files, names, seen = [], [], {}
    for r in todo:
        files.append(str(write_params(spec, r)))
        seen[r.rung_id] = seen.get(r.rung_id, 0) + 1
        names.append(r.rung_id if seen[r.rung_id] == 1 else f"{r.rung_id}-{seen[r.rung_id]}")
    sub = submit_array(files, spec.notebook, cluster, max_parallel, names=names, study=f"ladders/{spec.name}",
                       dry_run=dry_run, cell_timeout_s=spec.timeout_s)
    if not wait or dry_run:
        return sub
    print(sub.describe(), flush=True)
    waves = -(-len(todo) // max_parallel) if max_parallel > 0 else len(todo)
    return wait_array(sub, spec, ids, wait_timeout_s or (spec.timeout_s * waves + 600))


def run_ladder(name: str, backend: str = "local", max_parallel: int = 1, include_duplicates: bool = False,
               cluster: str = "", kernel: str = "", dry_run: bool = False, wait: bool = False) -> list[RungRun] | Any:
    spec = ls.load_spec(name)
    rungs = ls.expand(spec)
    problems = ls.drift(spec, rungs)
    if problems:
        raise ConfigError([f"params/ladders/{spec.name}/{p}" for p in problems] +
                          [f"run `hlrp ladder expand {spec.name}` and commit the rung files before running"])
    if backend == "local":
        return run_local(spec, rungs, max_parallel, include_duplicates, kernel)
    if backend == "slurm":
        return run_slurm(spec, rungs, max_parallel, cluster, include_duplicates, dry_run, wait)
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
