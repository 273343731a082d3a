"""Stage-1 validation figures (matplotlib, Agg): reconstruction grid, code-usage histogram, code-vs-action scatter."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def recon_grid(first, last, pred):
    """Rows = items; columns o_t | o_t+k | prediction. Inputs float tensors/arrays (n, 3, H, W) in [0,1]."""
    plt = _plt()
    first, last, pred = (np.asarray(x) for x in (first, last, pred))
    n = len(first)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        for j, (img, title) in enumerate(((first, "o_t"), (last, "o_t+k"), (pred, "prediction"))):
            ax = axes[i, j]
            ax.imshow(np.clip(img[i].transpose(1, 2, 0), 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
    fig.tight_layout()
    return fig


def code_usage_histogram(codes: np.ndarray, codebook_size: int):
    """One bar chart per code position: how often each code id occurs on the validation set."""
    plt = _plt()
    codes = np.asarray(codes).reshape(len(codes), -1)
    s = codes.shape[1]
    fig, axes = plt.subplots(1, s, figsize=(3.2 * s, 2.6), squeeze=False)
    for p in range(s):
        counts = np.bincount(codes[:, p], minlength=codebook_size)
        ax = axes[0, p]
        ax.bar(np.arange(codebook_size), counts, width=1.0)
        ax.set_title(f"position {p}: {int((counts > 0).sum())}/{codebook_size} used")
        ax.set_xlabel("code id")
    axes[0, 0].set_ylabel("count")
    fig.tight_layout()
    return fig


def code_action_scatter(codes: np.ndarray, actions: np.ndarray):
    """True action (first two dims) of every validation item, coloured by its code tuple (top 20 tuples)."""
    plt = _plt()
    codes = np.asarray(codes).reshape(len(codes), -1)
    a = np.asarray(actions, float).reshape(len(codes), -1)
    if a.shape[1] == 1:
        a = np.concatenate([a, np.zeros_like(a)], 1)
    uniq, inv, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    order = np.argsort(-counts)[:20]
    rng = np.random.default_rng(0)
    jitter = rng.normal(0, 0.02 * (a[:, :2].std() + 1e-9), (len(a), 2))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    cmap = plt.get_cmap("tab20")
    for rank, u in enumerate(order):
        sel = inv == u
        ax.scatter(a[sel, 0] + jitter[sel, 0], a[sel, 1] + jitter[sel, 1], s=8, color=cmap(rank % 20),
                   label=str(tuple(int(x) for x in uniq[u])))
    rest = ~np.isin(inv, order)
    if rest.any():
        ax.scatter(a[rest, 0], a[rest, 1], s=4, color="lightgray", label="other")
    ax.set_xlabel("action[0]")
    ax.set_ylabel("action[1]")
    ax.set_title("true action by LAQ code")
    ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


#: (label, key, reference key or None, pass rule) rows of the Stage-1 summary table.
SUMMARY_ROWS = (
    ("recon MSE (vs copy baseline)", "val/recon_mse", "val/copy_baseline_mse", "below"),
    ("delta-PSNR true vs shuffled codes [dB]", "val/delta_psnr_true_vs_shuffled", None, ">= 1"),
    ("codes used / perplexity", "val/codes_used", "val/codebook_perplexity", ""),
    ("NMI(code, action) (vs untrained)", "val/action_nmi", "val/action_nmi_untrained", "above"),
    ("NMI shuffled control", "val/action_nmi_shuffled", None, "~0"),
    ("probe R2 (vs untrained)", "val/action_probe_r2", "val/action_probe_r2_untrained", "above"),
    ("probe R2 shuffled control", "val/action_probe_r2_shuffled", None, "<= ~0"),
    ("dead-code replacement events / codes replaced", "codebook/replacement_events", "codebook/replaced_total", ""),
)


def summary(metrics: dict) -> str:
    """A plain-text table of the Stage-1 verdict inputs (value, reference, rule)."""
    lines = [f"step {metrics.get('global_step', '?')}"]
    for label, key, ref, rule in SUMMARY_ROWS:
        if key not in metrics:
            continue
        val = f"{metrics[key]:.4g}"
        refs = f"{metrics[ref]:.4g}" if ref and ref in metrics else ""
        lines.append(f"  {label:<48} {val:>10} {refs:>10}  {rule}")
    return "\n".join(lines)


def show_run_figures(run_dir, names=("laq_recon_grid", "laq_code_usage", "laq_code_vs_action")) -> list:
    """Display the latest Stage-1 figures of a run (in a notebook); returns the paths shown."""
    from pathlib import Path

    shown = []
    try:
        from IPython.display import Image, display
    except ImportError:  # pragma: no cover - outside IPython
        display = None
    for name in names:
        p = Path(run_dir) / "figures" / f"{name}.png"
        if p.exists():
            shown.append(p)
            if display is not None:
                display(Image(filename=str(p)))
    return shown
