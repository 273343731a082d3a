"""``hlrp ladder expand | run | report`` (also ``python -m hlrp_core.ladder ...``).

    hlrp ladder expand seed_2026_02_18          # write + print the rung files, with invalid/duplicate verdicts
    hlrp ladder run data_loader_smoke --backend local [--max-parallel 1]
    hlrp ladder run data_loader_smoke --backend slurm --cluster lrz_x100 --max-parallel 4 [--wait]
    hlrp ladder report data_loader_smoke        # table (stdout) + CSV/markdown/figures under outputs/ladders/<name>/
"""

from __future__ import annotations

import argparse
import sys


def _cmd_expand(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from . import spec as ls

    try:
        spec = ls.load_spec(args.name)
        rungs = ls.expand(spec)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        problems = ls.drift(spec, rungs)
        for p in problems:
            print(f"drift: {p}", file=sys.stderr)
        return 1 if problems else 0
    paths = ls.write_rungs(spec, rungs)
    print(ls.expand_table(rungs))
    n_bad = sum(r.status == ls.INVALID for r in rungs)
    n_dup = sum(r.status == ls.DUPLICATE for r in rungs)
    print(f"\n{len(paths)} rung files in {spec.dir}: {len(rungs) - n_bad - n_dup} launchable, {n_bad} invalid-config "
          f"(never launched), {n_dup} duplicate/no-op")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from .run import run_ladder

    try:
        results = run_ladder(args.name, backend=args.backend, max_parallel=args.max_parallel,
                             include_duplicates=args.include_duplicates, cluster=args.cluster or "",
                             kernel=args.kernel or "", dry_run=args.dry_run, wait=args.wait)
    except (ConfigError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.backend == "slurm" and not isinstance(results, list):
        if results is not None:
            print(results.describe() if hasattr(results, "describe") else results)
            if not args.dry_run:
                print(f"follow with `hlrp jobs`; when the array has ended: hlrp ladder report {args.name} "
                      f"(or submit with --wait)")
        return 0
    bad = [r for r in results if r.status in ("fail", "lost")]
    print(f"hlrp ladder run: {len(results)} run(s): " +
          ", ".join(f"{s}={sum(r.status == s for r in results)}" for s in sorted({r.status for r in results})))
    return 1 if bad else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from .report import build_report

    try:
        rep = build_report(args.name, out_dir=args.out or None, include_smoke=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(rep.markdown)
    print(f"\nwritten: {', '.join(str(p) for p in rep.files)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ladder", help="speed ladders: expand rung files, run them, report the table")
    lsub = p.add_subparsers(dest="ladder_command", metavar="ACTION")
    lsub.required = True
    e = lsub.add_parser("expand", help="write params/ladders/<name>/rung_NNN.yaml and print the verdicts")
    e.add_argument("name", help="ladder under params/ladders/ (or a path to a ladder directory)")
    e.add_argument("--check", action="store_true", help="only compare the committed rung files (exit 1 on drift)")
    e.set_defaults(func=_cmd_expand)
    r = lsub.add_parser("run", help="run every launchable rung as its own papermill run (resumes)")
    r.add_argument("name")
    r.add_argument("--backend", choices=["local", "slurm"], default="local")
    r.add_argument("--max-parallel", type=int, default=1, help="rungs at once (local) / array throttle (slurm)")
    r.add_argument("--include-duplicates", action="store_true", help="also run rungs flagged duplicate/no-op")
    r.add_argument("--cluster", help="cluster preset for --backend slurm")
    r.add_argument("--kernel", help="Jupyter kernel (default: hlrp)")
    r.add_argument("--dry-run", action="store_true", help="slurm: print the submission, submit nothing")
    r.add_argument("--wait", action="store_true",
                   help="slurm: wait until every array task ended, print each rung's status like --backend local")
    r.set_defaults(func=_cmd_run)
    rp = lsub.add_parser("report", help="aggregate the rung runs: table, CSV, markdown, bar plots")
    rp.add_argument("name")
    rp.add_argument("--out", help="folder for report files (default: outputs/ladders/<name>/)")
    rp.set_defaults(func=_cmd_report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hlrp_core.ladder")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["ladder", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args) or 0)
