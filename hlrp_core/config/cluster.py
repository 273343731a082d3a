"""``cluster.*`` and ``submit.*``: where a run executes (``local`` or a SLURM queue preset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import check_choice


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

    def validate(self, problems: list[str]) -> None:
        check_choice(problems, "cluster.backend", self.backend, ["local", "slurm"])


@dataclass
class SubmitConfig:
    """``submit.*``: per-submission overrides of the cluster preset (the seed types ``+submit.time=00:15:00``).

    Args:
        time: Time limit for this submission (overrides ``cluster.time``).
        partition: Partition for this submission (overrides ``cluster.partition``).
    """

    time: Optional[str] = None
    partition: Optional[str] = None
