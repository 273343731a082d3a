"""Thin wrappers over the SLURM commands (sbatch, scancel, scontrol, squeue, sacct). Nothing here knows about runs.

All functions take an optional ``cluster`` (``-M``) for multi-cluster sites. Commands find the controller through the
usual ``SLURM_CONF`` / default config, so tests simply set ``SLURM_CONF``.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Iterable

#: States after which a job never runs again.
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


class SlurmError(RuntimeError):
    pass


def available() -> bool:
    return shutil.which("sbatch") is not None


def _m(cluster: str | None) -> list[str]:
    return ["-M", cluster] if cluster else []


def _run(cmd: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]}: not found; is SLURM installed on this machine (login node)?") from None
    if check and r.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def sbatch(script: str, args: Iterable[str] = (), cluster: str | None = None) -> str:
    """Submit a script file; returns the job id (``--parsable``; ``id;cluster`` is cut to the id)."""
    r = _run(["sbatch", "--parsable", *_m(cluster), *args, script])
    return r.stdout.strip().split(";")[0]


def scancel(job_ids: Iterable[str], cluster: str | None = None) -> None:
    ids = [str(j) for j in job_ids if j]
    if ids:
        _run(["scancel", *_m(cluster), *ids], check=False)


def release(job_ids: Iterable[str], cluster: str | None = None) -> None:
    ids = [str(j) for j in job_ids if j]
    if ids:
        _run(["scontrol", *_m(cluster), "release", ",".join(ids)])


def squeue(job_ids: Iterable[str] | None = None, cluster: str | None = None) -> dict[str, dict]:
    """Live jobs: ``{job_id: {state, partition, elapsed, reason}}`` (array tasks as ``A_i``)."""
    r = _run(["squeue", *_m(cluster), "-h", "-o", "%i|%T|%P|%M|%r|%A"], check=False)
    out = {}
    want = {str(j) for j in job_ids} if job_ids is not None else None
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 6 or parts[0].startswith("CLUSTER"):
            continue
        jid, state, part, elapsed, reason, raw = parts[:6]
        rec = {"state": state, "partition": part, "elapsed": elapsed, "reason": reason, "raw_id": raw}
        if want is None or jid in want or raw in want:
            out[jid] = rec
            out.setdefault(raw, rec)
    return out


def sacct(job_ids: Iterable[str], cluster: str | None = None) -> dict[str, dict]:
    """Finished (or running) jobs from accounting: ``{job_id: {state, exit_code, partition, elapsed, start, end}}``.

    Uses real accounting (slurmdbd) when it is there; where accounting storage is disabled it falls back to
    ``sacct --completion`` (jobcomp/filetxt; finished jobs only, array tasks under their raw ids). Job steps
    (``123.batch``) are dropped; a ``CANCELLED by 0`` state is cut to ``CANCELLED``.
    """
    ids = [str(j) for j in job_ids if j]
    if not ids:
        return {}
    fmt = "JobID,JobIDRaw,State,ExitCode,Partition,Elapsed,Start,End,Submit"
    r = _run(["sacct", *_m(cluster), "-X", "--parsable2", "--noheader", "-o", fmt, "-j", ",".join(ids)], check=False)
    completion = False
    if r.returncode != 0:
        completion = True
        r = _run(["sacct", *_m(cluster), "--completion", "--parsable2", "--noheader", "-o",
                  "JobID,State,ExitCode,Partition,Elapsed,Start,End,Submit"], check=False)
    out = {}
    for line in r.stdout.splitlines():
        p = line.strip().split("|")
        if completion:
            if len(p) < 8:
                continue
            p = [p[0], p[0], *p[1:]]
        if len(p) < 9 or "." in p[0]:
            continue
        rec = {"state": p[2].split()[0] if p[2] else "", "exit_code": p[3], "partition": p[4], "elapsed": p[5],
               "start": p[6], "end": p[7], "submit": p[8]}
        for key in (p[0], p[1]):
            if key in ids:
                out[key] = rec
    return out


def states(job_ids: Iterable[str], cluster: str | None = None) -> dict[str, dict]:
    """squeue for live jobs, sacct for the rest. Jobs SLURM has forgotten are absent."""
    ids = [str(j) for j in job_ids if j]
    live = squeue(ids, cluster)
    rest = [j for j in ids if j not in live]
    done = sacct(rest, cluster) if rest else {}
    return {j: live.get(j) or done.get(j) for j in ids if live.get(j) or done.get(j)}
