"""A real single-node SLURM for the tests (recipe and pitfalls: ../shared/spec/SLURM_CI.md).

``slurm_cluster`` (session scope) installs Debian's ``slurmctld slurmd slurm-client munge`` with apt-get when they are
missing (we are root on the dev/CI machines), writes a private ``slurm.conf`` under a fresh temp directory, starts
``munged`` (private socket), ``slurmctld`` and ``slurmd -N localhost`` with two partitions standing for two clusters'
queues, and stops every daemon by its PID at the end. It skips, with the reason, where SLURM cannot be installed or
started; ``HLRP_REQUIRE_SLURM=1`` (set by CI) turns that skip into a failure.

Accounting: no slurmdbd (saves ~10 s of install, ~2.5 s of start and ~120 MB). ``jobcomp/filetxt`` records finished
jobs and ``hlrp_core.cluster.slurm.sacct`` falls back to ``sacct --completion`` when accounting storage is disabled,
which gives the final states we need (TIMEOUT, OUT_OF_MEMORY, CANCELLED, COMPLETED, FAILED).

Other sessions may run these tests on the same machine at the same time: a file lock serialises whole clusters (one
at a time), and ports are picked free, so a system SLURM on the default ports does not clash.

Timings of the last start are in ``cluster.timings`` (install_s, start_s) and printed at teardown.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["sbatch", "squeue", "scancel", "sacct", "slurmctld", "slurmd", "munged"]
FAST, SLOW = "hlrp_fast", "hlrp_slow"  # the two test queues; presets slurm_ci_fast / slurm_ci_slow name them
LOCK_PATH = "/tmp/hlrp-slurm-tests.lock"
LOCK_WAIT_S = 600


@dataclass
class SlurmCluster:
    """What a test needs to know about the running cluster."""

    root: Path
    conf: Path
    env: dict
    partitions: tuple = (FAST, SLOW)
    cgroup_v1: bool = False
    timings: dict = field(default_factory=dict)
    pids: dict = field(default_factory=dict)

    def log(self, name: str) -> str:
        p = self.root / "log" / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""


def _which_all() -> list[str]:
    return [b for b in BINARIES if not (shutil.which(b) or Path("/usr/sbin", b).exists())]


def _install() -> tuple[bool, str, float]:
    """apt-get install the packages; returns (ok, reason, seconds)."""
    t0 = time.monotonic()
    if os.geteuid() != 0:
        return False, "SLURM is not installed and we are not root (cannot apt-get install)", 0.0
    if not shutil.which("apt-get"):
        return False, "SLURM is not installed and there is no apt-get", 0.0
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"apt-get install {' '.join(PACKAGES)} failed: {r.stderr.strip()[-400:]}", time.monotonic() - t0
    return True, "", time.monotonic() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cgroup_v1() -> bool:
    return Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() and Path("/sys/fs/cgroup/freezer").is_dir()


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4000


def write_conf(root: Path, cgroup_v1: bool) -> Path:
    """slurm.conf (+ cgroup.conf) under ``root``; see SLURM_CI.md for why each setting is there."""
    ncpu = os.cpu_count() or 1
    real_mem = int(_mem_mb() * 0.85)
    (root / "state" / "ctld").mkdir(parents=True)
    (root / "state" / "d").mkdir(parents=True)
    (root / "log").mkdir()
    if cgroup_v1:
        plugins = ("ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup,task/affinity\n"
                   "JobAcctGatherType=jobacct_gather/cgroup\n")
        (root / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n"
                                          "ConstrainCores=yes\nConstrainRAMSpace=yes\n")
    else:
        plugins = "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/linux\n"
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=hlrpci
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
MailProg=/bin/true
StateSaveLocation={root}/state/ctld
SlurmdSpoolDir={root}/state/d
SlurmctldPidFile={root}/state/slurmctld.pid
SlurmdPidFile={root}/state/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
ReturnToService=2
MinJobAge=3600
KillWait=3
OverTimeLimit=0
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherFrequency=task=1
{plugins}NodeName=localhost NodeAddr=127.0.0.1 CPUs={ncpu} Sockets=1 CoresPerSocket={ncpu} ThreadsPerCore=1 \
RealMemory={real_mem} State=UNKNOWN
PartitionName={FAST} Nodes=localhost Default=YES MaxTime=60 State=UP
PartitionName={SLOW} Nodes=localhost MaxTime=INFINITE State=UP
""")
    return conf


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, wait until gone or a zombie (PID 1 may reap slowly), then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
        if not r.stdout.strip() or r.stdout.strip().startswith("Z"):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_pid(path: Path, timeout: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.05)
    return None


