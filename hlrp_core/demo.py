"""What ``make demo`` runs: the main-job notebooks, in order, on the embedded default data.

Each step is a notebook plus its parameter files and overrides. A step may need the run directory of an earlier
step (Stage 2 needs Stage 1's artifact): ``needs`` names that step, and ``{name}`` in an override is replaced by its
run directory.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from . import runs
from .launch import execute


@dataclass
class DemoStep:
    name: str
    notebook: str
    params: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)


DEMO_STEPS: list[DemoStep] = [
    DemoStep("workbench_check", "notebooks/00_workbench_check.ipynb", sets=["data.loader.batch_size=48"]),
    # Stage 1 tiny: LAQ on the embedded procedural data (writes artifacts/laq_artifact.pt, health + alignment figures).
    DemoStep("laq_tiny", "notebooks/10_train_laq.ipynb", params=["params/laq_tiny.yaml"]),
    # Stage 2 tiny on the LAQ tiny step's artifact (the run directory is accepted: artifacts/laq_artifact.pt inside).
    # Keep this after the Stage-1 step "laq_tiny".
    DemoStep("policy_tiny", "notebooks/11_train_policy.ipynb", params=["params/policy_tiny.yaml"],
             sets=["model.laq.artifact={laq_tiny}"], needs=["laq_tiny"]),
    # "Is it learning?" on the Stage-2 demo run: per-checkpoint verdict table (verdicts.csv) + metric-vs-step figures.
    DemoStep("is_it_learning", "notebooks/30_is_it_learning.ipynb", sets=["analysis.run_dir={policy_tiny}"],
             needs=["policy_tiny"]),
]


def run_demo(only: list[str] | None = None) -> int:
    done: dict[str, str] = {}
    results = []
    t0 = time.time()
    for step in DEMO_STEPS:
        if only and step.name not in only:
            continue
        missing = [n for n in step.needs if n not in done]
        if missing:
            print(f"demo: skipping {step.name}: needs {missing}, which did not run or failed")
            results.append((step.name, "SKIPPED", ""))
            continue
        sets = [s.format(**done) for s in step.sets]
        code, run_dir = execute(step.notebook, step.params, sets, study="demo")
        state = runs.read_status(run_dir)[0] if run_dir else "NOT STARTED"
        results.append((step.name, state, str(run_dir or "")))
        if code == 0 and run_dir:
            done[step.name] = str(run_dir)
    print(f"\n== hlrp demo: {len(results)} steps in {time.time() - t0:.0f} s ==")
    for name, state, path in results:
        print(f"  {name:<20} {state:<8} {path}")
        if path:
            print(f"  {'':<20} {'':<8} executed notebook: {path}/notebook.ipynb, results: {path}/metrics.json")
    return 0 if all(s == runs.DONE for _, s, _ in results) else 1


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="run the main-job notebooks on the embedded data (what `make demo` does)")
    d.add_argument("--only", action="append", help="run only the demo steps with these names")
    d.set_defaults(func=lambda args: run_demo(only=args.only))
