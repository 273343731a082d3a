"""``figures/curves.png``: one picture of a training (docs/FEEDBACK.md section 4), rewritten at every validation and
at the end of the fit, shown by the training notebooks and the run dashboard.

Panels (each only when its columns exist in ``timeseries.csv``): loss (train and validation), learning rate,
throughput (``perf/*``), host memory (RSS, MemAvailable, GPU), and the learning metrics the verdict callback logs
(``verdict/<name>`` with its ``_lo`` / ``_hi`` 95% interval drawn as a band; a metric's control, e.g. the majority
baseline of token accuracy, dashed on the same panel). The title carries the run's latest verdict.

:func:`curves_figure` is the one home of this picture: the dashboard (``hlrp_core.viz.plot_run_curves``) draws the
same figure from the same table. No Lightning import here (the dashboard uses it); the callback that calls
:func:`write_curves` after each validation is ``hlrp_core.training.loggers.CurvesCallback``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

log = logging.getLogger("hlrp.training")
CURVES = "curves"
TIMESERIES = "timeseries.csv"
LO, HI = "_lo", "_hi"

#: (panel title, predicate on a column name) for the non-learning panels, in display order.
BASE_PANELS = [
    ("loss", lambda c: "loss" in c and not c.startswith("verdict/")),
    ("learning rate", lambda c: c.endswith("/lr") or c in ("lr", "lr-AdamW")),
    ("throughput (steps/s, samples/s)", lambda c: (c.startswith("perf/") or "steps_per_s" in c)
     and not c.endswith("time_s")),  # rates only: a seconds-per-step column would share the axis upside down
    ("memory (MB)", lambda c: c.startswith("sys/") or "rss" in c or "gpu_mem" in c),
]
#: Learning metrics first in this order (then any other ``verdict/*`` with an interval), with their dashed controls.
LEARNING_ORDER = ["action_nmi", "probe_r2", "acc", "lift", "r2", "nearest_acc", "delta_psnr", "copy_ratio"]
CONTROLS = {"acc": ["majority_acc"], "action_nmi": ["action_nmi_excess"], "probe_r2": ["probe_r2_excess"]}
MAX_LEARNING_PANELS = 4


def read_timeseries(run_dir: str | os.PathLike):
    """``<run>/timeseries.csv`` (sparse CSVLogger rows) as one row per step (last value of each column)."""
    import pandas as pd

    path = Path(run_dir) / TIMESERIES
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        df = pd.read_csv(path, on_bad_lines="skip")
    except Exception:  # noqa: BLE001 - a half-written file gives an empty picture, never a failed run
        return pd.DataFrame()
    if df.empty or "step" not in df.columns:
        return df
    df = df.dropna(subset=["step"])
    df["step"] = df["step"].astype(int)
    out = df.groupby("step").last()
    out.index.name = "step"
    return out


def _learning_panels(cols: list[str]) -> list[tuple[str, list[str]]]:
    bases = [c[len("verdict/"):] for c in cols if c.startswith("verdict/") and not c.endswith((LO, HI))]
    with_ci = [b for b in bases if f"verdict/{b}{LO}" in cols and f"verdict/{b}{HI}" in cols]
    point = [b for b in LEARNING_ORDER if b in bases and b not in with_ci]
    order = [b for b in LEARNING_ORDER if b in with_ci or b in point]
    order += [b for b in with_ci if b not in order and not any(b in CONTROLS.get(o, []) for o in order)]
    panels = []
    for b in order[:MAX_LEARNING_PANELS]:
        controls = [c for c in CONTROLS.get(b, []) if c in bases]
        panels.append((b, [b, *controls]))
    return panels


def curves_figure(ts, *, title: str = "", metrics: Optional[dict] = None):
    """The curves ``Figure`` of a time series (index = step); a message figure when there is nothing to draw."""
    from matplotlib.figure import Figure

    def message(text: str):
        fig = Figure(figsize=(6, 1.5))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
        return fig

    if ts is None or len(ts) == 0:
        return message(f"{title}\nno timeseries.csv (yet)" if title else "no timeseries.csv (yet)")
    cols = [c for c in ts.columns if np.issubdtype(ts[c].dtype, np.number) and c not in ("epoch",)]
    panels: list[tuple[str, list[str], bool]] = []
    for name, pred in BASE_PANELS:
        sel = [c for c in cols if pred(c) and not c.endswith((LO, HI))]
        sel = [c for c in sel if ts[c].notna().any()]
        if sel:
            panels.append((name, sel, False))
    for base, names in _learning_panels(cols):
        panels.append((f"{base} (95% CI)", [f"verdict/{n}" for n in names], True))
    if not panels:
        return message(f"{title}\ntimeseries.csv has no plottable columns")
    ncol = 2 if len(panels) > 1 else 1
    nrow = math.ceil(len(panels) / ncol)
    fig = Figure(figsize=(10, 2.8 * nrow))
    axes = np.atleast_1d(fig.subplots(nrow, ncol)).ravel()
    for ax, (name, sel, learning) in zip(axes, panels):
        for i, c in enumerate(sel):
            s = ts[c].dropna()
            if s.empty:
                continue
            style = dict(marker="o" if len(s) < 30 else None, linestyle="--" if learning and i else "-")
            line, = ax.plot(s.index, s.values, label=c.replace("verdict/", ""), **style)
            if learning and c + LO in ts.columns and c + HI in ts.columns:
                band = ts[[c + LO, c + HI]].dropna()
                ax.fill_between(band.index, band[c + LO], band[c + HI], alpha=0.2, color=line.get_color())
        if name == "loss" and any(ts[c].dropna().gt(0).all() for c in sel):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.axis("off")
    m = metrics or {}
    head = title + (f"   verdict: {m['verdict']}" if m.get("verdict") else "")
    if m.get("verdict_evidence"):
        head += "\n" + str(m["verdict_evidence"])[:160]
    fig.suptitle(head, fontsize=9)
    fig.tight_layout()
    return fig


def write_curves(run: Any, trainer: Any = None) -> Optional[Path]:
    """Flush the CSV time series (when a trainer is given) and (re)write ``<run>/figures/curves.png`` atomically.
    Never raises: a figure failure is logged and training goes on."""
    try:
        if trainer is not None:
            for lg in trainer.loggers[:1]:
                lg.save()
        run_dir = Path(run.dir)
        from ..runs import load_metrics

        fig = curves_figure(read_timeseries(run_dir), title=run_dir.name, metrics=load_metrics(run_dir))
        out = run_dir / "figures" / f"{CURVES}.png"
        out.parent.mkdir(exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp.png")
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
        os.replace(tmp, out)
        return out
    except Exception as exc:  # noqa: BLE001
        (getattr(run, "log", None) or log).warning("curves figure failed: %s: %s", type(exc).__name__, exc)
        return None


def show(run_dir: str | os.PathLike) -> Optional[Path]:
    """Display ``figures/curves.png`` in a notebook (returns its path, ``None`` when the run has none)."""
    p = Path(run_dir) / "figures" / f"{CURVES}.png"
    if not p.exists():
        print(f"no {p} (yet)")
        return None
    try:
        from IPython.display import Image, display

        display(Image(filename=str(p)))
    except ImportError:  # pragma: no cover - outside IPython
        pass
    return p