def start(root: Path) -> SlurmCluster:
    """Start munged + slurmctld + slurmd under ``root`` and wait for the node to be idle."""
    t0 = time.monotonic()
    cg = _cgroup_v1()
    conf = write_conf(root, cg)
    env = dict(os.environ, SLURM_CONF=str(conf))
    cluster = SlurmCluster(root=root, conf=conf, env=env, cgroup_v1=cg)
    mdir = root / "munge"
    mdir.mkdir()
    shutil.chown(mdir, "munge", "munge")
    os.chmod(mdir, 0o755)
    os.chmod(root, 0o755)
    if not Path("/etc/munge/munge.key").exists():
        subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=False)
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", f"--socket={mdir}/munge.socket",
                    f"--pid-file={mdir}/munged.pid", f"--log-file={mdir}/munged.log",
                    f"--seed-file={mdir}/munged.seed"], check=True, capture_output=True, text=True)
    cluster.pids["munged"] = _read_pid(mdir / "munged.pid")
    for name, cmd in (("slurmctld", ["/usr/sbin/slurmctld", "-f", str(conf)]),
                      ("slurmd", ["/usr/sbin/slurmd", "-f", str(conf), "-N", "localhost"])):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{name} did not start: {r.stderr.strip()} {cluster.log(name)[-800:]}")
        cluster.pids[name] = _read_pid(root / "state" / f"{name}.pid")
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%t"], env=env, capture_output=True,
                               text=True).stdout.strip()
        if state.startswith("idle"):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"node not idle after 30 s (state {state!r}): {cluster.log('slurmd')[-800:]}")
    cluster.timings["start_s"] = round(time.monotonic() - t0, 2)
    return cluster


def stop(cluster: SlurmCluster) -> None:
    """Cancel everything, stop daemons by PID (slurmd, slurmctld, munged last), remove cgroup leftovers."""
    t0 = time.monotonic()
    subprocess.run(["scancel", "--full", "-u", "root"], env=cluster.env, capture_output=True)
    time.sleep(0.5)
    for name in ("slurmd", "slurmctld", "munged"):
        pid = cluster.pids.get(name)
        if pid:
            _stop_pid(pid)
    if cluster.cgroup_v1:
        for d in Path("/sys/fs/cgroup").glob("*/slurm*"):
            for sub in sorted(d.rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir():
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
            try:
                d.rmdir()
            except OSError:
                pass
    cluster.timings["stop_s"] = round(time.monotonic() - t0, 2)


def _skip_or_fail(reason: str):
    if os.environ.get("HLRP_REQUIRE_SLURM") == "1":
        pytest.fail(f"HLRP_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM with partitions ``hlrp_fast`` (MaxTime 60 min) and ``hlrp_slow``.

    Sets ``SLURM_CONF`` in ``os.environ`` for the session (so ``hlrp_core.cluster`` finds it) and restores it after.
    """
    timings: dict = {}
    missing = _which_all()
    if missing:
        ok, reason, secs = _install()
        timings["install_s"] = round(secs, 2)
        if not ok:
            _skip_or_fail(reason)
        missing = _which_all()
        if missing:
            _skip_or_fail(f"SLURM binaries still missing after install: {missing}")
    lock = open(LOCK_PATH, "w")
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:  # another session's test cluster: wait for it to finish, but not for ever
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                _skip_or_fail(f"another test session held {LOCK_PATH} (its SLURM cluster) for {LOCK_WAIT_S} s")
            time.sleep(1)
    root = Path(tempfile.mkdtemp(prefix="hlrp-slurm-"))
    try:
        cluster = start(root)
    except Exception as exc:  # noqa: BLE001 - any start failure is a skip with the reason
        fcntl.flock(lock, fcntl.LOCK_UN)
        _skip_or_fail(f"SLURM could not be started: {exc}")
    cluster.timings.update(timings)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        stop(cluster)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        print(f"\n[slurm_fixture] timings: {cluster.timings}")
        shutil.rmtree(root, ignore_errors=True)
