"""hlrp_core.ladder: speed ladders (one-knob rungs, each its own papermill run, measured and aggregated).

- ``spec``: ``ladder.yaml`` parsing, ``expand`` (invalid-config / duplicate verdicts), rung files, drift check.
- ``run``: local (child process per rung, resumable) and SLURM (``hlrp_core.cluster.submit_array``) execution.
- ``measure``: in-rung measurement (steady-state speed, memory, RAM guard, status) -> ``ladder/*`` metrics.
- ``workloads``: what a loader rung runs (the data adapter's loader, or a stand-in decode loader).
- ``report``: the table (CSV + markdown), noise band from repeated baselines, ties, bar plots.
"""
