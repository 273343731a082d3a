"""The memory headroom (hlrp_core.sysmem) against fake cgroup v1 and v2 trees, and the RAM guard that uses it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hlrp_core import sysmem

MB = 2**20


def _v2(tmp_path: Path, limit="524288000", current=str(430 * MB), parent_limit="max", inactive=0) -> tuple[str, Path]:
    root = tmp_path / "cg2"
    leaf = root / "system.slice" / "job_42"
    leaf.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "system.slice" / "memory.max").write_text(parent_limit + "\n")
    (root / "system.slice" / "memory.current").write_text(str(2000 * MB) + "\n")
    (leaf / "memory.max").write_text(limit + "\n")
    (leaf / "memory.current").write_text(current + "\n")
    (leaf / "memory.stat").write_text(f"anon 1\ninactive_file {inactive}\nactive_file 7\n")
    proc = tmp_path / "cgroup_v2"
    proc.write_text("0::/system.slice/job_42\n")
    return str(proc), root


def _v1(tmp_path: Path, limit=500 * MB, usage=430 * MB) -> tuple[str, Path]:
    root = tmp_path / "cg1"
    leaf = root / "memory" / "slurm" / "uid_1" / "job_7"
    leaf.mkdir(parents=True)
    (leaf / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (leaf / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # the v1 "no limit"
    (root / "memory" / "memory.usage_in_bytes").write_text(f"{5000 * MB}\n")
    proc = tmp_path / "cgroup_v1"
    proc.write_text("12:pids:/slurm/uid_1/job_7\n4:memory:/slurm/uid_1/job_7\n0::/\n")
    return str(proc), root


def test_v2_headroom_is_max_minus_current(tmp_path):
    proc, root = _v2(tmp_path)
    cg = sysmem.cgroup_memory(proc, root)
    assert cg.version == 2 and cg.limit == 524288000 and cg.headroom == 524288000 - 430 * MB
    room = sysmem.headroom(proc, root, host_available=22 * 2**30)  # the case: 22 GB free on the host
    assert room.source == "cgroup" and room.available == cg.headroom
    assert "cgroup v2" in room.describe() and "limit 500 MB" in room.describe()


def test_v2_parent_limit_and_reclaimable_cache(tmp_path):
    proc, root = _v2(tmp_path, limit="max", parent_limit=str(2100 * MB))
    cg = sysmem.cgroup_memory(proc, root)  # the leaf is unlimited, the parent's 100 MB headroom applies
    assert cg.path.endswith("system.slice") and cg.headroom == 100 * MB
    proc, root = _v2(tmp_path / "b", inactive=100 * MB)
    assert sysmem.cgroup_memory(proc, root).usage == 330 * MB  # inactive page cache is reclaimed before an OOM


def test_v1_headroom_and_unlimited_root_ignored(tmp_path):
    proc, root = _v1(tmp_path)
    cg = sysmem.cgroup_memory(proc, root)
    assert cg.version == 1 and cg.headroom == 70 * MB and cg.path.endswith("job_7")
    assert sysmem.available_bytes(proc, root) <= 70 * MB


def test_no_limit_means_host_memory(tmp_path):
    proc, root = _v1(tmp_path, limit=9223372036854771712)
    assert sysmem.cgroup_memory(proc, root) is None
    room = sysmem.headroom(proc, root, host_available=123 * MB)
    assert room.source == "host" and room.available == 123 * MB
    assert sysmem.cgroup_memory(str(tmp_path / "missing"), root) is None  # no /proc/self/cgroup: host only


def test_namespace_root_path_reads_the_mount_root(tmp_path):
    """Inside a cgroup namespace /proc/self/cgroup says ``0::/``; the limit is then the mount root's own."""
    root = tmp_path / "ns"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory\n")
    (root / "memory.max").write_text(str(300 * MB))
    (root / "memory.current").write_text(str(100 * MB))
    proc = tmp_path / "p"
    proc.write_text("0::/\n")
    assert sysmem.cgroup_memory(str(proc), root).headroom == 200 * MB


def test_ram_guard_fires_on_cgroup_headroom(tmp_path, monkeypatch):
    from hlrp_core.training.callbacks import RamGuardCallback

    proc, root = _v2(tmp_path)
    monkeypatch.setattr(sysmem, "PROC_CGROUP", proc)
    monkeypatch.setattr(sysmem, "CGROUP_ROOT", str(root))
    requests = []
    stopper = SimpleNamespace(request=lambda kind, detail: requests.append((kind, detail)))
    guard = RamGuardCallback(None, min_available_mb=200, stopper=stopper)  # 70 MB left in the cgroup
    guard.on_train_batch_end(SimpleNamespace(global_step=5, should_stop=False), None, None, None, 0)
    assert requests and requests[0][0] == "ram_guard"
    assert "limit 500 MB" in guard.stopped_reason and "usage 430 MB" in guard.stopped_reason


def test_loader_budget_follows_the_cgroup_headroom(tmp_path, monkeypatch):
    from hlrp_core.config import data_effective as de

    assert de.loader_budget_mb(1024, headroom_bytes=64 * 2**30, processes=1) == (1024, "")
    mb, why = de.loader_budget_mb(1024, headroom_bytes=1000 * MB, processes=2)
    assert mb == 250 and "ram_budget_mb=1024 clamped to 250 MiB" in why and "2 process" in why
    assert de.loader_budget_mb(1024, headroom_bytes=10 * MB, processes=1)[0] == 64
    # the live path: a v1 cgroup with 600 MB of headroom on a host with plenty free caps the episode cache
    proc, root = _v1(tmp_path, limit=1000 * MB, usage=400 * MB)
    monkeypatch.setattr(sysmem, "PROC_CGROUP", proc)
    monkeypatch.setattr(sysmem, "CGROUP_ROOT", root)
    monkeypatch.setattr(sysmem, "host_available_bytes", lambda: 22 * 2**30)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    from hlrp_core.config import load

    eff = de.effective_knobs(load("laq_tiny", smoke=True))
    assert eff["ram_budget_mb"] == 300 and "limit 1000 MB, usage 400 MB" in eff["ram_budget_clamp"]
    assert eff["episode_cache_mb"] + eff["ready_queue_mb"] == pytest.approx(300, abs=0.2)
