"""The runs table: every run directory under ``outputs/`` as one row, read from its files only.

What ``hlrp runs`` prints and what :class:`hlrp_core.viz.RunDashboard` shows (same functions):

- **status** ``DONE`` / ``FAILED`` / ``RUNNING``, or ``LOST`` when a ``RUNNING`` status's heartbeat (the mtime of the
  ``status`` file) is older than ``stale_after_s``: the process died without cleanup;
- **failure** class of a failed or lost run, from evidence: ``diverged``, ``ram_guard`` (the RAM guard's stop),
  ``interrupted`` (SIGINT/SIGTERM, resumable), ``time_limit`` (the SLURM signal lead, a cell timeout, SLURM's
  TIMEOUT), ``disk`` (a refused write), ``oom_kill`` (the memory cgroup's OOM counter rose, or an OOM line of the
  kernel / SLURM), ``killed`` (the kernel died of a signal without OOM evidence), ``exception``, or ``lost`` (no
  heartbeat and no evidence); FAILED runs by their status reason, LOST runs by evidence lines of ``unified.log``;
- **steps** reached (``metrics.json`` step keys, else the last step in ``timeseries.csv``);
- **key metrics** (loss, throughput, peak RSS, verdict, wall time);
- **config diff** against a reference run (directory or name) or a named experiment preset: the seed's
  hand-written "command diff vs shared family" list, generated from ``config.yaml``.

Nothing here imports torch or TF; every reader tolerates missing or half-written files.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from .. import config as _config
from .. import runs as _runs
from ..io import read_json
from ..paths import output_root

LOST = "LOST"
#: Default age (s) after which a RUNNING status without heartbeat counts as LOST.
STALE_AFTER_S = 900.0
TIMESERIES = "timeseries.csv"
LOG_TAIL_LINES = 80

#: Failure classes from evidence, most specific first: (class, regex over the status reason). A reason is written
#: by the code that saw the end (the training's RunGuard, the launcher from the kernel's exit signal and the memory
#: cgroup's OOM-kill counter, SLURM's job state), so it names the cause in fixed phrases (docs/ROBUSTNESS.md).
FAILURE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("diverged", re.compile(r"^diverged at step", re.I)),
    ("ram_guard", re.compile(r"RamGuard|RAM guard|ram_guard", re.I)),
    ("interrupted", re.compile(r"^interrupted at step|interrupted by SIG", re.I)),
    ("time_limit", re.compile(r"^time limit signal at step|CellTimeoutError|State=TIMEOUT|DUE TO TIME LIMIT")),
    ("disk", re.compile(r"cannot write .*(disk \(or quota\) is full|read-only|permission denied)", re.I)),
    ("oom_kill", re.compile(r"killed by the OOM killer|oom_kill events \+|oom-kill event|Out of memory: Killed|"
                            r"OUT_OF_MEMORY|OutOfMemoryError|MemoryError", re.I)),
    ("killed", re.compile(r"DeadKernel|kernel ended by SIG", re.I)),
]
#: What counts as evidence in a LOST run's log tail (no reason was written): the kernel's or SLURM's own lines
#: only, never a config line that merely mentions a timeout or memory knob.
LOG_EVIDENCE: list[tuple[str, re.Pattern]] = [
    ("time_limit", re.compile(r"CANCELLED AT \S+ DUE TO TIME LIMIT|DUE TO TIME LIMIT \*\*\*|State=TIMEOUT")),
    ("oom_kill", re.compile(r"oom-kill event|Out of memory: Killed process|OUT_OF_MEMORY|Killed process \d+")),
    ("preempted", re.compile(r"DUE TO PREEMPTION")),
]

#: Metric keys shown in the table, in order: (column, candidate keys in metrics.json; first present wins).
KEY_METRICS: list[tuple[str, tuple[str, ...]]] = [
    ("loss", ("train/loss", "loss", "train_loss", "train/loss_step")),
    ("val_loss", ("val/loss", "val_loss")),
    ("steps/s", ("throughput/steps_per_s", "steps_per_s", "train/steps_per_s", "speed/steps_per_s")),
    ("peak_rss_mb", ("mem/peak_rss_mb", "peak_rss_mb")),
    ("verdict", ("verdict", "val/verdict")),
    ("wall_s", ("wall_s",)),
]
STEP_KEYS = ("global_step", "step", "steps", "train/step", "trainer/global_step", "max_step_reached")


# ---------------------------------------------------------------- small readers
def run_study(run_dir: Path, root: Path) -> str:
    """``outputs/<study>/<run>`` -> ``<study>`` (``ladders/x`` for nested studies; ``""`` at the root)."""
    try:
        rel = run_dir.resolve().parent.relative_to(root.resolve())
    except ValueError:
        return run_dir.parent.name
    return "" if str(rel) == "." else rel.as_posix()


def log_tail(run_dir: str | os.PathLike, lines: int = LOG_TAIL_LINES) -> str:
    path = Path(run_dir) / _runs.LOG
    if not path.exists():
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def classify_failure(state: str, reason: str, tail: str = "") -> str:
    """Failure class of a run (``""`` for DONE / live RUNNING runs); see the module docstring. A FAILED run is
    classed by its recorded reason; a LOST run (no reason) only by evidence lines in its log tail."""
    if state not in (_runs.FAILED, LOST):
        return ""
    if state == _runs.FAILED:
        return next((cls for cls, pat in FAILURE_PATTERNS if reason and pat.search(reason)), "exception")
    for line in reversed(tail.splitlines()):  # the latest evidence wins
        for cls, pat in LOG_EVIDENCE:
            if pat.search(line):
                return cls
    return "lost"


def read_timeseries(run_dir: str | os.PathLike):
    """``timeseries.csv`` (Lightning CSVLogger: sparse rows, one metric set per row) as a DataFrame indexed by step,
    one row per step (the last non-empty value of each column). Empty DataFrame when missing or unreadable."""
    import pandas as pd

    run_dir = Path(run_dir)
    candidates = [run_dir / TIMESERIES] + sorted(run_dir.glob("**/metrics.csv"))
    for path in candidates:
        if not path.is_file() or path.stat().st_size == 0:
            continue
        try:
            df = pd.read_csv(path, on_bad_lines="skip")
        except Exception:  # half-written or foreign file: the dashboard must not die on it
            continue
        if df.empty:
            continue
        step = next((c for c in ("step", "global_step", "trainer/global_step") if c in df.columns), None)
        if step is None:
            df.index.name = "step"
            return df
        df = df.dropna(subset=[step])
        df[step] = df[step].astype(int)
        out = df.groupby(step).last()
        out.index.name = "step"
        return out
    return pd.DataFrame()


def steps_reached(run_dir: str | os.PathLike, metrics: Optional[dict] = None, timeseries=None) -> Optional[int]:
    metrics = load_metrics(run_dir) if metrics is None else metrics
    for key in STEP_KEYS:
        v = metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return int(v)
    ts = read_timeseries(run_dir) if timeseries is None else timeseries
    if ts is not None and len(ts.index) and ts.index.name == "step":
        return int(ts.index.max())
    return None


def load_metrics(run_dir: str | os.PathLike) -> dict:
    """``metrics.json`` as a dict; ``{}`` when missing or unreadable (never raises: the table must not die)."""
    try:
        data = _runs.load_metrics(run_dir)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def key_metrics(metrics: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col, keys in KEY_METRICS:
        for k in keys:
            if k in metrics and metrics[k] is not None:
                out[col] = metrics[k]
                break
    return out


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


# ---------------------------------------------------------------- one row per run
@dataclass
class RunRow:
    """One run as the table and the dashboard show it.

    Args:
        run: Run directory name (``<timestamp>_<name>``).
        dir: Absolute path.
        study: Study folder relative to the outputs root.
        status: ``DONE`` / ``FAILED`` / ``RUNNING`` / ``LOST`` / ``MISSING``.
        failure: Failure class (see :func:`classify_failure`), ``""`` when none.
        reason: Status reason line (FAILED) or the staleness note (LOST).
        steps: Steps reached, None when unknown.
        heartbeat_age_s: Age of the status file.
        metrics: Key metrics (see :data:`KEY_METRICS`).
        experiment: ``experiment`` parameter from ``params.yaml``.
        diff: Config diff against the reference ({key: (reference, this run)}), filled by :func:`collect_runs`.
        segments: The run's segments (``segments.json``: one per start / resume / requeue), oldest first.
    """

    run: str
    dir: str
    study: str
    status: str
    failure: str = ""
    reason: str = ""
    steps: Optional[int] = None
    heartbeat_age_s: Optional[float] = None
    metrics: dict = field(default_factory=dict)
    experiment: str = ""
    diff: Optional[dict] = None
    segments: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {"run": self.run, "study": self.study, "status": self.status, "failure": self.failure,
             "steps": self.steps, **self.metrics, "reason": self.reason, "dir": self.dir}
        if self.diff is not None:
            d["diff"] = format_diff(self.diff)
        return d


def describe_run(run_dir: str | os.PathLike, root: str | os.PathLike | None = None, *,
                 stale_after_s: float = STALE_AFTER_S, now: Optional[float] = None) -> RunRow:
    """Read one run directory into a :class:`RunRow` (missing files give empty fields, never an error)."""
    run_dir = Path(run_dir)
    root = Path(root) if root is not None else run_dir.parent.parent
    state, reason = _runs.read_status(run_dir)
    status_path = run_dir / _runs.STATUS
    now = time.time() if now is None else now
    age = (now - status_path.stat().st_mtime) if status_path.exists() else None
    tail = ""
    if state == _runs.RUNNING and age is not None and age > stale_after_s:
        state = LOST
        reason = f"no heartbeat for {_human_s(age)} (status still RUNNING: the process died without cleanup)"
    if state in (_runs.FAILED, LOST):
        tail = log_tail(run_dir)
    failure = classify_failure(state, reason, tail)
    if state == LOST and failure != "lost":
        reason += f"; unified.log points at {failure}"
    metrics = load_metrics(run_dir)
    params = _read_yaml(run_dir / _runs.PARAMS)
    return RunRow(run=run_dir.name, dir=str(run_dir), study=run_study(run_dir, root), status=state,
                  failure=failure, reason=reason, steps=steps_reached(run_dir, metrics),
                  heartbeat_age_s=None if age is None else round(age, 1), metrics=key_metrics(metrics),
                  experiment=str(params.get("experiment") or ""), segments=_runs.read_segments(run_dir))


def _human_s(s: float) -> str:
    s = int(s)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


# ---------------------------------------------------------------- config diff
def _run_smoke(run_dir: Path) -> bool:
    return bool(_read_yaml(run_dir / _runs.PARAMS).get("smoke", False))


def find_run(ref: str, root: str | os.PathLike | None = None) -> Optional[Path]:
    """A run given as a directory path, or as a run-directory name (or a unique suffix of one) under ``root``."""
    p = Path(ref).expanduser()
    if (p / _runs.CONFIG).exists() or (p / _runs.STATUS).exists():
        return p
    root = Path(root or output_root())
    if not root.exists():
        return None
    hits = [d for d in _runs.list_runs(root) if d.name == ref]
    if not hits:
        hits = [d for d in _runs.list_runs(root) if d.name.endswith(ref) or ref in d.name]
    return hits[-1] if hits else None


def reference_config(ref: str, root: str | os.PathLike | None = None, smoke: bool = False):
    """(label, flat config dict) of a reference: a run (path or name) or an experiment preset name.

    Raises:
        ValueError: ``ref`` is neither a run nor a preset (the message lists the presets).
    """
    run = find_run(ref, root)
    if run is not None and (run / _runs.CONFIG).exists():
        return f"run {run.name}", _flat_run_config(run)
    presets = _config.loader.available("experiment")
    if ref in presets:
        cfg = _config.load(ref, smoke=smoke)
        return f"preset {ref}{' (smoke)' if smoke else ''}", _config.flatten(_config.to_dict(cfg))
    raise ValueError(f"--diff-against {ref!r}: not a run directory, not a run name under {root or output_root()}, "
                     f"and not an experiment preset (presets: {', '.join(presets) or 'none'})")


def _flat_run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / _runs.CONFIG
    if not path.exists():
        return {}
    try:
        return _config.flatten(_config.to_dict(_config.load_run(run_dir)))
    except Exception:  # an old/foreign config: compare the raw YAML instead
        return _config.flatten(_read_yaml(path))


#: Keys that differ between any two runs and say nothing about the command (left out of diffs).
DIFF_IGNORE = ("run_dir",)


def config_diff(run_dir: str | os.PathLike, reference: str | dict, root: str | os.PathLike | None = None
                ) -> dict[str, tuple[Any, Any]]:
    """{key: (reference value, run value)} for every config key that differs. ``reference`` is a run (path or
    name), a preset name, or an already flattened config dict. A preset is loaded with the run's smoke flag."""
    run_dir = Path(run_dir)
    mine = _flat_run_config(run_dir)
    if isinstance(reference, dict):
        ref = reference
    else:
        ref = reference_config(reference, root, smoke=_run_smoke(run_dir))[1]
    keys = sorted(set(mine) | set(ref))
    return {k: (ref.get(k), mine.get(k)) for k in keys
            if ref.get(k) != mine.get(k) and not any(k.endswith(i) for i in DIFF_IGNORE)
            and not k.startswith("data.effective.")}  # derived values, recorded by runs.start


