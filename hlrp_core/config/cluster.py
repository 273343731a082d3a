"""``cluster.*`` and ``submit.*``: where a run executes (``local`` or a SLURM queue preset)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from .errors import check, check_choice

#: SLURM time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
TIME_RE = r"\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}"


@dataclass
class ClusterConfig:
    """``cluster.*`` (select a preset with ``cluster=<name>``, files in ``hlrp_core/configs/cluster/``).

    Args:
        name: Preset name.
        backend: ``local`` (run here) or ``slurm``.
        partition: SLURM partition.
        qos: SLURM QoS.
        account: SLURM account.
        gpus_per_node: GPUs per node.
        cpus_per_task: CPUs per task.
        mem: Memory per node (SLURM syntax, e.g. ``64G``).
        time: Time limit (SLURM syntax ``HH:MM:SS``; quote it in YAML).
        nodes: Nodes.
        container_image: Optional container image (enroot/pyxis ``--container-image``).
        container_mounts: Container mounts (``src:dst`` strings).
        setup: Shell commands run before the job's command (module loads, env activation).
        slurm_cluster: SLURM cluster name for ``-M`` (multi-cluster setups such as LRZ's); empty = the default one.
        ntasks_per_node: Tasks per node (``--ntasks-per-node``); 1 for a notebook job, = devices for ``srun`` DDP.
        python: Interpreter the job runs (absolute path as seen on the compute node, or inside the container). Empty
            = the submitting interpreter (``sys.executable``), right when jobs see the same filesystem.
        kernel: Jupyter kernel for papermill inside the job. Empty = the launcher's default (``hlrp``, or
            ``$HLRP_KERNEL``).
        container_workdir: Working directory inside the container (default: the code snapshot's path).
        extra_sbatch: Extra ``#SBATCH`` options, verbatim (e.g. ``--constraint=a100``, ``--exclusive``).
        env: Environment variables exported by the job script (``KEY: value``).
        auto_resume: How many follow-up jobs may resume a run killed by its time limit / preemption / node failure
            (each in a new run dir linked to the old one, with ``training.resume_from=<old>/ckpt/last.ckpt``). 0 off.
        signal_lead_s: Ask SLURM for SIGUSR1 this many seconds before the time limit (``--signal=B:USR1@N``): the
            training checkpoints at its current step and the job requeues itself to continue in the same run
            directory (docs/ROBUSTNESS.md). 0 = off. SLURM delivers the signal up to 60 s late: keep it >= 120.
        max_requeues: How many times a job that got the time-limit signal requeues itself (``--requeue``) before
            it ends FAILED (resumable with ``hlrp resume``). 0 = never.
        snapshot: Run the submitted code: a ``git clone --shared`` of the submitted commit plus the uncommitted diff
            and untracked files, beside the submission record. ``false`` runs the live checkout (not recommended).
    """

    name: str = "local"
    backend: str = "local"
    partition: Optional[str] = None
    qos: Optional[str] = None
    account: Optional[str] = None
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem: Optional[str] = None
    time: str = "01:00:00"
    nodes: int = 1
    container_image: Optional[str] = None
    container_mounts: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    slurm_cluster: Optional[str] = None
    ntasks_per_node: int = 1
    python: str = ""
    kernel: str = ""
    container_workdir: Optional[str] = None
    extra_sbatch: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    auto_resume: int = 0
    signal_lead_s: int = 300
    max_requeues: int = 10
    snapshot: bool = True

    def validate(self, problems: list[str]) -> None:
        check_choice(problems, "cluster.backend", self.backend, ["local", "slurm"])
        check(problems, self.nodes >= 1, f"cluster.nodes={self.nodes} must be >= 1")
        check(problems, self.cpus_per_task >= 1, f"cluster.cpus_per_task={self.cpus_per_task} must be >= 1")
        check(problems, self.ntasks_per_node >= 1, f"cluster.ntasks_per_node={self.ntasks_per_node} must be >= 1")
        check(problems, self.gpus_per_node >= 0, f"cluster.gpus_per_node={self.gpus_per_node} must be >= 0")
        check(problems, self.signal_lead_s >= 0,
              f"cluster.signal_lead_s={self.signal_lead_s} must be >= 0 (0 = no time-limit signal)")
        check(problems, self.max_requeues >= 0, f"cluster.max_requeues={self.max_requeues} must be >= 0 (0 = never)")
        check(problems, self.auto_resume >= 0, f"cluster.auto_resume={self.auto_resume} must be >= 0 (0 = off)")
        check(problems, bool(re.fullmatch(TIME_RE, str(self.time))),
              f"cluster.time={self.time!r} is not a SLURM time; write HH:MM:SS, MM, D-HH or D-HH:MM:SS (quote it)")
        if self.mem is not None:
            check(problems, bool(re.fullmatch(r"\d+[KMGT]?", str(self.mem))),
                  f"cluster.mem={self.mem!r} is not SLURM memory; write e.g. 64G or 4000M")
        if self.backend == "slurm":
            check(problems, bool(self.partition),
                  f"cluster.partition={self.partition!r}: a slurm preset needs a partition (e.g. lrz-hgx-h100-94x4)")


@dataclass
class SubmitConfig:
    """``submit.*``: per-submission overrides of the cluster preset (the seed types ``+submit.time=00:15:00``).

    Args:
        time: Time limit for this submission (overrides ``cluster.time``).
        partition: Partition for this submission (overrides ``cluster.partition``).
    """

    time: Optional[str] = None
    partition: Optional[str] = None
