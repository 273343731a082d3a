"""``hlrp submit`` and ``hlrp jobs``.

    hlrp submit notebooks/10_train_laq.ipynb -f params/laq_tiny.yaml --cluster lrz_x100 --also mcml_x100
    hlrp submit notebooks/00_workbench_check.ipynb --cluster lrz_x100 --dry-run
    hlrp submit --resume outputs/train/2026-02-18_17-46-58_laq --cluster lrz_x100
    hlrp jobs [--json]
"""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_submit(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from .slurm import SlurmError
    from .submit import resume, submit

    try:
        if args.resume:
            sub = resume(args.resume, args.cluster, time_limit=args.time, dry_run=args.dry_run, hold=args.hold)
        else:
            if not args.notebook or not args.cluster:
                print("error: hlrp submit needs NOTEBOOK and --cluster PRESET (or --resume RUN_DIR)", file=sys.stderr)
                return 2
            sub = submit(args.notebook, args.file or [], args.set or [], args.cluster, args.also or [],
                         dry_run=args.dry_run, hold=args.hold, time_limit=args.time, auto_resume=args.auto_resume,
                         cell_timeout_s=args.cell_timeout)
    except (ConfigError, SlurmError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(sub.describe())
    if sub.jobs and sub.jobs[0]["job_id"] == "local":
        return int(sub.jobs[0]["rc"])
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from .jobs import format_rows, list_jobs

    rows = list_jobs(limit=args.limit)
    print(json.dumps(rows, indent=2) if args.json else format_rows(rows))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a notebook run as a SLURM job (dual-queue with --also)")
    p.add_argument("notebook", nargs="?")
    p.add_argument("-f", "--file", action="append", help="papermill parameter YAML (repeatable; later wins)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--cluster", help="preset in hlrp_core/configs/cluster/ (e.g. lrz_x100, local)")
    p.add_argument("--also", action="append", metavar="PRESET",
                   help="also queue the run here; the first job to start wins, the other is cancelled")
    p.add_argument("--dry-run", action="store_true", help="print the job scripts and commands; submit nothing")
    p.add_argument("--hold", action="store_true", help="submit held (start with `scontrol release <id>`)")
    p.add_argument("--time", help="time limit for this submission (overrides the preset, e.g. 00:15:00)")
    p.add_argument("--cell-timeout", type=float, default=0, metavar="SECONDS",
                   help="fail the run when one notebook cell runs longer (as `hlrp run --cell-timeout`; 0 = none)")
    p.add_argument("--auto-resume", type=int, default=None, metavar="N",
                   help="resume a run killed by its time limit up to N times (default: the preset's auto_resume)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint in a new run dir")
    p.set_defaults(func=_cmd_submit)

    j = sub.add_parser("jobs", help="this project's SLURM jobs, reconciled with each run's status file")
    j.add_argument("--json", action="store_true", help="machine-readable rows")
    j.add_argument("--limit", type=int, default=50, help="newest N submissions (default 50)")
    j.set_defaults(func=_cmd_jobs)
