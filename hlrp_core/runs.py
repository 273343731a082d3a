"""Run directories: one folder per run, never overwritten, holding the files that ARE the record.

``outputs/<study>/<YYYY-MM-DD_HH-MM-SS>_<name>/``:

| file | content |
|---|---|
| ``notebook.ipynb`` | the executed notebook (papermill) |
| ``params.yaml`` | the merged papermill parameters |
| ``config.yaml`` | the fully resolved config (reload with ``hlrp_core.config.load_run``) |
| ``env.json`` | git SHA + dirty flag, host, CPU/GPU, SLURM ids, package versions, command |
| ``status`` | ``RUNNING`` / ``DONE`` / ``FAILED`` (+ a second line with the reason); its mtime is the heartbeat |
| ``metrics.json`` | flat scalars, rewritten atomically at each record (plus memory extremes) |
| ``unified.log`` | logging, streamed cell output (via the launcher), memory samples, tracebacks |
| ``figures/*.png`` | every figure a notebook shows |

Notebook usage (the start cell)::

    cfg, run = hlrp_core.runs.start(experiment, overrides + rung_overrides, seed=seed, run_dir=run_dir, smoke=smoke)
    ...
    run.finish(metrics)
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import psutil
import yaml

from . import config as _config
from .io import atomic_write_json, atomic_write_text, read_json
from .inputs import check_inputs
from .paths import REPO_ROOT, output_root
from .storage import is_write_error, write_error

RUNNING, DONE, FAILED = "RUNNING", "DONE", "FAILED"
STATUS, METRICS, CONFIG, PARAMS, ENV, LOG = "status", "metrics.json", "config.yaml", "params.yaml", "env.json", \
    "unified.log"
METRICS_SCHEMA_VERSION = 1
PACKAGES = ["hlrp", "torch", "tensorflow-cpu", "tensorflow", "tensorflow-datasets", "lightning", "transformers",
            "numpy", "omegaconf", "papermill", "nbval", "mujoco"]
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ---------------------------------------------------------------- run directories and status files
def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def new_run_dir(study: str, name: str, root: Path | None = None) -> Path:
    """Create ``<root>/<study>/<timestamp>_<name>`` with an exclusive mkdir. A second run in the same second gets a
    ``-2``, ``-3`` suffix: names still sort chronologically and nothing is ever overwritten."""
    parent = (root or output_root()) / study
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{timestamp()}_{slug(name)}"
    for i in range(1, 1000):
        path = parent / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run directory under {parent}")


def write_status(run_dir: str | os.PathLike, state: str, reason: str = "") -> None:
    reason = " ".join(str(reason).split())  # one line
    text = state + ("\n" + reason if reason else "") + "\n"
    try:
        atomic_write_text(Path(run_dir) / STATUS, text)
    except OSError:
        # a full disk cannot hold the temp file, but the existing status file's block can be rewritten in place:
        # a run must not stay RUNNING because the disk that made it fail is full
        path = Path(run_dir) / STATUS
        if not path.exists():
            raise
        with open(path, "r+b") as fh:
            data = text.encode()[:4096]
            fh.write(data)
            fh.truncate(len(data))


def read_status(run_dir: str | os.PathLike) -> tuple[str, str]:
    """(state, reason); ``("MISSING", "")`` when there is no status file."""
    path = Path(run_dir) / STATUS
    if not path.exists():
        return "MISSING", ""
    lines = path.read_text().splitlines() + ["", ""]
    return lines[0].strip(), lines[1].strip()


def record_metrics(run_dir: str | os.PathLike, metrics: dict[str, Any], final: bool = False) -> dict:
    """Merge flat scalars into ``metrics.json`` (atomic). Returns the merged dict."""
    path = Path(run_dir) / METRICS
    merged = read_json(path, default={}) or {}
    merged.update(metrics)
    merged["schema_version"] = METRICS_SCHEMA_VERSION
    merged["run_id"] = Path(run_dir).name
    merged["final"] = bool(final or merged.get("final", False))
    atomic_write_json(path, merged)
    return merged


# ---------------------------------------------------------------- environment capture
def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _gpus() -> list[str]:
    """GPU names from nvidia-smi (no torch import here: runs is below the model floors)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return [l.strip() for l in out.stdout.splitlines() if l.strip()] if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        return []


