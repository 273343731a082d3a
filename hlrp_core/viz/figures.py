"""Plain matplotlib figure helpers: each returns a ``Figure`` (a notebook shows it, ``run.save_figure`` saves it,
the widgets turn it into PNG bytes with :func:`to_png`). No pyplot state is kept: figures are built with
``matplotlib.figure.Figure`` directly, so widgets can redraw hundreds of times without leaking figures.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

LO, HI = "_lo", "_hi"


def to_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render a figure to PNG bytes (what an ``ipywidgets.Image`` shows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def message_figure(text: str, size: tuple[float, float] = (6, 1.5)) -> Figure:
    """A figure holding only a message (``no timeseries.csv yet``), so a view always has something to show."""
    fig = Figure(figsize=size)
    ax = fig.add_subplot(111)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    return fig


def plot_pair(frame_t: np.ndarray, frame_tk: np.ndarray, *, t: int, k: int, instruction: str = "",
              action: Optional[np.ndarray] = None, state: Optional[np.ndarray] = None,
              title: str = "") -> Figure:
    """o_t and o_t+k side by side, the instruction as title, the summed action and state underneath.

    Args:
        frame_t, frame_tk: uint8 [H, W, 3] frames.
        t, k: Frame index and offset (shown in the panel titles).
        instruction: Decoded instruction text.
        action: Reduced action over [t, t+k) (None = no numeric action).
        state: State at t (None = no state).
        title: Figure title (dataset, episode).
    """
    fig = Figure(figsize=(7, 3.8))
    axes = fig.subplots(1, 2)
    for ax, img, name in zip(axes, (frame_t, frame_tk), (f"o_t (t={t})", f"o_t+k (t+k={t + k})")):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if action is not None and np.size(action) >= 2:
        # the known-answer convention of the embedded data: dims 0,1 = (dx, dy) in fractions of width/height
        h, w = frame_t.shape[:2]
        cx, cy = w / 2, h / 2
        axes[0].annotate("", xy=(cx + float(action[0]) * w, cy + float(action[1]) * h), xytext=(cx, cy),
                         arrowprops=dict(arrowstyle="->", color="yellow", lw=2))
    lines = [title] if title else []
    lines.append(f"instruction: {instruction!r}" if instruction else "instruction: (none)")
    lines.append("summed action: " + (_vec(action) if action is not None else "(none / masked)"))
    lines.append("state at t: " + (_vec(state) if state is not None and np.size(state) else "(none)"))
    fig.suptitle("\n".join(lines), fontsize=8, x=0.02, ha="left", y=0.02, va="bottom")
    fig.subplots_adjust(bottom=0.28, top=0.92)
    return fig


def _vec(v: Any, n: int = 8) -> str:
    a = np.asarray(v, dtype=float).ravel()
    s = ", ".join(f"{x:+.3f}" for x in a[:n])
    return f"[{s}{', ...' if a.size > n else ''}]"


def plot_run_curves(ts, *, title: str = "", metrics: Optional[dict] = None) -> Figure:
    """Curves of one run from its ``timeseries.csv`` DataFrame (index = step): the same picture as the run's
    ``figures/curves.png`` (its one home: ``hlrp_core.training.curves.curves_figure``)."""
    from ..training.curves import curves_figure

    return curves_figure(ts, title=title, metrics=metrics)


def plot_mix_shares(table) -> Figure:
    """Bar chart of realised dataset shares in a sampled batch vs the target weights (``table`` has columns
    ``dataset``, ``target``, ``realised``, ``count``; see :func:`hlrp_core.viz.data_views.mix_shares`)."""
    fig = Figure(figsize=(7, 0.5 + 0.45 * max(1, len(table))))
    ax = fig.add_subplot(111)
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["target"], height=0.4, label="target weight")
    ax.barh(y + 0.2, table["realised"], height=0.4, label="realised share")
    ax.set_yticks(y, [f"{d} (n={c})" for d, c in zip(table["dataset"], table["count"])], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_code_examples(pairs: Sequence[tuple[np.ndarray, np.ndarray]], actions: Sequence[Any], *, title: str = "",
                       max_examples: int = 8) -> Figure:
    """Example pairs (o_t above o_t+k) for one latent code, each with its true (reduced) action."""
    n = min(len(pairs), max_examples)
    if n == 0:
        return message_figure(f"{title}\nno pair was assigned this code")
    fig = Figure(figsize=(1.6 * n + 0.4, 3.8))
    axes = np.atleast_2d(fig.subplots(2, n, squeeze=False))
    for i in range(n):
        a, b = pairs[i]
        axes[0, i].imshow(a)
        axes[1, i].imshow(b)
        axes[0, i].set_title(_vec(actions[i], 3) if actions[i] is not None else "no action", fontsize=7)
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    axes[0, 0].text(-0.1, 0.5, "o_t", transform=axes[0, 0].transAxes, ha="right", va="center", fontsize=8)
    axes[1, 0].text(-0.1, 0.5, "o_t+k", transform=axes[1, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_code_action_scatter(codes: np.ndarray, actions: np.ndarray, highlight: Optional[int] = None,
                             title: str = "") -> Figure:
    """True (dx, dy) of every labelled pair, coloured by code; the selected code drawn on top."""
    fig = Figure(figsize=(4.2, 4))
    ax = fig.add_subplot(111)
    acts = np.asarray(actions, dtype=float)
    if acts.ndim != 2 or acts.shape[1] < 2:
        ax.axis("off")
        ax.text(0.5, 0.5, "actions have < 2 dims", ha="center")
        return fig
    ax.scatter(acts[:, 0], acts[:, 1], c=codes, cmap="tab20", s=10, alpha=0.5)
    if highlight is not None:
        m = np.asarray(codes) == highlight
        ax.scatter(acts[m, 0], acts[m, 1], facecolors="none", edgecolors="red", s=40, label=f"code {highlight}")
        ax.legend(fontsize=8)
    ax.set_xlabel("action dim 0 (dx)")
    ax.set_ylabel("action dim 1 (dy)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
