"""How much memory this process may still use: the smaller of the host's ``MemAvailable`` and the headroom of the
process's memory cgroup (floor 1: ``data/`` sizes its loader budget from ``available_bytes()``, the RAM guard stops a
run on ``headroom()``).

Under SLURM ``--mem`` (or a container limit) the job lives in a memory cgroup and is OOM-killed at the cgroup's limit
while the host may still report many GB available, so ``MemAvailable`` alone is the wrong number. The cgroup is
found through ``/proc/self/cgroup``:

- v2 (``0::/path``): ``memory.max - memory.current`` of ``<root>/<path>`` and of every ancestor (a parent's limit
  applies too), ``max`` meaning unlimited;
- v1 (``N:memory:/path`` or ``N:...,memory,...:/path``): ``memory.limit_in_bytes - memory.usage_in_bytes`` under
  ``<root>/memory/<path>``; a limit near 2**63 means unlimited.

Usage counts the reclaimable page cache (``inactive_file`` in ``memory.stat``); the kernel drops it before it
OOM-kills, so it is subtracted from the usage (as the kubelet's "working set" does). When the cgroup path is not
visible (a cgroup namespace shows ``/``), the mount root itself is read. No torch, no psutil at import.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

PROC_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"
UNLIMITED_V1 = 2**60  # v1 reports "no limit" as 2**63 rounded down to a page; anything this large is no limit


@dataclasses.dataclass
class CgroupMemory:
    """The tightest memory cgroup of this process: ``limit`` and ``usage`` in bytes, ``path`` of its directory."""

    version: int
    path: str
    limit: int
    usage: int

    @property
    def headroom(self) -> int:
        return max(0, self.limit - self.usage)


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _inactive_file(directory: Path, key: str) -> int:
    try:
        for line in (directory / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _memberships(proc_cgroup: str) -> tuple[Optional[str], Optional[str]]:
    """(v2 path, v1 memory path) from ``/proc/self/cgroup``."""
    v2 = v1 = None
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            v2 = rel
        elif "memory" in controllers.split(","):
            v1 = rel
    return v2, v1


def _candidates(base: Path, rel: str) -> list[Path]:
    """The cgroup's directory and its ancestors up to ``base`` (only those that exist)."""
    rel = rel.strip("/")
    here = base / rel if rel else base
    if not here.is_dir():  # a cgroup namespace: the process's own cgroup is the mount root
        here = base
    out = []
    while True:
        out.append(here)
        if here == base or base not in here.parents:
            break
        here = here.parent
    return out


def cgroup_memory(proc_cgroup: Optional[str] = None,
                  root: Optional[str | os.PathLike] = None) -> Optional[CgroupMemory]:
    """The limited memory cgroup with the least headroom on this process's path, or None when none is limited.
    ``proc_cgroup`` / ``root`` default to ``PROC_CGROUP`` / ``CGROUP_ROOT`` (tests point them at a fake tree)."""
    v2, v1 = _memberships(proc_cgroup or PROC_CGROUP)
    root = Path(root or CGROUP_ROOT)
    found: list[CgroupMemory] = []
    if v2 is not None and (root / "cgroup.controllers").exists():  # unified hierarchy mounted at root
        for d in _candidates(root, v2):
            limit, usage = _read_int(d / "memory.max"), _read_int(d / "memory.current")
            if limit is not None and usage is not None:
                found.append(CgroupMemory(2, str(d), limit, max(0, usage - _inactive_file(d, "inactive_file"))))
    if v1 is not None and not found:
        base = root / "memory"
        for d in _candidates(base, v1):
            limit, usage = _read_int(d / "memory.limit_in_bytes"), _read_int(d / "memory.usage_in_bytes")
            if limit is not None and usage is not None and limit < UNLIMITED_V1:
                found.append(CgroupMemory(1, str(d), limit,
                                          max(0, usage - _inactive_file(d, "total_inactive_file"))))
    return min(found, key=lambda c: c.headroom) if found else None


def host_available_bytes() -> int:
    """``MemAvailable`` of the host (psutil reads /proc/meminfo)."""
    import psutil

    return int(psutil.virtual_memory().available)


@dataclasses.dataclass
class MemoryHeadroom:
    """What may still be allocated (``available``) and which limit set it (``source``: ``host`` or ``cgroup``)."""

    available: int
    source: str
    host_available: int
    cgroup: Optional[CgroupMemory]

    def describe(self) -> str:
        mb = lambda b: f"{b / 2**20:.0f} MB"  # noqa: E731
        if self.cgroup is None:
            return f"host MemAvailable {mb(self.host_available)} (no memory cgroup limit)"
        c = self.cgroup
        return (f"cgroup v{c.version} {c.path}: limit {mb(c.limit)}, usage {mb(c.usage)}, headroom "
                f"{mb(c.headroom)}; host MemAvailable {mb(self.host_available)}")


def headroom(proc_cgroup: Optional[str] = None, root: Optional[str | os.PathLike] = None,
             host_available: Optional[int] = None) -> MemoryHeadroom:
    host = host_available_bytes() if host_available is None else int(host_available)
    cg = cgroup_memory(proc_cgroup, root)
    if cg is not None and cg.headroom < host:
        return MemoryHeadroom(cg.headroom, "cgroup", host, cg)
    return MemoryHeadroom(host, "host", host, cg)


def available_bytes(proc_cgroup: Optional[str] = None, root: Optional[str | os.PathLike] = None) -> int:
    """Bytes this process may still allocate before the host or its cgroup runs out (the loader budget's input)."""
    return headroom(proc_cgroup, root).available


def oom_kill_count(proc_cgroup: Optional[str] = None, root: Optional[str | os.PathLike] = None) -> Optional[int]:
    """How many processes the OOM killer has killed in this process's memory cgroup (v2 ``memory.events``, v1
    ``memory.oom_control``: ``oom_kill N``), or None where the counter is not visible. A rise across a dead kernel
    is the evidence that the OOM killer, not something else, killed it."""
    v2, v1 = _memberships(proc_cgroup or PROC_CGROUP)
    root = Path(root or CGROUP_ROOT)
    if v2 is not None and (root / "cgroup.controllers").exists():
        dirs, name = _candidates(root, v2), "memory.events"
    elif v1 is not None:
        dirs, name = _candidates(root / "memory", v1), "memory.oom_control"
    else:
        return None
    for d in dirs:
        try:
            for line in (d / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None