def capture_env(command: str | None = None) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "submitted_git_sha": os.environ.get("HLRP_SUBMITTED_COMMIT", ""),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_mb": round(psutil.virtual_memory().total / 2**20),
        "gpus": _gpus(),
        "slurm": {k: v for k, v in os.environ.items() if k.startswith("SLURM_") and k in (
            "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION", "SLURM_JOB_NAME",
            "SLURM_NTASKS", "SLURM_NODELIST", "SLURM_CLUSTER_NAME")},
        "packages": versions,
        "command": command or os.environ.get("HLRP_COMMAND") or " ".join(sys.argv),
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------- memory sampling
def mem_snapshot() -> dict[str, float]:
    """RSS of this process plus its children, and the machine's MemAvailable, in MB."""
    proc = psutil.Process()
    rss = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            rss += child.memory_info().rss
        except psutil.Error:
            pass
    return {"rss_mb": rss / 2**20, "available_mb": psutil.virtual_memory().available / 2**20}


class MemorySampler:
    """Background thread: logs RSS and MemAvailable every ``interval`` seconds and keeps their extremes."""

    def __init__(self, interval: float, logger: logging.Logger):
        self.interval, self.log = interval, logger
        self.peak_rss_mb, self.min_available_mb = 0.0, float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hlrp-mem-sampler", daemon=True)

    def sample(self) -> dict[str, float]:
        snap = mem_snapshot()
        self.peak_rss_mb = max(self.peak_rss_mb, snap["rss_mb"])
        self.min_available_mb = min(self.min_available_mb, snap["available_mb"])
        return snap

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            snap = self.sample()
            self.log.debug("mem rss_mb=%.0f available_mb=%.0f", snap["rss_mb"], snap["available_mb"])

    def start(self) -> "MemorySampler":
        self.sample()
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def extremes(self) -> dict[str, float]:
        self.sample()
        return {"mem/peak_rss_mb": round(self.peak_rss_mb, 1), "mem/min_available_mb": round(self.min_available_mb, 1)}


# ---------------------------------------------------------------- logging
#: Libraries whose DEBUG/INFO lines stay out of ``unified.log`` (WARNING and above still reach it).
QUIET_LIBRARIES = ("fsspec", "matplotlib", "PIL", "urllib3", "filelock", "asyncio", "h5py", "absl")


