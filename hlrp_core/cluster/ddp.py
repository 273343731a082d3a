"""Hand training from a notebook to ``srun python -m hlrp_core.training.srun`` (multi-GPU / multi-node DDP).

A notebook kernel is one process (DDP cannot be spawned from it), so::

    cfg, run = hlrp_core.runs.start(...)                  # the notebook's run directory (config.yaml, env.json, ...)
    result = hlrp_core.cluster.srun_train(cfg, run, ntasks_per_node=2, partition="gpu")
    # ... analyse run.dir (metrics.json, timeseries.csv, ckpt/, artifacts/), then run.finish(...)

``srun_train`` runs ``srun --nodes=M --ntasks-per-node=N ... <python> -m hlrp_core.training.srun --run-dir
<run.dir>``; rank 0 adopts the existing run directory (its ``config.yaml``), so metrics and checkpoints land in the
notebook's run. Inside an allocation (``SLURM_JOB_ID`` set, e.g. a kernel in an sbatch job) srun starts a step of that
allocation, which must hold N x M tasks; outside one it asks for a new allocation (``partition``, ``time``, ``mem``).
``sbatch_train`` writes the same command into ``<run>/train_ddp.sbatch`` and submits it (optionally waiting).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..paths import REPO_ROOT
from . import slurm

SRUN_LOG = "train_srun.log"
SBATCH_SCRIPT = "train_ddp.sbatch"


def _tasks(cfg: Any, ntasks_per_node: Optional[int]) -> int:
    if ntasks_per_node:
        return int(ntasks_per_node)
    per_node = int(getattr(cfg.cluster, "ntasks_per_node", 1) or 1)
    return max(per_node, int(cfg.training.devices or 1))


def train_command(run_dir: str | os.PathLike, overrides: Sequence[str] = (), python: str = "") -> list[str]:
    """``<python> -m hlrp_core.training.srun --run-dir <run_dir> [overrides]`` (the interpreter of this kernel by
    default)."""
    return [python or sys.executable, "-m", "hlrp_core.training.srun", "--run-dir", str(run_dir), *overrides]


def srun_args(cfg: Any, *, ntasks_per_node: Optional[int] = None, nodes: Optional[int] = None,
              partition: Optional[str] = None, time_limit: Optional[str] = None, mem: Optional[str] = None,
              cpus_per_task: Optional[int] = None, gpus_per_node: Optional[int] = None,
              extra: Sequence[str] = ()) -> list[str]:
    """The srun options (tasks per node = devices; ``--kill-on-bad-exit`` so one dead rank ends the step)."""
    n = _tasks(cfg, ntasks_per_node)
    m = int(nodes or cfg.training.num_nodes or 1)
    args = [f"--nodes={m}", f"--ntasks-per-node={n}", "--kill-on-bad-exit=1"]
    if cpus_per_task:
        args.append(f"--cpus-per-task={cpus_per_task}")
    if partition:
        args.append(f"--partition={partition}")
    if time_limit:
        args.append(f"--time={time_limit}")
    if mem:
        args.append(f"--mem={mem}")
    if gpus_per_node:
        args.append(f"--gpus-per-node={gpus_per_node}")
    return [*args, *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def srun_train(cfg: Any, run: Any, *, ntasks_per_node: Optional[int] = None, nodes: Optional[int] = None,
               partition: Optional[str] = None, time_limit: Optional[str] = None, mem: Optional[str] = None,
               cpus_per_task: Optional[int] = None, gpus_per_node: Optional[int] = None,
               overrides: Sequence[str] = (), extra_srun: Sequence[str] = (), timeout: Optional[float] = None,
               check: bool = True) -> dict:
    """Run ``srun ... python -m hlrp_core.training.srun --run-dir <run.dir>`` and wait for it.

    srun's output (every rank) goes to ``<run>/train_srun.log``. Returns ``{"returncode", "seconds", "command",
    "log"}``; with ``check`` a non-zero exit raises ``slurm.SlurmError`` quoting the log's tail. The run's
    ``metrics.json`` then holds the training metrics and ``ddp/*`` (world size, per-rank batches)."""
    if not slurm.available():
        raise slurm.SlurmError("srun_train: SLURM is not installed here (no sbatch/srun on PATH)")
    cmd = ["srun", *srun_args(cfg, ntasks_per_node=ntasks_per_node, nodes=nodes, partition=partition,
                              time_limit=time_limit, mem=mem, cpus_per_task=cpus_per_task,
                              gpus_per_node=gpus_per_node, extra=extra_srun),
           *train_command(run.dir, overrides)]
    log_path = Path(run.dir) / SRUN_LOG
    run.log.info("srun_train: %s (output: %s)", shlex.join(cmd), log_path)
    t0 = time.monotonic()
    with open(log_path, "ab") as out:
        try:
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=str(REPO_ROOT),
                               timeout=timeout)
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = -1
    secs = round(time.monotonic() - t0, 2)
    result = {"returncode": rc, "seconds": secs, "command": shlex.join(cmd), "log": str(log_path)}
    run.log.info("srun_train: exit %s after %.1f s", rc, secs)
    if check and rc != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise slurm.SlurmError(f"srun_train: {shlex.join(cmd)} exited {rc}"
                               f"{' (timed out)' if rc == -1 else ''}; tail of {log_path}:\n{tail}")
    return result


def sbatch_script(cfg: Any, run_dir: str | os.PathLike, *, ntasks_per_node: Optional[int] = None,
                  nodes: Optional[int] = None, partition: Optional[str] = None, time_limit: str = "01:00:00",
                  mem: Optional[str] = None, cpus_per_task: Optional[int] = None,
                  gpus_per_node: Optional[int] = None, overrides: Sequence[str] = (), setup: Sequence[str] = (),
                  python: str = "") -> str:
    """An sbatch script whose one step is ``srun python -m hlrp_core.training.srun --run-dir <run_dir> ...``."""
    n, m = _tasks(cfg, ntasks_per_node), int(nodes or cfg.training.num_nodes or 1)
    lines = ["#!/bin/bash", f"#SBATCH --job-name=hlrp-train-{Path(run_dir).name[-40:]}", f"#SBATCH --nodes={m}",
             f"#SBATCH --ntasks-per-node={n}", f"#SBATCH --time={time_limit}",
             f"#SBATCH --output={Path(run_dir) / SRUN_LOG}", "#SBATCH --open-mode=append"]
    for opt, val in (("partition", partition), ("mem", mem), ("cpus-per-task", cpus_per_task),
                     ("gpus-per-node", gpus_per_node)):
        if val:
            lines.append(f"#SBATCH --{opt}={val}")
    lines += ["set -euo pipefail", f"cd {shlex.quote(str(REPO_ROOT))}",
              f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}", *setup,
              "srun --kill-on-bad-exit=1 " + shlex.join(train_command(run_dir, overrides, python))]
    return "\n".join(lines) + "\n"


def sbatch_train(cfg: Any, run: Any, *, wait: bool = False, **kwargs: Any) -> str:
    """Write ``<run>/train_ddp.sbatch`` (``sbatch_script``) and submit it; returns the job id. ``wait=True`` blocks
    until the job ends (``sbatch --wait``) and raises ``SlurmError`` when it failed."""
    script = Path(run.dir) / SBATCH_SCRIPT
    script.write_text(sbatch_script(cfg, run.dir, **kwargs))
    if wait:  # --wait holds sbatch until the job ends: no 60 s command timeout here
        r = slurm._run(["sbatch", "--parsable", "--wait", str(script)], check=True, timeout=None)
        job = r.stdout.strip().split(";")[0]
    else:
        job = slurm.sbatch(str(script))
    run.log.info("sbatch_train: job %s (%s)%s", job, script, " finished" if wait else "")
    return job
