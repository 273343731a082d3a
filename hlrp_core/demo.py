"""What ``make demo`` runs: the main-job notebooks, in order, on the embedded default data.

Each step is a notebook plus its parameter files and overrides. A step may need the run directory of an earlier
step (Stage 2 needs Stage 1's artifact): ``needs`` names that step, and ``{name}`` in an override is replaced by its
run directory.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from pathlib import Path

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


def _f(m: dict, key: str, fmt: str = "{:.3f}") -> str:
    v = m.get(key)
    return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"


def _ci(m: dict, key: str, lo: str, hi: str) -> str:
    return f"{_f(m, key)} [{_f(m, lo)}, {_f(m, hi)}]"


#: The learning bar the Stage-1 tiny recipe is held to (docs/FEEDBACK.md section 5).
STAGE1_BAR = {"val/action_nmi": 0.8, "val/action_probe_r2": 0.8}


def evidence_lines(name: str, m: dict) -> list[str]:
    """The key numbers of one demo step's ``metrics.json`` (one line each), after its verdict."""
    out = []
    if "val/action_nmi" in m:  # Stage 1: alignment of codes / latents with the true actions vs shuffled controls
        out.append(f"action NMI {_f(m, 'val/action_nmi')} (shuffled {_f(m, 'val/action_nmi_shuffled')}, untrained "
                   f"{_f(m, 'val/action_nmi_untrained')}); probe R2 {_f(m, 'val/action_probe_r2')} (shuffled "
                   f"{_f(m, 'val/action_probe_r2_shuffled')}, untrained {_f(m, 'val/action_probe_r2_untrained')})")
        met = all(isinstance(m.get(k), (int, float)) and m[k] >= v for k, v in STAGE1_BAR.items())
        out.append("learning bar NMI >= 0.8 and probe R2 >= 0.8: " + ("met" if met else "NOT met"))
    if "val/token_accuracy" in m:  # Stage 2: token accuracy vs the majority-code baseline, 95% Wilson intervals
        out.append(f"token accuracy {_ci(m, 'val/token_accuracy', 'val/token_accuracy_ci_low', 'val/token_accuracy_ci_high')}"
                   f" vs majority baseline {_f(m, 'val/token_accuracy_majority_baseline')} (upper "
                   f"{_f(m, 'val/token_accuracy_majority_baseline_ci_high')}); lift {_f(m, 'val/token_accuracy_lift')}")
    if "analysis/n_checkpoints" in m:
        out.append(f"{m['analysis/n_checkpoints']} checkpoints scored; counts: " + ", ".join(
            f"{k[len('analysis/n_'):]}={m[k]}" for k in sorted(m) if k.startswith("analysis/n_")
            and k != "analysis/n_checkpoints" and m[k]))
    if "check/batch_size" in m:
        out.append(f"workbench check: a batch of {m['check/batch_size']} loaded")
    return out


def summary_text(results: list[tuple[str, str, str]], seconds: float) -> str:
    """The ``make demo`` closing summary: per step its state, verdict + evidence, key numbers and figures."""
    lines = [f"", f"== hlrp demo: {len(results)} steps in {seconds:.0f} s =="]
    for name, state, path in results:
        lines.append(f"  {name:<16} {state:<8} {path}")
        if not path:
            continue
        m = runs.load_metrics(path)
        if m.get("verdict"):
            ev = str(m.get("verdict_evidence", ""))
            lines.append(f"  {'':<16} verdict  " + (ev if ev.startswith(m["verdict"]) else f"{m['verdict']}: {ev}"))
        lines += [f"  {'':<16} {'':<8} {ln}" for ln in evidence_lines(name, m)]
        figs = sorted(p.name for p in (Path(path) / "figures").glob("*.png")) if (Path(path) / "figures").is_dir() \
            else []
        if figs:
            lines.append(f"  {'':<16} figures  {path}/figures/: {', '.join(figs)}")
        lines.append(f"  {'':<16} {'':<8} notebook {path}/notebook.ipynb, metrics {path}/metrics.json")
    return "\n".join(lines)


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
    print(summary_text(results, time.time() - t0))
    return 0 if all(s == runs.DONE for _, s, _ in results) else 1


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="run the main-job notebooks on the embedded data (what `make demo` does)")
    d.add_argument("--only", action="append", help="run only the demo steps with these names")
    d.set_defaults(func=lambda args: run_demo(only=args.only))
