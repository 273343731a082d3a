"""Figures of the "is it learning?" analysis: metric vs step with CI bands and baselines, learning curves of several
runs (tables from :func:`hlrp_core.analysis.learning.evaluate_run`)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..metrics import names as n

#: Reference line of each metric (baseline / floor), drawn on the same axes: a number or a column name.
REFERENCE = {n.LIFT: 0.0, n.R2: 0.0, n.ACC: n.MAJORITY_ACC, n.JS: n.JS_FLOOR_THEORY, n.JS_SPLIT: n.JS_FLOOR,
             n.JS_EXCESS: 0.0,
             n.UNIQUE_RATIO: 1.0, n.PPL_RATIO: 1.0, n.VAR_RATIO: 1.0, n.TOP1_SHARE_PRED: n.TOP1_SHARE_GT,
             n.MSE: n.MEAN_MSE, n.COSINE: n.MEAN_COSINE, n.NEAREST_ACC: n.MAJORITY_ACC,
             n.ACTION_NMI: n.ACTION_NMI_SHUFFLED, n.PROBE_R2: n.PROBE_R2_SHUFFLED, n.IG: 0.0}

DEFAULT_PLOT = {"token": [n.LIFT, n.ACC, n.JS_SPLIT, n.UNIQUE_RATIO, n.PPL_RATIO, n.TOP1_SHARE_PRED],
                "vector": [n.R2, n.MSE, n.COSINE, n.VAR_RATIO, n.NEAREST_ACC, n.JS_SPLIT],
                "stage1": [n.ACTION_NMI, n.PROBE_R2]}


def plot_metrics_vs_step(table, metrics: Sequence[str] | None = None, title: str = ""):
    """One panel per metric: value vs step with its 95% CI band and its baseline / floor (dashed) on the same
    axes; markers coloured by the verdict at that step. Returns a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if table is None or len(table) == 0:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "nothing to plot", ha="center", va="center")
        return fig
    head = table.iloc[-1].get(n.HEAD, "token")
    metrics = [m for m in (metrics or DEFAULT_PLOT.get(head, DEFAULT_PLOT["token"])) if m in table.columns]
    cols = min(3, max(1, len(metrics)))
    rows = max(1, int(np.ceil(len(metrics) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    colours = {n.LEARNING: "tab:green", n.COLLAPSED: "tab:red", n.RANDOM_LIKE: "tab:orange",
               n.INCONCLUSIVE: "tab:gray"}
    x = table["step"].to_numpy()
    for ax, m in zip(axes.ravel(), metrics):
        y = table[m].astype(float).to_numpy()
        ax.plot(x, y, "-", color="tab:blue", lw=1.2)
        if m + n.LO in table.columns:
            ax.fill_between(x, table[m + n.LO].astype(float), table[m + n.HI].astype(float), alpha=0.25,
                            color="tab:blue", label="95% CI")
        ax.scatter(x, y, c=[colours.get(v, "k") for v in table[n.VERDICT]], s=18, zorder=3)
        ref = REFERENCE.get(m)
        if isinstance(ref, str) and ref in table.columns:
            ax.plot(x, table[ref].astype(float), "--", color="k", lw=1, label=ref)
        elif isinstance(ref, float):
            ax.axhline(ref, ls="--", color="k", lw=1, label=f"baseline {ref:g}")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    fig.suptitle(title or "metrics vs step (dots: green learning, red collapsed, orange random-like, grey "
                 "inconclusive)", fontsize=9)
    fig.tight_layout()
    return fig



def plot_learning_curves(tables: Mapping[str, Any], metric: str | None = None, title: str = ""):
    """Overlay one metric (default: the primary metric) of several runs with 95% CI bands and its baseline."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, t in tables.items():
        if t is None or len(t) == 0:
            continue
        m = metric or n.PRIMARY.get(t.iloc[-1].get(n.HEAD, "token"), n.LIFT)
        if m not in t.columns:
            continue
        line, = ax.plot(t["step"], t[m].astype(float), "-o", ms=3, label=label)
        if m + n.LO in t.columns:
            ax.fill_between(t["step"], t[m + n.LO].astype(float), t[m + n.HI].astype(float), alpha=0.2,
                            color=line.get_color())
        metric = m
    ref = REFERENCE.get(metric or "")
    if isinstance(ref, float):
        ax.axhline(ref, ls="--", color="k", lw=1, label=f"baseline {ref:g}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric or "")
    ax.legend(fontsize=7)
    ax.set_title(title or f"{metric} vs step, 95% episode-bootstrap CI", fontsize=9)
    fig.tight_layout()
    return fig
