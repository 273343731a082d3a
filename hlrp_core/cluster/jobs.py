"""``hlrp jobs``: this project's SLURM jobs, with SLURM's state reconciled against each run's ``status`` file.

A job killed by its time limit or the OOM killer never gets to write FAILED: its ``status`` says RUNNING for ever.
``list_jobs`` asks ``squeue`` (live jobs) and ``sacct`` (finished ones; ``--completion`` where accounting storage is
off) and shows TIMEOUT / OUT_OF_MEMORY / NODE_FAIL / PREEMPTED / CANCELLED instead. A dual-queue loser shows as
``CANCELLED (twin <id> won)``; a RUNNING status with a stale heartbeat and no SLURM record shows as ``LOST``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from .. import runs
from . import slurm
from .submit import load_submission, submissions_root

#: SLURM end states that mean "the run did not end by itself"; they win over a stale RUNNING status.
KILLED = {"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "DEADLINE", "BOOT_FAIL", "CANCELLED"}
STALE_HEARTBEAT_S = 30 * 60


def reconcile(slurm_state: str | None, run_status: str, heartbeat_age_s: float | None) -> str:
    """One displayed state from SLURM's state and the run's ``status`` file."""
    s = (slurm_state or "").split()[0] if slurm_state else ""
    if s in ("PENDING", "CONFIGURING", "REQUEUED", "SUSPENDED", "RESIZING"):
        return s
    if s in ("RUNNING", "COMPLETING"):
        return run_status if run_status in (runs.DONE, runs.FAILED) else "RUNNING"
    if s in KILLED:
        return runs.DONE if run_status == runs.DONE else s
    if s in ("COMPLETED", "FAILED"):
        if run_status in (runs.DONE, runs.FAILED):
            return run_status
        return "FAILED" if s == "FAILED" or run_status == runs.RUNNING else "COMPLETED"
    # SLURM does not know the job (purged, or another cluster): trust the status, unless its heartbeat is stale
    if run_status == runs.RUNNING and heartbeat_age_s is not None and heartbeat_age_s > STALE_HEARTBEAT_S:
        return "LOST"
    return run_status if run_status != "MISSING" else (s or "UNKNOWN")


def _last_line(run_dir: Path) -> str:
    for name in (runs.LOG, *sorted(p.name for p in run_dir.glob("slurm-*.out"))):
        p = run_dir / name
        if p.exists():
            with open(p, "rb") as f:
                f.seek(max(0, p.stat().st_size - 4096))
                lines = [l for l in f.read().decode(errors="replace").splitlines() if l.strip()]
            if lines:
                return lines[-1].strip()[:160]
    return ""


def _run_dir_of(sub_dir: Path, sub: dict, job: dict, slot: int) -> str:
    """The run directory a job wrote (if any): the claimed slot for main jobs, the record for resume follow-ups."""
    jid = f"{job['job_id']}_{slot}" if sub.get("array") else job["job_id"]
    if job.get("role") == "resume":
        rec = sub_dir / "records" / f"gen{job.get('gen', 1)}_slot{slot}.json"
        if rec.exists():
            import json

            r = json.loads(rec.read_text())
            return r["run_dir"] if r.get("job_id") == jid else ""
        return ""
    claim = sub_dir / "claims" / str(slot) / "job_id"
    if claim.exists() and claim.read_text().strip() == jid:
        return sub["slots"][slot]["run_dir"]
    return ""


def _raw_id(sub_dir: Path, sub: dict, job: dict, slot: int) -> str:
    """The SLURM job id of array task ``<job>_<slot>`` once it started (written by the twin that claimed the slot).
    ``squeue`` and real accounting know a task as ``A_i``; ``sacct --completion`` (jobcomp/filetxt) only by this id."""
    if not sub.get("array") or job.get("role") != "main":
        return ""
    claim = sub_dir / "claims" / str(slot)
    jid = f"{job['job_id']}_{slot}"
    try:
        if (claim / "job_id").read_text().strip() == jid:
            return (claim / "raw_job_id").read_text().strip()
    except OSError:
        pass
    return ""


def _state_of(known: dict, job: dict, jid: str, raw: str) -> dict | None:
    """SLURM's record of one row. An array task that started is found as ``A_i`` or by its own raw id (never by the
    array's id ``A``, which the last task to start takes over); one that has not started (or never will: a cancelled
    array, a dual-queue loser) shares the array's record (a pending array is one ``A_[i-j]`` line with raw id ``A``)."""
    c = job.get("slurm_cluster")
    st = known.get((c, jid)) or (known.get((c, raw)) if raw else None)
    if st is None and not raw:
        st = known.get((c, job["job_id"]))
    return st