def format_diff(diff: dict[str, tuple[Any, Any]], sep: str = ", ") -> str:
    """``a.b=2 (was 1), c=x`` style, the seed's "command diff" list."""
    if not diff:
        return "(same config)"
    return sep.join(f"{k}={_short(v)} (was {_short(r)})" for k, (r, v) in diff.items())


def _short(v: Any, n: int = 60) -> str:
    s = repr(v) if isinstance(v, str) and (not v or " " in v) else str(v)
    return s if len(s) <= n else s[: n - 3] + "..."


# ---------------------------------------------------------------- the table
def collect_runs(root: str | os.PathLike | None = None, *, study: Optional[str] = None,
                 status: Optional[str] = None, diff_against: Optional[str] = None,
                 stale_after_s: float = STALE_AFTER_S) -> list[RunRow]:
    """All runs under ``root`` (default ``outputs/``), oldest first, filtered by study (the study folder or a
    prefix of it, e.g. ``ladders``) and status (``DONE``/``FAILED``/``RUNNING``/``LOST``, case-insensitive,
    comma-separated allowed), each with a config diff against ``diff_against`` when given."""
    root = Path(root or output_root())
    if not root.exists():
        return []
    now = time.time()
    rows = [describe_run(d, root, stale_after_s=stale_after_s, now=now) for d in _runs.list_runs(root)]
    if study:
        s = study.strip("/")
        rows = [r for r in rows if r.study == s or r.study.startswith(s + "/")]
    if status:
        wanted = {x.strip().upper() for x in status.split(",") if x.strip()}
        rows = [r for r in rows if r.status in wanted]
    if diff_against:
        ref_cache: dict[bool, dict] = {}
        for r in rows:
            smoke = _run_smoke(Path(r.dir))
            if smoke not in ref_cache:
                ref_cache[smoke] = reference_config(diff_against, root, smoke=smoke)[1]
            r.diff = config_diff(r.dir, ref_cache[smoke])
    return rows


