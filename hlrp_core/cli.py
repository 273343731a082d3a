"""The ``hlrp`` command. Thin: each subcommand calls the same public function a notebook calls.

Subsystems plug in by providing a module with ``register(subparsers)`` listed in ``SUBCOMMAND_MODULES``; modules
are imported only to build the parser, so they must import heavy libraries (TF, torch) lazily inside functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that add subcommands (``register(subparsers)``). A module that does not exist yet is skipped.
SUBCOMMAND_MODULES = [
    "hlrp_core.launch",          # hlrp run
    "hlrp_core.demo",            # hlrp demo
    "hlrp_core.resume_run",      # hlrp resume
    "hlrp_core.data.cli",        # hlrp data make-demo | mirror | bench
    "hlrp_core.ladder.cli",      # hlrp ladder expand | run | report
    "hlrp_core.cluster.cli",     # hlrp submit, hlrp jobs
    "hlrp_core.analysis.cli",    # hlrp runs
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hlrp", description="hlrp research workbench")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rc = args.func(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