def attach_log(run_dir: Path, level: str = "INFO") -> logging.Logger:
    """Route Python logging into ``<run>/unified.log`` (replacing the handler of an earlier run in this process, so
    re-running a notebook cell never writes into the previous run's log)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_hlrp", False):
            root.removeHandler(h)
            h.close()
    fh = logging.FileHandler(run_dir / LOG)
    fh.setFormatter(logging.Formatter(_LOG_FORMAT))
    fh.setLevel(logging.DEBUG)
    fh._hlrp = True  # type: ignore[attr-defined]
    root.addHandler(fh)
    root.setLevel(min(root.level or logging.WARNING, logging.DEBUG))
    log = logging.getLogger("hlrp")
    log.setLevel(getattr(logging, level.upper(), logging.INFO))
    if not any(getattr(h, "_hlrp_console", False) for h in log.handlers):
        sh = logging.StreamHandler(sys.stdout)  # visible in the notebook and streamed by papermill --log-output
        sh.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        sh.setLevel(logging.INFO)
        sh._hlrp_console = True  # type: ignore[attr-defined]
        log.addHandler(sh)
    logging.getLogger("hlrp.mem").setLevel(logging.DEBUG)
    for name in QUIET_LIBRARIES:  # their DEBUG lines (a line per file opened, per font tried) drown the run's own
        lib = logging.getLogger(name)
        if lib.level == logging.NOTSET:  # a level the researcher set stays
            lib.setLevel(logging.WARNING)
    return log


# ---------------------------------------------------------------- the run object
class Run:
    """A live run: its directory, config, logger and recording helpers."""

    def __init__(self, run_dir: Path, cfg: _config.Config, log: logging.Logger, sampler: MemorySampler):
        self.dir, self.cfg, self.log, self._sampler = run_dir, cfg, log, sampler
        self.started = time.time()

    @property
    def name(self) -> str:
        return self.dir.name

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def record(self, metrics: dict[str, Any], final: bool = False) -> dict:
        """Merge scalars (plus memory extremes) into metrics.json; also touches the heartbeat."""
        merged = record_metrics(self.dir, {**metrics, **self._sampler.extremes()}, final=final)
        self.heartbeat()
        return merged

    def heartbeat(self) -> None:
        status = self.dir / STATUS
        if status.exists():
            os.utime(status)

    def save_figure(self, fig: Any, name: str, dpi: int = 100) -> Path:
        path = self.path("figures", f"{slug(name)}.png")
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
        return path

    def finish(self, metrics: dict[str, Any] | None = None) -> dict:
        """Write the final metrics and mark the run DONE, or FAILED when training was stopped early by the RAM guard
        (``stopped_reason`` in the metrics): the record must not call a cut-short run finished."""
        merged = self.record({**(metrics or {}), "wall_s": round(time.time() - self.started, 2)}, final=True)
        self._sampler.stop()
        stopped = merged.get("stopped_reason")
        if stopped:
            reason = f"RamGuard stop at step {merged.get('stopped_step', '?')}: {stopped}"
            update_segment(self.dir, ended=_dt.datetime.now().isoformat(timespec="seconds"), end=f"FAILED: {reason}")
            write_status(self.dir, FAILED, reason)
            self.log.error("run FAILED (stopped early): %s", stopped)
            return merged
        update_segment(self.dir, ended=_dt.datetime.now().isoformat(timespec="seconds"), end="DONE",
                       end_step=merged.get("global_step", merged.get("stage2/global_step")))
        write_status(self.dir, DONE)
        self.log.info("run DONE: %s", self.dir)
        return merged

    def fail(self, reason: str, step: int | None = None) -> None:
        self._sampler.stop()
        update_segment(self.dir, ended=_dt.datetime.now().isoformat(timespec="seconds"), end=f"FAILED: {reason}",
                       **({"end_step": step} if step is not None else {}))
        write_status(self.dir, FAILED, reason)
        self.log.error("run FAILED: %s", reason)


def _seed_python(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def start(experiment: str = "", overrides: Iterable[str] = (), *, seed: int = 0, run_dir: str = "",
          smoke: bool = False, name: str = "") -> tuple[_config.Config, Run]:
    """Load and validate the config, then create (or adopt, when the launcher made it) the run directory and write
    ``config.yaml``, ``env.json``, ``status`` (RUNNING) and the log. Raises ``ConfigError`` before touching disk."""
    if isinstance(overrides, str):
        raise _config.ConfigError(f"overrides={overrides!r} is a string; give a list of KEY=VALUE strings, e.g. "
                                  f"overrides: [{overrides!r}]")
    overrides = list(overrides)
    cfg = _config.load(experiment, overrides, smoke=smoke, seed=seed)
    problems = check_inputs(cfg)  # data root, artifact, checkpoint: before any directory exists
    if problems:
        raise _config.ConfigError(problems)
    resume_dir = os.environ.get(RESUME_ENV, "")
    if run_dir and resume_dir and Path(run_dir).resolve() == Path(resume_dir).resolve() \
            and (Path(run_dir) / CONFIG).exists():
        return _adopt_for_resume(Path(run_dir), cfg)
    try:
        if run_dir:
            path = Path(run_dir)
            if (path / CONFIG).exists():
                raise FileExistsError(f"{path} already holds a run (config.yaml exists); runs are never "
                                      "overwritten. Leave run_dir empty for a fresh directory.")
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = new_run_dir(cfg.experiment.study or "scratch", cfg.experiment.name or name or experiment or "run")
    except OSError as exc:
        if is_write_error(exc):
            raise write_error(exc.filename or run_dir or output_root(), exc, "run directory") from None
        raise
    from .config.data import effective_knobs  # floor 1: the effective (clamped/derived) data knobs

    cfg.data.effective = effective_knobs(cfg)
    if not (path / PARAMS).exists():
        atomic_write_text(path / PARAMS, yaml.safe_dump(
            {"experiment": experiment, "overrides": overrides, "seed": seed, "smoke": smoke, "run_dir": str(path)},
            sort_keys=False))
    atomic_write_text(path / CONFIG, _config.to_yaml(cfg))
    atomic_write_json(path / ENV, capture_env())
    write_status(path, RUNNING)
    start_segment(path, "start")
    log = attach_log(path, cfg.logging.level)
    sampler = MemorySampler(cfg.logging.memory_sample_interval_s, logging.getLogger("hlrp.mem")).start()
    _seed_python(cfg.seed)
    changed = _config.diff(cfg)
    log.info("run dir: %s", path)
    log.info("config differs from defaults in %d keys: %s", len(changed),
             ", ".join(f"{k}={v[1]!r}" for k, v in changed.items()) or "(none)")
    log.info("effective data knobs: %s", ", ".join(f"{k}={v}" for k, v in cfg.data.effective.items()))
    return cfg, Run(path, cfg, log, sampler)


# ---------------------------------------------------------------- segments (resumes into the same directory)
RESUME_ENV = "HLRP_RESUME_RUN_DIR"  # set by `hlrp resume` (and the SLURM requeue) for the kernel's runs.start
SEGMENTS = "segments.json"
#: Config keys a resume may change (nothing a continued run computes depends on them); see hlrp_core.resume_run.
RESUME_SAFE = ("training.max_steps", "training.num_threads", "training.ram_guard.", "training.heartbeat_every_n_steps",
               "logging.", "data.adapter.threads", "training.resume_from", "data.effective.")


def read_segments(run_dir: str | os.PathLike) -> list[dict]:
    return read_json(Path(run_dir) / SEGMENTS, default=[]) or []


def start_segment(run_dir: Path, how: str) -> dict:
    segs = read_segments(run_dir)
    seg = {"segment": len(segs), "how": how, "started": _dt.datetime.now().isoformat(timespec="seconds"),
           "job_id": os.environ.get("SLURM_JOB_ID", ""), "host": socket.gethostname(), "pid": os.getpid(),
           "start_step": 0 if how == "start" else None, "end_step": None, "ended": None, "end": None}
    atomic_write_json(run_dir / SEGMENTS, segs + [seg])
    return seg


def update_segment(run_dir: str | os.PathLike, **fields: Any) -> None:
    """Merge ``fields`` into the latest segment (no-op for a run without segments.json)."""
    segs = read_segments(run_dir)
    if not segs:
        return
    segs[-1].update(fields)
    try:
        atomic_write_json(Path(run_dir) / SEGMENTS, segs)
    except OSError:  # a full disk must not hide the status written next
        pass


STOP_KEYS = ("stopped_reason", "stopped_step", "stopped_kind", "final")


def _forget_stop(path: Path) -> None:
    """A resumed segment starts unstopped: the previous segment's stop stays in ``segments.json`` only (else
    ``finish`` would read it back from ``metrics.json`` and fail the finished run)."""
    metrics = read_json(path / METRICS, default={}) or {}
    if any(k in metrics for k in STOP_KEYS):
        atomic_write_json(path / METRICS, {k: v for k, v in metrics.items() if k not in STOP_KEYS})


def _adopt_for_resume(path: Path, cfg: _config.Config) -> tuple[_config.Config, "Run"]:
    """``runs.start`` for ``hlrp resume``: the same directory, the same config (except ``RESUME_SAFE`` keys), a new
    segment; ``config.yaml`` is rewritten only for those keys (the previous one is kept in ``segments/``)."""
    from .config.data import effective_knobs

    cfg.data.effective = effective_knobs(cfg)
    old = _config.flatten(yaml.safe_load((path / CONFIG).read_text()) or {})
    new = _config.flatten(_config.to_dict(cfg))
    safe = lambda k: any(k == s or (s.endswith(".") and k.startswith(s)) for s in RESUME_SAFE)  # noqa: E731
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k) and not safe(k)]
    if diffs:
        raise _config.ConfigError([f"cannot resume {path} with a different config ({len(diffs)} keys):"] + diffs)
    segs = read_segments(path)
    (path / "segments").mkdir(exist_ok=True)
    os.replace(path / CONFIG, path / "segments" / f"config.seg{max(0, len(segs) - 1)}.yaml")
    atomic_write_text(path / CONFIG, _config.to_yaml(cfg))
    write_status(path, RUNNING)
    seg = start_segment(path, "resume")
    _forget_stop(path)
    log = attach_log(path, cfg.logging.level)
    sampler = MemorySampler(cfg.logging.memory_sample_interval_s, logging.getLogger("hlrp.mem")).start()
    _seed_python(cfg.seed)
    log.info("===== segment %d: resuming %s from %s =====", seg["segment"], path, cfg.training.resume_from)
    return cfg, Run(path, cfg, log, sampler)


def load_metrics(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / METRICS, default={}) or {}


def list_runs(root: str | os.PathLike | None = None) -> list[Path]:
    """Every run directory (a folder with a status file) under ``root``, oldest first."""
    root = Path(root or output_root())
    return sorted((p.parent for p in root.rglob(STATUS)), key=lambda p: p.name)


def describe(run_dir: str | os.PathLike) -> dict:
    """A one-row summary of a run from its files (status, reason, key metrics, age of the heartbeat)."""
    run_dir = Path(run_dir)
    state, reason = read_status(run_dir)
    status_path = run_dir / STATUS
    age = time.time() - status_path.stat().st_mtime if status_path.exists() else None
    return {"run": run_dir.name, "dir": str(run_dir), "status": state, "reason": reason,
            "heartbeat_age_s": None if age is None else round(age, 1), "metrics": load_metrics(run_dir)}


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