def slurm_state_of_run(run_dir: str | Path) -> str | None:
    """SLURM's state of the job that ran ``run_dir`` (from its ``job.json``), or None when it was not a SLURM job
    or SLURM does not know the job (any more)."""
    from ..io import read_json

    info = read_json(Path(run_dir) / "job.json", default=None)
    if not info or not info.get("job_id") or not slurm.available():
        return None
    ids = [i for i in (info.get("job_id"), info.get("raw_job_id")) if i]
    sub = read_json(Path(info.get("submission", "")) / "submission.json", default=None) or {}
    cluster = ((sub.get("presets") or {}).get(info.get("preset", "")) or {}).get("slurm_cluster")
    try:
        st = slurm.states(ids, cluster)
    except slurm.SlurmError:
        return None
    rec = next((st[i] for i in ids if i in st), None)
    return rec["state"] if rec else None


def list_jobs(limit: int = 50) -> list[dict]:
    """Rows (newest submission first): run, job_id, preset, partition, state, slurm_state, run_status, elapsed,
    run_dir, last_line, submission."""
    root = submissions_root()
    subs = sorted((p for p in root.glob("*") if (p / "submission.json").exists()), key=lambda p: p.name,
                  reverse=True)[:limit] if root.is_dir() else []
    loaded = [(p, load_submission(p)) for p in subs]
    wanted: dict = defaultdict(set)
    for p, sub in loaded:
        for j in sub["jobs"]:
            n = len(sub["slots"]) if sub.get("array") else 1
            ids = [f"{j['job_id']}_{i}" for i in range(n)] if sub.get("array") else [j["job_id"]]
            raws = [_raw_id(p, sub, j, i) for i in range(n)]
            wanted[j.get("slurm_cluster")].update(ids + [j["job_id"]] + [r for r in raws if r])
    known: dict = {}
    for cluster, ids in wanted.items():
        try:
            for jid, st in slurm.states(sorted(ids), cluster).items():
                known[(cluster, jid)] = st
        except slurm.SlurmError:
            pass
    rows = []
    now = time.time()
    for p, sub in loaded:
        for j in sub["jobs"]:
            slots = range(len(sub["slots"])) if sub.get("array") else [0]
            for slot in slots:
                jid = f"{j['job_id']}_{slot}" if sub.get("array") else j["job_id"]
                st = _state_of(known, j, jid, _raw_id(p, sub, j, slot))
                sstate = st["state"] if st else None
                run_dir = _run_dir_of(p, sub, j, slot)
                rd = Path(run_dir) if run_dir else None
                if rd is not None and rd.is_dir():
                    status, reason = runs.read_status(rd)
                    age = now - (rd / runs.STATUS).stat().st_mtime if (rd / runs.STATUS).exists() else None
                else:
                    status, reason, age = "MISSING", "", None
                state = reconcile(sstate, status, age)
                claim = p / "claims" / str(slot) / "job_id"
                winner = claim.read_text().strip() if claim.exists() else ""
                if j.get("role") == "main" and winner and winner != jid and sstate in (None, "CANCELLED",
                                                                                       "COMPLETED"):
                    state = f"CANCELLED (twin {winner} won)"
                if j.get("role") == "resume" and not run_dir and sstate in slurm.FINAL:
                    state = "SKIPPED (nothing to resume)" if sstate == "COMPLETED" else state
                name = Path(sub["slots"][slot]["run_dir"]).name.split("_", 2)[-1]
                rows.append({"run": name + (f" (resume {j.get('gen')})" if j.get("role") == "resume" else ""),
                             "job_id": jid, "preset": j["preset"], "partition": j["partition"], "role": j["role"],
                             "state": state, "slurm_state": sstate, "run_status": status, "reason": reason,
                             "elapsed": (st or {}).get("elapsed", ""), "run_dir": run_dir,
                             "last_line": _last_line(rd) if rd is not None and rd.is_dir() else "",
                             "segments": runs.read_segments(rd) if rd is not None and rd.is_dir() else [],
                             "submission": str(p)})
    return rows


def format_rows(rows: list[dict]) -> str:
    cols = [("run", 28), ("job_id", 10), ("preset", 14), ("state", 26), ("elapsed", 10), ("run_dir", 0),
            ("last_line", 0)]
    head = "  ".join(c.upper().ljust(w) if w else c.upper() for c, w in cols)
    out = [head]
    for r in rows:
        out.append("  ".join((str(r[c]) or "-")[:max(w, 1) if w else None].ljust(w) if w else (str(r[c]) or "-")
                             for c, w in cols))
    from ..analysis.runs_table import format_segment  # noqa: PLC0415 - same floor (6), text only

    for r in rows:
        if len(r.get("segments") or []) > 1:  # requeued / resumed: one line per segment
            out += [f"    {r['run']} {format_segment(s)}" for s in r["segments"]]
    return "\n".join(out) if rows else "no hlrp jobs under " + str(submissions_root())