def runs_dataframe(rows: Iterable[RunRow]):
    """The table as a pandas DataFrame (one row per run)."""
    import pandas as pd

    return pd.DataFrame([r.as_dict() for r in rows])


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(rows: list[RunRow], diff_label: str = "") -> str:
    """Plain-text table plus, per run that did not finish, its reason, and per run its config diff."""
    if not rows:
        return "no runs found"
    metric_cols = [c for c, _ in KEY_METRICS if any(c in r.metrics for r in rows)]
    head = ["run", "study", "status", "failure", "steps", *metric_cols]
    body = [[r.run, r.study or ".", r.status, r.failure or "-", _fmt(r.steps),
             *[_fmt(r.metrics.get(c)) for c in metric_cols]] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths]), *(line(b) for b in body)]
    notes = [r for r in rows if r.reason]
    if notes:
        out += ["", "why runs did not finish:"]
        out += [f"  {r.run}: [{r.failure or r.status}] {r.reason}" for r in notes]
    resumed = [r for r in rows if len(r.segments) > 1]
    if resumed:
        out += ["", "segments (start/resume/requeue: job, steps, how each ended):"]
        for r in resumed:
            out.append(f"  {r.run}:")
            out += [f"    {format_segment(s)}" for s in r.segments]
    if any(r.diff is not None for r in rows):
        out += ["", f"config diff vs {diff_label or 'reference'}:"]
        for r in rows:
            out.append(f"  {r.run} ({r.status}):")
            out += [f"    {k}={_short(v)} (was {_short(ref)})" for k, (ref, v) in (r.diff or {}).items()] or \
                ["    (same config)"]
    return "\n".join(out)


def format_segment(seg: dict) -> str:
    """``#1 resume job 123 steps 20-30 DONE`` (an unknown end: the process died without writing one)."""
    steps = f"{seg.get('start_step') if seg.get('start_step') is not None else '?'}-" \
            f"{seg.get('end_step') if seg.get('end_step') is not None else '?'}"
    job = f" job {seg['job_id']}" if seg.get("job_id") else ""
    return f"#{seg.get('segment')} {seg.get('how')}{job} steps {steps} {seg.get('end') or '(no end recorded: LOST)'}"


def counts(rows: Iterable[RunRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.status] = out.get(r.status, 0) + 1
    return out
