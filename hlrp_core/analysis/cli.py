"""``hlrp runs``: the terminal twin of the JupyterLab run dashboard (same functions: ``analysis.runs_table``).

    hlrp runs                                   # every run under outputs/, oldest first
    hlrp runs --study demo --status FAILED,LOST # why did they die?
    hlrp runs --diff-against workbench_check    # config diff vs a named experiment preset
    hlrp runs --diff-against 2026-02-18_22-05-43_local_s2_bs32   # ... or vs a reference run (name or path)
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "runs", help="list runs: status, failure reason, steps, key metrics, config diff",
        description="List run directories with status (LOST = RUNNING without heartbeat), failure class "
                    "(exception / ram_guard / oom_kill / time_limit / lost), steps reached, key metrics and the "
                    "config diff against a reference run or an experiment preset.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="outputs root (default: $HLRP_OUTPUT_ROOT or <repo>/outputs)")
    p.add_argument("--study", default=None, help="only this study folder (or its sub-folders), e.g. demo, ladders")
    p.add_argument("--status", default=None, help="only these states, comma separated: DONE,FAILED,RUNNING,LOST")
    p.add_argument("--diff-against", default=None, metavar="RUN|PRESET",
                   help="config diff of every run against a run (directory or name) or an experiment preset")
    p.add_argument("--stale-after", type=float, default=None, metavar="SECONDS",
                   help="a RUNNING run whose heartbeat is older than this is LOST (default 900)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(func=cmd_runs)


def cmd_runs(args) -> int:
    from . import runs_table as rt

    stale = rt.STALE_AFTER_S if args.stale_after is None else args.stale_after
    label = ""
    if args.diff_against:
        try:
            label = rt.reference_config(args.diff_against, args.root)[0]
        except ValueError as exc:
            print(f"hlrp runs: {exc}")
            return 2
    rows = rt.collect_runs(args.root, study=args.study, status=args.status, diff_against=args.diff_against,
                           stale_after_s=stale)
    if args.json:
        print(json.dumps([{**r.as_dict(), "diff": {k: list(v) for k, v in (r.diff or {}).items()}}
                          for r in rows], indent=2, default=str))
    else:
        print(rt.format_table(rows, label))
        if rows:
            print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(rt.counts(rows).items())))
            for line in viewer_lines([r.dir for r in rows]):
                print(line)
    return 0


def viewer_lines(run_dirs) -> list[str]:
    """The ``tensorboard --logdir`` line for the listed runs that wrote TensorBoard events (their common parent:
    TensorBoard finds every ``<run>/tensorboard/`` below it), and the ``wandb sync`` line for offline wandb runs."""
    import os
    from pathlib import Path

    dirs = [Path(d) for d in run_dirs]
    out = []
    tb = [d for d in dirs if (d / "tensorboard").is_dir()]
    if tb:
        parent = Path(os.path.commonpath([str(d.parent) for d in tb])) if len(tb) > 1 else tb[0]
        out.append(f"TensorBoard ({len(tb)} runs): tensorboard --logdir {parent}")
    wb = [d for d in dirs if any((d / "wandb").glob("offline-run-*"))]
    if wb:
        out.append(f"wandb offline ({len(wb)} runs): wandb sync " + " ".join(f"{d}/wandb/offline-run-*" for d in wb))
    return out
