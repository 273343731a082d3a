"""``hlrp data ...``: make-demo (embedded default datasets), mirror (29-dataset stand-ins; ``--frame-size``: one large
cheap dataset), bench (``--cold``: start-up at scale) and verify (CRC + layout of every record).

Extend by adding a ``_register_<name>(data_sub)`` function and calling it from :func:`register`; command functions
import heavy libraries lazily.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``hlrp data`` with its subcommands; returns the ``data`` parser's subparsers holder for extension."""
    data = subparsers.add_parser("data", help="generate and inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True
    _register_make_demo(data_sub)
    _register_mirror(data_sub)
    _register_bench(data_sub)
    from . import verify  # light: stdlib only at import time

    verify.register(data_sub)
    from . import stats  # light: numpy/stdlib only at import time

    stats.register(data_sub)
    data.set_defaults(data_subparsers=data_sub)
    return data


def _register_make_demo(data_sub) -> None:
    p = data_sub.add_parser("make-demo", help="build the embedded known-answer datasets (skips complete ones)")
    p.add_argument("--root", default=None, help="target root (default: $HLRP_DATA_ROOT/embedded or <repo>/data/embedded)")
    p.add_argument("--overwrite", action="store_true", help="rebuild datasets that are already complete")
    p.add_argument("--quick", action="store_true", help="fewer episodes (fast check)")
    p.set_defaults(func=cmd_make_demo)


def _register_mirror(data_sub) -> None:
    p = data_sub.add_parser("mirror", help="write stand-ins of OXE datasets with their real TFDS structure")
    p.add_argument("--datasets", default="all29", help="all29 | all32 | NAME,NAME,... (registry names)")
    p.add_argument("--episodes", type=int, default=8, help="episodes per dataset (train split)")
    p.add_argument("--root", required=True, help="mirror root: writes <root>/<tfds_dir>/<version>/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shards", type=int, default=None,
                   help="TFRecord shards per dataset (default 1; with --frame-size: one per 100 episodes)")
    p.add_argument("--frame-size", type=int, default=0,
                   help="scale mode: one dataset (--datasets NAME), frames this many pixels square, records copied "
                        "from a small rendered pool (e.g. --episodes 100000 --frame-size 16)")
    p.add_argument("--overwrite", action="store_true", help="replace existing non-empty dataset directories")
    p.set_defaults(func=cmd_mirror)


def _register_bench(data_sub) -> None:
    from . import bench  # light: numpy/stdlib only at import time

    p = data_sub.add_parser("bench", help="loader-only throughput benchmark (pairs/s, decode bound, ratio R, RSS)")
    bench.add_arguments(p)
    p.set_defaults(func=bench.cmd_bench)


def _human(n: float) -> str:
    from .mirror import human_bytes

    return human_bytes(n)


def cmd_make_demo(args) -> int:
    from .demo import make_demo

    report = make_demo(root=args.root, overwrite=args.overwrite, quick=args.quick)
    for name, d in report["datasets"].items():
        eps = ", ".join(f"{k} {v}" for k, v in d["episodes"].items())
        line = f"{d['status']:8s} {name:20s} {eps:22s} {d['seconds']:7.1f} s {_human(d['bytes']):>10s}  {d['path']}"
        print(line)
        if d["reason"]:
            print(f"         reason: {d['reason']}")
    print(f"build time {report['seconds']:.1f} s, disk size {_human(report['bytes'])}, root {report['root']}")
    print(f"contact sheet: {report['contact_sheet']}")
    return 0


def cmd_mirror(args) -> int:
    from . import registry as reg
    from .mirror import write_mirror
    from .rlds_writer import TargetNotEmptyError

    try:
        reg.resolve_list(args.datasets)
    except reg.UnknownDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.frame_size:
        from .mirror import write_scale_dataset

        names = reg.resolve_list(args.datasets)
        if len(names) != 1:
            print(f"error: --frame-size writes one dataset; got --datasets {args.datasets} ({len(names)} names)",
                  file=sys.stderr)
            return 2
        try:
            r = write_scale_dataset(args.root, names[0], args.episodes, args.frame_size, args.seed,
                                    num_shards=args.shards or 0, overwrite=args.overwrite)
        except TargetNotEmptyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{r['name']}: {r['episodes']} episodes in {r['shards']} shards, {_human(r['bytes'])}, "
              f"{r['seconds']:.1f} s  {r['path']}")
        return 0
    try:
        report = write_mirror(args.root, args.datasets, episodes=args.episodes, seed=args.seed,
                              overwrite=args.overwrite, num_shards=args.shards or 1)
    except TargetNotEmptyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, d in report["datasets"].items():
        print(f"{name:58s} {d['seconds']:6.2f} s {_human(d['bytes']):>10s}  {d['path']}")
    print(f"{len(report['datasets'])} datasets x {args.episodes} episodes: build time {report['seconds']:.1f} s, "
          f"disk size {_human(report['bytes'])}, root {report['root']}")
    print(f"contact sheet: {report['contact_sheet']}")
    return 0
