"""Submit notebook runs to SLURM: one job per run, dual-queue twins, ladder rungs as a job array, resume follow-ups.

Why generated sbatch scripts and not submitit: a job here runs a *command* (``hlrp run NOTEBOOK ... --run-dir DIR``),
not a pickled Python function, so submitit's main feature does not apply; a plain script is what ``--dry-run`` prints,
what a researcher can read and re-submit by hand, and it needs nothing on the compute node but bash and the project's
interpreter (or container). The dual-queue claim and twin cancel are a few lines of bash that also work when the run
itself happens inside a container without SLURM clients. And submitit polls ``sacct`` and hangs where accounting is
missing (docs/cluster.md), which is the case on our test cluster.

Layout of one submission (``<output root>/.submissions/<timestamp>_<name>/``; the run directory is NOT created here):

| path | content |
|---|---|
| ``submission.json`` | notebook, params, overrides, presets, planned run dir(s), jobs (id, preset, role, submit time) |
| ``job_<preset>.sh`` | the sbatch script for that preset |
| ``code/`` | snapshot of the submitted commit + uncommitted diff + untracked files (``snapshot.json``) |
| ``twins/<slot>`` | job ids competing for a slot (dual-queue); the first to start claims it and cancels the rest |
| ``claims/<slot>/`` | created (``mkdir``, atomic) by the twin that started: its job id, partition, time |
| ``records/`` | per-job records written by the job (resume generations) |
| ``followups.jsonl`` | resume follow-up jobs submitted by jobs |
| ``slurm-<jobid>.out`` | SLURM stdout/stderr (also copied into the run dir by the job) |
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import runs
from ..config import ConfigError, load
from ..config.cluster import ClusterConfig
from ..io import atomic_write_json, read_json
from ..paths import REPO_ROOT, data_root, output_root, resolve
from . import slurm
from .presets import load_preset
from .snapshot import make_snapshot, source_state

SUBMISSIONS = ".submissions"


def submissions_root() -> Path:
    return output_root() / SUBMISSIONS


@dataclass
class Submission:
    """What ``submit`` did (or, for a dry run, would do)."""

    dir: Path | None
    run_dirs: list[str]
    jobs: list[dict] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def job_ids(self) -> list[str]:
        return [j["job_id"] for j in self.jobs]

    def describe(self) -> str:
        lines = []
        if self.dry_run:
            for name, text in self.scripts.items():
                lines += [f"# ---- {name}", text.rstrip()]
            lines += ["# ---- would run:"] + self.commands
        for j in self.jobs:
            if j["job_id"] == "local":
                lines.append(f"ran here (backend local), exit {j['rc']}")
            else:
                lines.append(f"submitted job {j['job_id']} to {j['preset']} ({j['partition']}, role {j['role']})")
        ran_here = bool(self.jobs) and self.jobs[0]["job_id"] == "local"
        for d in self.run_dirs:
            lines.append(f"run directory{'' if ran_here else ' (created when the job starts)'}: {d}")
        if self.dir:
            lines.append(f"submission record: {self.dir}")
        return "\n".join(lines)


# ---------------------------------------------------------------- planning
def _plan(notebook: str, params_files: list[str], sets: list[str], study: str = "", name: str = "") -> tuple[str, str]:
    """Validate the parameters and config exactly as the launcher will (so a typo fails now, not hours later in the
    queue); return (study, name) of the run directory."""
    from .. import launch  # the launcher's own merge/naming rules (imported lazily: it sits above this floor)

    nb = resolve(notebook)
    if not nb.exists():
        raise ConfigError(f"notebook {notebook}: not found ({nb})")
    params = launch.merge_params(nb, list(params_files), list(sets))
    overrides = list(params.get("overrides") or []) + list(params.get("rung_overrides") or [])
    cfg = load(params.get("experiment", ""), overrides, smoke=bool(params.get("smoke", False)),
               seed=params.get("seed"))
    return (study or cfg.experiment.study or launch.study_for(nb)), (name or cfg.experiment.name or launch.run_name(nb))


def _new_submission_dir(name: str) -> Path:
    return runs.new_run_dir("", name, root=submissions_root())  # same naming and exclusive mkdir as run dirs


def _params_for_job(params_files: list[str], sub_dir: Path | None) -> list[str]:
    """Params files inside the repo travel with the snapshot (relative path); others are copied into the record."""
    out = []
    for i, f in enumerate(params_files):
        p = resolve(f)
        if not p.exists():
            raise ConfigError(f"-f {f}: no such parameter file ({p})")
        if p.is_relative_to(REPO_ROOT):
            out.append(str(p.relative_to(REPO_ROOT)))
        else:
            dst = (sub_dir / "params" / f"{i}_{p.name}") if sub_dir else Path(f"<submission>/params/{i}_{p.name}")
            if sub_dir:
                dst.parent.mkdir(exist_ok=True)
                dst.write_text(p.read_text())
            out.append(str(dst))
    return out


def _notebook_for_job(notebook: str) -> str:
    nb = resolve(notebook)
    return str(nb.relative_to(REPO_ROOT)) if nb.is_relative_to(REPO_ROOT) else str(nb)


# ---------------------------------------------------------------- the sbatch script
def sbatch_options(c: ClusterConfig, job_name: str, output: str) -> list[str]:
    opts = [f"--job-name={job_name}", f"--partition={c.partition}"]
    opts += [f"--qos={c.qos}"] if c.qos else []
    opts += [f"--account={c.account}"] if c.account else []
    opts += [f"--nodes={c.nodes}", f"--ntasks-per-node={c.ntasks_per_node}", f"--cpus-per-task={c.cpus_per_task}"]
    opts += [f"--gres=gpu:{c.gpus_per_node}"] if c.gpus_per_node else []
    opts += [f"--mem={c.mem}"] if c.mem else []
    opts += [f"--time={c.time}", f"--output={output}", "--open-mode=append"]
    if c.signal_lead_s > 0:  # B: to the batch shell, which execs hlrp_core.cluster.job (it hands it to the kernel)
        opts += [f"--signal=B:USR1@{int(c.signal_lead_s)}"]
    if c.max_requeues > 0:
        opts += ["--requeue"]
    return opts + list(c.extra_sbatch)


def render_script(c: ClusterConfig, sub_dir: str, code_dir: str, job_name: str, array: bool = False,
                  submitted_commit: str = "") -> str:
    """The job script: SBATCH header, setup, dual-queue claim (bash: works without SLURM clients in a container),
    then ``python -m hlrp_core.cluster.job`` (which runs ``hlrp run ... --run-dir``) on the code snapshot."""
    q = shlex.quote
    output = f"{sub_dir}/slurm-%A_%a.out" if array else f"{sub_dir}/slurm-%j.out"
    python = c.python or sys.executable
    m = f"-M {q(c.slurm_cluster)} " if c.slurm_cluster else ""
    lines = ["#!/bin/bash", f"# hlrp job script for preset {c.name} (generated by hlrp_core.cluster.submit)"]
    lines += [f"#SBATCH {o}" for o in sbatch_options(c, job_name, output)]
    lines += ["", "set -u"]
    lines += list(c.setup)
    env = {"HLRP_OUTPUT_ROOT": str(output_root()), "HLRP_DATA_ROOT": str(data_root()),
           "HLRP_SUBMISSION_DIR": sub_dir, "HLRP_PRESET": c.name, "HLRP_SUBMITTED_COMMIT": submitted_commit,
           "TQDM_DISABLE": "1", **{str(k): str(v) for k, v in c.env.items()}}
    if c.kernel:
        env["HLRP_KERNEL"] = c.kernel
    lines += [f"export {k}={q(v)}" for k, v in env.items()]
    lines += [f"export PYTHONPATH={q(code_dir)}${{PYTHONPATH:+:$PYTHONPATH}}", f"cd {q(code_dir)}", ""]
    lines += [
        "# dual-queue: the first twin to start claims the slot (atomic mkdir) and cancels the others",
        'SLOT=${SLURM_ARRAY_TASK_ID:-0}',
        'if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then MYID=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}; '
        'else MYID=$SLURM_JOB_ID; fi',
        'if [ "${HLRP_ROLE:-main}" = main ]; then',
        f'  CLAIM={q(sub_dir)}/claims/$SLOT; mkdir -p {q(sub_dir)}/claims',
        '  if [ "${SLURM_RESTART_COUNT:-0}" != 0 ] && [ "$(cat "$CLAIM/job_id" 2>/dev/null)" = "$MYID" ]; then',
        '    echo "hlrp: job $MYID requeued (restart ${SLURM_RESTART_COUNT}); it continues its own slot"',
        '  elif mkdir "$CLAIM" 2>/dev/null; then',
        '    echo "$MYID" > "$CLAIM/job_id"; echo "${SLURM_JOB_PARTITION:-}" > "$CLAIM/partition"',
        '    echo "$HLRP_PRESET" > "$CLAIM/preset"; date +%s.%N > "$CLAIM/claimed_at"',
        '    echo "${SLURM_JOB_ID:-}" > "$CLAIM/raw_job_id"  # own id of an array task',
        f'    for TWIN in $(cat {q(sub_dir)}/twins/$SLOT 2>/dev/null); do',
        f'      if [ "$TWIN" != "$MYID" ]; then scancel {m}"$TWIN" && echo "$TWIN" >> "$CLAIM/cancelled"; fi',
        '    done',
        '  else',
        '    echo "hlrp: slot $SLOT already claimed by job $(cat "$CLAIM/job_id" 2>/dev/null); twin $MYID cancels '
        'itself without writing"',
        '    # started at the same moment as the winner: end CANCELLED (as if the winner had cancelled it while '
        'pending), not COMPLETED',
        '    echo "$MYID" >> "$CLAIM/cancelled"',
        f'    scancel {m}"$MYID" >/dev/null 2>&1; sleep 5',
        '    exit 0',
        '  fi',
        'fi',
        "",
    ]
    cmd = f"{q(python)} -m hlrp_core.cluster.job {q(sub_dir)}"
    if c.container_image:
        mounts = ",".join(c.container_mounts)
        cmd = (f"srun --ntasks=1 --container-image={q(c.container_image)} "
               + (f"--container-mounts={q(mounts)} " if mounts else "")
               + f"--container-workdir={q(c.container_workdir or code_dir)} " + cmd)
    lines += [f"exec {cmd}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- submission
def _local(notebook: str, params_files: list[str], sets: list[str], run_dir: str, dry_run: bool) -> Submission:
    """The ``local`` backend: run ``hlrp run`` here, now (no SLURM, no snapshot: this IS the checkout)."""
    import subprocess

    cmd = [sys.executable, "-m", "hlrp_core.cli", "run", notebook, *sum((["-f", p] for p in params_files), []),
           *sum((["--set", s] for s in sets), []), "--run-dir", run_dir]
    sub = Submission(dir=None, run_dirs=[run_dir], commands=[shlex.join(cmd)], dry_run=dry_run)
    if not dry_run:
        r = subprocess.run(cmd, cwd=REPO_ROOT)
        sub.jobs.append({"job_id": "local", "preset": "local", "partition": "", "role": "main", "rc": r.returncode})
    return sub


def submit(notebook: str, params_files: list[str] = (), sets: list[str] = (), cluster: str = "local",
           also: list[str] = (), *, dry_run: bool = False, hold: bool = False, time_limit: str | None = None,
           auto_resume: int | None = None, study: str = "", name: str = "", resumed_from: str | None = None,
           array_params: list[str] | None = None, max_parallel: int = 0,
           preset_overrides: dict | None = None, array_names: list[str] | None = None,
           cell_timeout_s: float = 0) -> Submission:
    """Submit one papermill run (or, with ``array_params``, one per rung file as a job array) to ``cluster``.

    Args:
        notebook: Notebook path (relative to the repo, or absolute).
        params_files: ``-f`` papermill parameter files (later wins).
        sets: ``--set`` config overrides, appended to ``overrides``.
        cluster: Preset name in ``hlrp_core/configs/cluster/``.
        also: More presets (dual-queue): the same run is queued there too; the first job to start claims the run
            and cancels its twins. The run directory is created only by the job that starts.
        dry_run: Print what would be submitted; write and submit nothing.
        hold: Submit held (``scontrol release <id>`` starts it). Otherwise twins are held only until the record
            naming all of them is written, then released.
        time_limit: Override the presets' ``time`` (the seed's ``+submit.time=...``).
        auto_resume: Override the preset's ``auto_resume`` (follow-up jobs for a run killed by its time limit).
        cell_timeout_s: > 0: the job runs ``hlrp run --cell-timeout`` (a cell running longer fails the run with a
            timeout reason; a ladder passes its per-rung ``timeout_s``, as the local backend applies it).
        study, name: Override the run directory's study folder / name (default: as ``hlrp run`` chooses them).
        resumed_from: Old run directory this run continues (written into the new run dir as ``resumed_from``).
        array_params: One params file per array task (ladder rungs); the task's file is added after ``params_files``.
        max_parallel: Array concurrency limit (``--array=0-N%max_parallel``; 0 = no limit).
        preset_overrides: Preset fields to override for this submission, e.g. ``{"mem": "600M"}``.
        array_names: Run names of the array tasks (ladder rung ids); default: the rung files' stems.
    """
    params_files, sets, also = list(params_files), list(sets), list(also or [])
    presets = [load_preset(p, {**(preset_overrides or {}), "time": time_limit}) for p in [cluster, *also]]
    if auto_resume is not None:
        presets[0].auto_resume = auto_resume
    backends = {c.backend for c in presets}
    if len(backends) > 1 or (also and "local" in backends):
        raise ConfigError(f"--cluster {cluster} --also {also}: dual-queue submission needs slurm presets on both sides")
    slots = [None] if array_params is None else list(array_params)
    if array_params is not None and not slots:
        raise ConfigError("submit_array: no rung parameter files given")
    planned = []
    if array_names is not None and len(array_names) != len(slots):
        raise ConfigError(f"submit_array: {len(array_names)} names for {len(slots)} rung files")
    for i, extra in enumerate(slots):
        files = params_files + ([extra] if extra else [])
        st, nm = _plan(notebook, files, sets, study,
                       name or (array_names[i] if array_names else Path(extra).stem if extra else ""))
        planned.append((files, st, nm))
    if resumed_from:
        sets = sets + [f"training.resume_from={Path(resumed_from) / 'ckpt' / 'last.ckpt'}"]

    if presets[0].backend == "local":
        files, st, nm = planned[0]
        return _local(notebook, files, sets, str(output_root() / st / f"{runs.timestamp()}_{runs.slug(nm)}"), dry_run)
    if not dry_run and not slurm.available():
        raise ConfigError(f"--cluster {cluster}: sbatch not found on this machine; submit from a login node, or use "
                          f"--cluster local")

    sub_name = planned[0][2] if array_params is None else f"array_{planned[0][1].replace('/', '_')}"
    sub_dir = Path("<submission>") if dry_run else _new_submission_dir(sub_name)
    # the run directory name = the submission's unique <timestamp>_<name>, in the run's study folder
    if array_params is None:
        run_dirs = [str(output_root() / planned[0][1] / sub_dir.name)] if not dry_run else \
            [str(output_root() / planned[0][1] / f"{runs.timestamp()}_{runs.slug(planned[0][2])}")]
    else:
        ts = sub_dir.name.split("_array_")[0] if not dry_run else runs.timestamp()
        run_dirs = [str(output_root() / st / f"{ts}_{runs.slug(nm)}") for _, st, nm in planned]
    snap = source_state() if dry_run else make_snapshot(sub_dir) if presets[0].snapshot else None
    code_dir = str(sub_dir / "code") if presets[0].snapshot else str(REPO_ROOT)
    commit = snap["commit"] if snap else ""
    slot_params = [_params_for_job(files, None if dry_run else sub_dir) for files, _, _ in planned]
    record = {
        "id": sub_dir.name, "created": time.time(), "notebook": _notebook_for_job(notebook),
        "slots": [{"params": p, "run_dir": d} for p, d in zip(slot_params, run_dirs)], "sets": sets,
        "presets": {c.name: asdict(c) for c in presets}, "array": array_params is not None,
        "max_parallel": max_parallel, "auto_resume": presets[0].auto_resume, "resumed_from": resumed_from,
        "submitted_commit": commit, "dirty": bool(snap and snap["dirty"]), "code": code_dir,
        "source": str(REPO_ROOT), "jobs": [], "cell_timeout_s": float(cell_timeout_s or 0),
    }
    job_name = f"hlrp_{runs.slug(sub_name)}"[:60]
    sub = Submission(dir=None if dry_run else sub_dir, run_dirs=run_dirs, dry_run=dry_run)
    array_arg = [f"--array=0-{len(slots) - 1}" + (f"%{max_parallel}" if max_parallel else "")] if array_params \
        is not None else []
    for c in presets:
        script = render_script(c, str(sub_dir), code_dir, job_name, array=array_params is not None,
                               submitted_commit=commit)
        path = sub_dir / f"job_{c.name}.sh"
        sub.scripts[str(path)] = script
        args = ["--hold", *array_arg]
        sub.commands.append(shlex.join(["sbatch", "--parsable", *(["-M", c.slurm_cluster] if c.slurm_cluster
                                                                   else []), *args, str(path)]))
        if dry_run:
            continue
        path.write_text(script)
        job_id = slurm.sbatch(str(path), args, c.slurm_cluster)
        record["jobs"].append({"job_id": job_id, "preset": c.name, "partition": c.partition,
                               "slurm_cluster": c.slurm_cluster, "role": "main", "submitted_at": time.time()})
    if presets[0].auto_resume and array_params is None:
        c = presets[0]
        deps = [j["job_id"] for j in record["jobs"] if j["slurm_cluster"] == c.slurm_cluster]
        args = [f"--dependency=afterany:{':'.join(deps) or '<job ids>'}", "--export=ALL,HLRP_ROLE=resume,"
                "HLRP_RESUME_GEN=1"]
        path = sub_dir / f"job_{c.name}.sh"
        sub.commands.append(shlex.join(["sbatch", "--parsable", *args, str(path)]))
        if not dry_run:
            job_id = slurm.sbatch(str(path), args, c.slurm_cluster)
            record["jobs"].append({"job_id": job_id, "preset": c.name, "partition": c.partition,
                                   "slurm_cluster": c.slurm_cluster, "role": "resume", "gen": 1,
                                   "submitted_at": time.time()})
    if dry_run:
        if not hold:
            sub.commands.append("scontrol release <job ids>   # after submission.json and twins/ are written")
        snap_txt = f"would snapshot commit {commit[:12]}" + (" + uncommitted changes" if snap["dirty"] else "")
        sub.commands.append(f"# {snap_txt} into <submission>/code; run dir(s): {', '.join(run_dirs)}")
        return sub
    (sub_dir / "twins").mkdir()
    main_jobs = [j for j in record["jobs"] if j["role"] == "main"]
    for slot in range(len(slots)):
        ids = [f"{j['job_id']}_{slot}" if array_params is not None else j["job_id"] for j in main_jobs]
        (sub_dir / "twins" / str(slot)).write_text("\n".join(ids) + "\n")
    atomic_write_json(sub_dir / "submission.json", record)
    sub.jobs = record["jobs"]
    if not hold:
        for c in presets:
            slurm.release([j["job_id"] for j in main_jobs if j["preset"] == c.name], c.slurm_cluster)
    return sub


def submit_array(rung_param_files: list[str], notebook: str, cluster: str, max_parallel: int = 0, *,
                 names: list[str] | None = None, params_files: list[str] = (), sets: list[str] = (),
                 study: str = "", also: list[str] = (), dry_run: bool = False, hold: bool = False,
                 cell_timeout_s: float = 0, time_limit: str | None = None,
                 preset_overrides: dict | None = None) -> Submission:
    """A ladder as one job array: task ``i`` runs ``notebook`` with ``rung_param_files[i]`` (added after
    ``params_files``) into its own run directory ``<study>/<timestamp>_<names[i] or rung file stem>``; at most
    ``max_parallel`` tasks run at once (0 = no limit). For a ladder pass ``study="ladders/<ladder>"`` and the rung
    ids as ``names`` so the run dirs land where the local backend puts them. ``cell_timeout_s`` (> 0): every task
    fails a cell that runs longer, as ``hlrp run --cell-timeout`` (the ladder's per-rung ``timeout_s``).
    ``time_limit`` and ``preset_overrides`` apply to every task, as in ``submit``."""
    return submit(notebook, params_files, sets, cluster, also, dry_run=dry_run, hold=hold, study=study,
                  array_params=list(rung_param_files), max_parallel=max_parallel, array_names=names,
                  cell_timeout_s=cell_timeout_s, time_limit=time_limit, preset_overrides=preset_overrides)


def resume(run_dir: str | os.PathLike, cluster: str | None = None, *, time_limit: str | None = None,
           dry_run: bool = False, hold: bool = False) -> Submission:
    """Continue ``run_dir`` (killed by a time limit, preempted, ...) in a NEW run directory that links to it, from
    ``<run_dir>/ckpt/last.ckpt``, with the old run's notebook and parameters and the code of the checkout now."""
    run_dir = Path(run_dir)
    job = read_json(run_dir / "job.json", default=None)
    if not job:
        raise ConfigError(f"--resume {run_dir}: no job.json (only runs submitted with `hlrp submit` can be resumed "
                          f"this way; rerun the notebook with --set training.resume_from=.../ckpt/last.ckpt)")
    name = runs.slug(run_dir.name.split("_", 2)[-1].split("_resume")[0]) + "_resume"
    sets = [s for s in job.get("sets", []) if not s.startswith("training.resume_from=")]
    study = str(run_dir.parent.relative_to(output_root())) if run_dir.parent.is_relative_to(output_root()) else ""
    return submit(job["notebook"], job.get("params", []), sets, cluster or job["preset"], dry_run=dry_run,
                  hold=hold, time_limit=time_limit, auto_resume=0, study=study, name=name,
                  resumed_from=str(run_dir), cell_timeout_s=float(job.get("cell_timeout_s") or 0))


def load_submission(sub_dir: str | os.PathLike) -> dict:
    rec = read_json(Path(sub_dir) / "submission.json", default=None)
    if rec is None:
        raise FileNotFoundError(f"{sub_dir}: no submission.json")
    extra = Path(sub_dir) / "followups.jsonl"
    if extra.exists():
        rec["jobs"] += [json.loads(l) for l in extra.read_text().splitlines() if l.strip()]
    return rec
