"""``hlrp resume RUN_DIR``: continue a FAILED / LOST run from its last checkpoint into the SAME run directory, with
the same config, as a new segment (orchestration floor 6; docs/ROBUSTNESS.md).

    hlrp resume outputs/train/2026-12-03_14-37-23_laq_tiny [--set training.max_steps=4000]

Checks, all before anything is written: the run is not DONE and not live (a RUNNING status whose heartbeat is
younger than ``--stale-after`` is refused), ``ckpt/last.ckpt`` is a readable checkpoint, and each ``--set`` is one
that cannot change results (``RESUME_SAFE``; ``training.max_steps`` only upwards). Then the notebook the run was made
from (``launch.json``) runs again with the run's own ``params.yaml`` plus ``training.resume_from=<run>/ckpt/last.ckpt``;
``runs.start`` adopts the directory (``HLRP_RESUME_RUN_DIR``): it checks the config equals ``config.yaml`` except for
those keys, keeps ``timeseries.csv`` only up to the checkpoint's step (the full old file is kept as
``segments/timeseries.seg<N>.csv``), and appends a segment to ``segments.json`` and ``unified.log``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

from . import runs
from .config import ConfigError
from .inputs import checkpoint_problem
from .io import read_json
from .paths import resolve
from .stopping import STOP_GRACE_S

LAUNCH = "launch.json"
#: Overrides a resume may add: none of them changes what the continued run computes (one home: runs.RESUME_SAFE).
RESUME_SAFE = tuple(k for k in runs.RESUME_SAFE if k not in ("training.resume_from", "data.effective."))
STALE_AFTER_S = 900.0  # as ``hlrp runs``: a RUNNING status without a heartbeat for this long is LOST


def _flat_config(run_dir: Path) -> dict:
    from .config import flatten

    return flatten(yaml.safe_load((run_dir / runs.CONFIG).read_text()) or {})


def check_resume_overrides(run_dir: Path, sets: list[str]) -> list[str]:
    problems = []
    old = _flat_config(run_dir)
    for item in sets:
        key, _, value = item.partition("=")
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_SAFE):
            problems.append(f"--set {item}: {key} may change results, so a resume cannot change it (allowed: "
                            f"{', '.join(RESUME_SAFE)}); start a new run with training.resume_from instead")
        elif key == "training.max_steps":
            try:
                if int(value) < int(old.get("training.max_steps", 0)):
                    problems.append(f"--set {item}: training.max_steps may only grow on resume (the run has "
                                    f"{old.get('training.max_steps')})")
            except ValueError:
                problems.append(f"--set {item}: training.max_steps must be an integer")
    return problems


def resume_problems(run_dir: Path, sets: list[str], stale_after_s: float = STALE_AFTER_S,
                    now: Optional[float] = None) -> list[str]:
    """Why ``run_dir`` cannot be resumed (empty = it can)."""
    if not (run_dir / runs.CONFIG).exists() or not (run_dir / runs.PARAMS).exists():
        return [f"{run_dir}: not a run directory (no config.yaml / params.yaml)"]
    problems = []
    state, reason = runs.read_status(run_dir)
    if state == runs.DONE:
        problems.append(f"{run_dir} is DONE; nothing to resume (start a new run with "
                        f"training.resume_from={run_dir / 'ckpt' / 'last.ckpt'} to train further)")
    elif state == runs.RUNNING:
        age = (now or time.time()) - (run_dir / runs.STATUS).stat().st_mtime
        if age <= stale_after_s:
            problems.append(f"{run_dir} is RUNNING (heartbeat {age:.0f} s ago, stale after {stale_after_s:.0f} s); "
                            "stop it first (SIGTERM checkpoints it) or wait until `hlrp runs` shows it LOST")
    problem = checkpoint_problem(run_dir / "ckpt" / "last.ckpt", "the run's ckpt/last.ckpt")
    if problem:
        problems.append(problem + " (this run wrote no checkpoint to resume)")
    launch = read_json(run_dir / LAUNCH, default={}) or {}
    if not launch.get("notebook"):
        problems.append(f"{run_dir}/{LAUNCH} is missing: this run was not made by `hlrp run`, so its notebook is "
                        "unknown; resume it with hlrp run NOTEBOOK --set training.resume_from=<run>/ckpt/last.ckpt")
    return problems + check_resume_overrides(run_dir, sets)


def segments(run_dir: str | os.PathLike) -> list[dict]:
    return read_json(Path(run_dir) / "segments.json", default=[]) or []


def resume(run_dir: str | os.PathLike, sets: list[str] = (), *, stale_after_s: float = STALE_AFTER_S,
           stop_grace_s: Optional[float] = None, time_limit_grace_s: Optional[float] = None,
           timeout_s: Optional[float] = None) -> int:
    from . import launch

    run_dir = resolve(run_dir).resolve()
    sets = list(sets)
    problems = resume_problems(run_dir, sets, stale_after_s)
    if problems:
        print("error: cannot resume:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    info = read_json(run_dir / LAUNCH)
    ckpt = run_dir / "ckpt" / "last.ckpt"
    params = yaml.safe_load((run_dir / runs.PARAMS).read_text()) or {}
    overrides = [o for o in (params.get("overrides") or []) if not str(o).startswith("training.resume_from=")]
    params["overrides"] = overrides + sets + [f"training.resume_from={ckpt}"]
    os.environ["HLRP_RESUME_RUN_DIR"] = str(run_dir)
    code, _ = launch.execute(info["notebook"], [], [], run_dir=str(run_dir), kernel=info.get("kernel", launch.KERNEL),
                             extra_params=params, resume=True, timeout_s=timeout_s or None,
                             stop_grace_s=STOP_GRACE_S if stop_grace_s is None else stop_grace_s,
                             time_limit_grace_s=time_limit_grace_s)
    return code


def _cmd_resume(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        return resume(args.run_dir, args.set or [], stale_after_s=args.stale_after, stop_grace_s=args.stop_grace,
                      time_limit_grace_s=args.time_limit_grace, timeout_s=args.cell_timeout)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a FAILED/LOST run from ckpt/last.ckpt into the same run directory")
    p.add_argument("run_dir")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help=f"an override that cannot change results ({', '.join(RESUME_SAFE)})")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_S, metavar="SECONDS",
                   help="a RUNNING run whose heartbeat is older than this counts as LOST (resumable)")
    p.add_argument("--stop-grace", type=float, default=None, metavar="SECONDS", help="as for hlrp run")
    p.add_argument("--cell-timeout", type=float, default=0, metavar="SECONDS", help="as for hlrp run")
    from .launch import add_time_limit_grace  # lazily, as resume() imports launch

    add_time_limit_grace(p)
    p.set_defaults(func=_cmd_resume)
