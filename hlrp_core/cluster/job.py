"""The job side: ``python -m hlrp_core.cluster.job <submission dir>``, run by the sbatch script on the code snapshot
(after the bash dual-queue claim). It runs ``hlrp run NOTEBOOK ... --run-dir <planned dir>`` as a child, streams its
output to SLURM's log and (once the run directory exists) to ``<run>/slurm-<jobid>.out``, and writes:

- ``<run>/job.json``: submission, job id, preset/partition, queue wait of the winner and of each cancelled twin,
  submitted / running / live-checkout commits, code snapshot, notebook + params + overrides (what ``resume`` needs),
  ``resumed_from``, exit code;
- ``env.json`` gains a ``job`` block with the same facts (``runs.capture_env`` already records ``git_sha`` of the code
  that runs, i.e. the snapshot, and ``submitted_git_sha``);
- ``<run>/resumed_from``: the old run directory, for a resumed run.

A resume follow-up (``HLRP_ROLE=resume``, generation ``HLRP_RESUME_GEN``) first looks at how the previous generation's
job ended: only TIMEOUT / PREEMPTED / NODE_FAIL are resumed (a new run dir ``<name>_resume<gen>`` with
``training.resume_from=<old>/ckpt/last.ckpt``), and it queues the next follow-up while budget is left. Anything else
(DONE, FAILED, a cancelled run) ends the chain at once.

SIGTERM (scancel, time limit, preemption) is not forwarded to the kernel by papermill; the job appends one line to
``unified.log`` and passes the signal on. ``status`` stays RUNNING; ``hlrp jobs`` takes the final state from SLURM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import runs
from ..io import atomic_write_json, read_json
from ..paths import REPO_ROOT
from ..stopping import time_limit_grace
from . import slurm

RESUMABLE = {"TIMEOUT", "PREEMPTED", "NODE_FAIL"}


def _git_head(path: str | Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _my_id() -> str:
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID", "")


def _claim_info(sub_dir: Path, slot: int, sub: dict) -> dict:
    """Which twin won, when, and how long each twin waited (winner: submit -> start; losers: submit -> cancel)."""
    claim = sub_dir / "claims" / str(slot)
    if not claim.is_dir():
        return {}
    read = lambda n: (claim / n).read_text().strip() if (claim / n).exists() else ""  # noqa: E731
    claimed_at = float(read("claimed_at") or time.time())
    cancelled = read("cancelled").split()
    waits = {}
    for j in sub["jobs"]:
        if j.get("role") != "main":
            continue
        jid = f"{j['job_id']}_{slot}" if sub.get("array") else j["job_id"]
        waits[jid] = {"preset": j["preset"], "partition": j["partition"],
                      "waited_s": round(claimed_at - j["submitted_at"], 1),
                      "outcome": "won" if jid == read("job_id") else "cancelled" if jid in cancelled else "lost"}
    return {"winner_job_id": read("job_id"), "winner_preset": read("preset"), "winner_partition": read("partition"),
            "claimed_at": claimed_at, "twins": waits}


def _previous(sub_dir: Path, sub: dict, slot: int, gen: int) -> tuple[str, str]:
    """(job id, run dir) of generation ``gen`` for ``slot``."""
    if gen == 0:
        claim = sub_dir / "claims" / str(slot) / "job_id"
        return (claim.read_text().strip() if claim.exists() else ""), sub["slots"][slot]["run_dir"]
    rec = read_json(sub_dir / "records" / f"gen{gen}_slot{slot}.json", default={}) or {}
    return rec.get("job_id", ""), rec.get("run_dir", "")


def requeue_decision(run_dir: str | Path, got_signal: str, restart_count: int, max_requeues: int) -> tuple[bool, str]:
    """(requeue?, why): only after the time-limit signal stopped the training with a checkpoint, and under the cap."""
    state, reason = runs.read_status(run_dir)
    if got_signal != "SIGUSR1":
        return False, f"no time-limit signal (got {got_signal or 'none'})"
    if state == runs.DONE:
        return False, "the run finished before the limit"
    if not reason.startswith("time limit signal at step") or not (Path(run_dir) / "ckpt" / "last.ckpt").exists():
        return False, f"the run did not stop with a checkpoint ({state}: {reason[:120]})"
    if restart_count >= max_requeues:
        return False, (f"cluster.max_requeues={max_requeues} reached (restart {restart_count}); continue with "
                       f"`hlrp resume {run_dir} --cluster <preset>` or raise the cap")
    return True, f"requeue {restart_count + 1} of {max_requeues}: {reason[:120]}"


def _final_state(job_id: str, cluster: str | None, wait_s: float = 20) -> str:
    deadline = time.time() + wait_s
    while True:
        st = slurm.states([job_id], cluster).get(job_id)
        if st and st["state"] in slurm.FINAL:
            return st["state"]
        if time.time() > deadline:
            return st["state"] if st else "UNKNOWN"
        time.sleep(1)


def _queue_followup(sub_dir: Path, sub: dict, preset: dict, gen: int) -> None:
    script = sub_dir / f"job_{preset['name']}.sh"
    args = [f"--dependency=afterany:{os.environ['SLURM_JOB_ID']}",
            f"--export=ALL,HLRP_ROLE=resume,HLRP_RESUME_GEN={gen}"]
    job_id = slurm.sbatch(str(script), args, preset.get("slurm_cluster"))
    with open(sub_dir / "followups.jsonl", "a") as f:
        f.write(json.dumps({"job_id": job_id, "preset": preset["name"], "partition": preset["partition"],
                            "slurm_cluster": preset.get("slurm_cluster"), "role": "resume", "gen": gen,
                            "submitted_at": time.time()}) + "\n")
    print(f"hlrp job: queued resume follow-up {job_id} (generation {gen})", flush=True)


def main(argv: list[str]) -> int:
    sub_dir = Path(argv[0])
    started = time.time()
    sub = json.loads((sub_dir / "submission.json").read_text())
    slot = int(os.environ.get("SLURM_ARRAY_TASK_ID") or 0)
    role = os.environ.get("HLRP_ROLE", "main")
    gen = int(os.environ.get("HLRP_RESUME_GEN", "0")) if role == "resume" else 0
    job_id = _my_id()
    preset = sub["presets"].get(os.environ.get("HLRP_PRESET", ""), next(iter(sub["presets"].values())))
    slot_rec = sub["slots"][slot]
    sets = list(sub["sets"])
    run_dir = slot_rec["run_dir"]
    resumed_from = sub.get("resumed_from")

    if role == "resume":
        prev_id, prev_dir = _previous(sub_dir, sub, slot, gen - 1)
        state = _final_state(prev_id, preset.get("slurm_cluster")) if prev_id else "NOT_STARTED"
        if state not in RESUMABLE:
            print(f"hlrp job: previous job {prev_id or '-'} ended {state}; nothing to resume", flush=True)
            return 0
        base = Path(sub["slots"][slot]["run_dir"])
        name = base.name.split("_", 2)[-1]
        run_dir = str(base.parent / f"{runs.timestamp()}_{name}_resume{gen}")
        resumed_from = prev_dir
        sets = [s for s in sets if not s.startswith("training.resume_from=")]
        ckpt = Path(prev_dir) / "ckpt" / "last.ckpt"
        if ckpt.exists():
            sets.append(f"training.resume_from={ckpt}")
        else:
            print(f"hlrp job: {ckpt} does not exist; the resumed run starts from scratch", flush=True)
        (sub_dir / "records").mkdir(exist_ok=True)
        atomic_write_json(sub_dir / "records" / f"gen{gen}_slot{slot}.json",
                          {"job_id": job_id, "run_dir": run_dir, "resumed_from": prev_dir, "previous_state": state})
        print(f"hlrp job: previous job {prev_id} ended {state}; resuming {prev_dir} -> {run_dir}", flush=True)
        if gen < int(sub.get("auto_resume") or 0):
            _queue_followup(sub_dir, sub, preset, gen + 1)

    info = {
        "submission": str(sub_dir), "job_id": job_id, "raw_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "role": role, "generation": gen, "slot": slot,
        "preset": preset["name"], "partition": os.environ.get("SLURM_JOB_PARTITION", preset.get("partition")),
        "node": os.environ.get("SLURMD_NODENAME", ""), "started_at": started,
        "submitted_commit": sub.get("submitted_commit", ""), "submitted_dirty": sub.get("dirty", False),
        "running_commit": _git_head(REPO_ROOT), "code": str(REPO_ROOT),
        "checkout_commit_at_start": _git_head(sub.get("source", "")) if sub.get("source") else "",
        "notebook": sub["notebook"], "params": slot_rec["params"], "sets": sets, "resumed_from": resumed_from,
        "dual_queue": _claim_info(sub_dir, slot, sub) if role == "main" else {},
        "cell_timeout_s": float(sub.get("cell_timeout_s") or 0),
    }
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restart and (Path(run_dir) / runs.CONFIG).exists():  # requeued: continue the same run as a new segment
        cmd = [sys.executable, "-m", "hlrp_core.cli", "resume", run_dir, "--stale-after", "0"]
    else:
        cmd = [sys.executable, "-m", "hlrp_core.cli", "run", sub["notebook"],
               *sum((["-f", p] for p in slot_rec["params"]), []), *sum((["--set", s] for s in sets), []),
               "--run-dir", run_dir]
    if info["cell_timeout_s"] > 0:  # a ladder rung's timeout_s, as the local backend applies it
        cmd += ["--cell-timeout", f"{info['cell_timeout_s']:g}"]
    if float(preset.get("signal_lead_s") or 0) > 0:  # the lead is a warning: the kernel may use nearly all of it
        cmd += ["--time-limit-grace", f"{time_limit_grace(float(preset['signal_lead_s'])):g}"]
    info["command"] = cmd
    print(f"hlrp job {job_id} ({preset['name']}): {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            cwd=str(REPO_ROOT))
    rd = Path(run_dir)
    buffer: list[str] = []
    state = {"out": None, "env_mtime": 0.0, "signal": ""}
    lock = threading.Lock()

    def on_signal(signum, _frame):
        name = signal.Signals(signum).name
        state["signal"] = name
        why = "the time-limit lead" if name == "SIGUSR1" else "scancel, time limit or preemption"
        line = (f"hlrp job {job_id}: received {name} ({why}); handing it to hlrp run (checkpoint at the current "
                "step)\n")
        try:
            if rd.is_dir():
                with open(rd / runs.LOG, "a") as f:
                    f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line)
        finally:
            print(line, end="", flush=True)
            proc.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, on_signal)

    def sync(final: bool = False) -> None:
        """Once the run dir exists: job.json, the env.json job block, resumed_from, the log copy."""
        if not rd.is_dir():
            return
        with lock:
            if state["out"] is None:
                state["out"] = open(rd / f"slurm-{job_id}.out", "a")
                state["out"].writelines(buffer)
                state["out"].flush()
                atomic_write_json(rd / "job.json", info)
                if resumed_from:
                    runs.atomic_write_text(rd / "resumed_from", str(resumed_from) + "\n")
            env_path = rd / runs.ENV
            if env_path.exists() and (final or env_path.stat().st_mtime != state["env_mtime"]):
                env = read_json(env_path, default={}) or {}
                if env.get("job") != {k: info[k] for k in ENV_KEYS}:
                    env["job"] = {k: info[k] for k in ENV_KEYS}
                    atomic_write_json(env_path, env)
                state["env_mtime"] = env_path.stat().st_mtime
            if final:
                atomic_write_json(rd / "job.json", info)

    stop = threading.Event()

    def watcher():
        while not stop.wait(0.5):
            try:
                sync()
            except Exception as exc:  # noqa: BLE001 - never kill the job over bookkeeping
                print(f"hlrp job: bookkeeping error: {exc}", flush=True)

    threading.Thread(target=watcher, daemon=True).start()
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        with lock:
            if state["out"] is not None:
                state["out"].write(line)
                state["out"].flush()
            else:
                buffer.append(line)
    rc = proc.wait()
    stop.set()
    info.update(exit_code=rc, ended_at=time.time())
    sync(final=True)
    if state["out"] is not None:
        state["out"].close()
    print(f"hlrp job {job_id}: exit {rc}", flush=True)
    if rd.is_dir():
        again, why = requeue_decision(rd, state["signal"], restart, int(preset.get("max_requeues") or 0))
        print(f"hlrp job {job_id}: {'requeueing' if again else 'not requeueing'}: {why}", flush=True)
        runs.update_segment(rd, job_id=job_id, requeue=why)
        if again:
            raw = os.environ.get("SLURM_JOB_ID", "")
            subprocess.run(["scontrol", *(["-M", preset["slurm_cluster"]] if preset.get("slurm_cluster") else []),
                            "requeue", raw], check=False)
            return 0
    return rc


ENV_KEYS = ["submission", "job_id", "role", "generation", "preset", "partition", "node", "submitted_commit",
            "submitted_dirty", "running_commit", "checkout_commit_at_start", "code", "resumed_from", "dual_queue"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
