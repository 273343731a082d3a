"""Profile a short Stage-1 tiny (laq_tiny) fit: where do the seconds go (train steps, data wait, validation, verdict)?

    .venv/bin/python tools/profile_stage1.py [--steps 100] [--threads 1] [--set KEY=VALUE ...]

Runs ``fit_laq`` on the full laq_tiny recipe (not smoke) shortened to ``--steps`` with one validation at the end,
under cProfile, into a throwaway output root; prints the train rate, the validation + verdict seconds (from the run's
``[Progress]`` lines) and the top functions by cumulative and by own time. Compare two settings side by side in one
invocation of the shell (e.g. ``--threads 1`` then ``--threads 2``) and report the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import tempfile
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    os.environ.setdefault("HLRP_OUTPUT_ROOT", tempfile.mkdtemp(prefix="hlrp-profile-"))
    import hlrp_core.runs as runs
    from hlrp_core.paths import REPO_ROOT
    from hlrp_core.training.laq.fit import fit_laq

    overrides = [f"data.root={REPO_ROOT / 'data' / 'embedded'}", f"training.max_steps={args.steps}",
                 f"training.validation.check_interval={args.steps}", f"training.num_threads={args.threads}",
                 "training.checkpoint.every_n_train_steps=1000000", "logging.progress_every_s=5", *args.set]
    cfg, run = runs.start("laq_tiny", overrides)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    metrics = fit_laq(cfg, run)
    prof.disable()
    wall = time.perf_counter() - t0
    run.finish(metrics)
    log = (run.dir / "unified.log").read_text()
    val = [float(x) for x in re.findall(r"validation at step \d+ took ([\d.]+) s", log)]
    rates = [float(x) for x in re.findall(r"\| ([\d.]+) steps/s", log)]
    print(f"== laq_tiny {args.steps} steps, threads={args.threads}: fit wall {wall:.1f} s, "
          f"validations {val} s, last train rate {rates[-1] if rates else '?'} steps/s (incl. start-up) ==")
    for key in ("cumulative", "tottime"):
        print(f"-- top {args.top} by {key}")
        pstats.Stats(prof, stream=sys.stdout).sort_stats(key).print_stats(args.top)
    print("run dir:", run.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
