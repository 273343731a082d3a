"""'Is it learning?' across the checkpoints of a run, from the files in its run directory (no model needed).

Inputs a run directory may hold (written by the training code):

| file | used for |
|---|---|
| ``val_predictions/step_XXXXXX.npz`` | per-validation arrays: ``gt_codes``, ``pred_codes``, ``gt_vectors``, ``pred_vectors``, ``episode_ids``, optional ``pred_logits``, ``codebook``, ``train_mean``, ``ablation_<name>_codes`` / ``ablation_<name>_vectors``; Stage 1: ``codes`` (or ``gt_codes``), ``latents``, ``actions`` |
| ``timeseries.csv`` | fallback when there are no prediction files: rows whose columns carry ``hlrp_core.metrics`` names (``val/lift``, ``val/lift_lo``, ...) |
| ``metrics.json``, ``config.yaml`` | run summary, labels |
| ``ckpt/*.ckpt`` | listed; evaluating a checkpoint needs a model, so :func:`evaluate_checkpoints` takes a ``predict`` callable that turns a checkpoint into the same arrays |

Main entry points: :func:`evaluate_run` (one row per step with metrics, CIs, the verdict and evidence),
:func:`overall_verdict`, :func:`write_verdicts_csv`, :func:`plot_metrics_vs_step`, and for several runs
:func:`compare_runs`, :func:`paired_compare`, :func:`plot_learning_curves`. :func:`make_demo_run_dir` writes a
small synthetic run directory in the real format (clearly labelled DEMO) so the notebooks run without input.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import metrics as M
from ..io import atomic_write_json, atomic_write_text, read_json
from ..metrics import names as n

PRED_DIR = "val_predictions"
VERDICTS_CSV = "verdicts.csv"
_STEP_RE = re.compile(r"step_(\d+)\.npz$")

#: Columns of verdicts.csv besides step/verdict/evidence: key metrics with their CI bounds (when present).
KEY_METRICS = [n.LIFT, n.ACC, n.MAJORITY_ACC, n.R2, n.MSE, n.COSINE, n.JS, n.JS_FLOOR, n.JS_EXCESS, n.UNIQUE_RATIO,
               n.PPL_RATIO, n.TOP1_SHARE_PRED, n.VAR_RATIO, n.NEAREST_ACC, n.IG, n.ACTION_NMI, n.ACTION_NMI_EXCESS,
               n.PROBE_R2, n.PROBE_R2_EXCESS, n.TREND_DIFF]


# ----------------------------------------------------------------------------------------------------- reading files
def prediction_files(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``val_predictions/step_XXXXXX.npz``, sorted by step (temp files are skipped)."""
    d = Path(run_dir) / PRED_DIR
    out = []
    for p in d.glob("step_*.npz") if d.is_dir() else []:
        m = _STEP_RE.search(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def checkpoint_files(run_dir: str | os.PathLike) -> list[Path]:
    """``ckpt/*.ckpt`` of a run, sorted by name."""
    return sorted((Path(run_dir) / "ckpt").glob("*.ckpt"))


def load_predictions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of one prediction file; empty arrays (a head that was not trained) are dropped."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return {k: v for k, v in arrays.items() if not (v.ndim > 0 and v.size == 0)}


def run_label(run_dir: str | os.PathLike) -> str:
    """A short label: the run directory name (``<timestamp>_<name>``)."""
    return Path(run_dir).name


# ----------------------------------------------------------------------------------------------------- evaluation
def evaluate_arrays(arrays: Mapping[str, np.ndarray], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics of one validation from its arrays (see the module table). Chooses the head from what is present:
    ``pred_codes``/``pred_logits`` -> token metrics; else ``pred_vectors`` -> vector metrics (with the codebook when
    present); Stage 1 arrays (``actions`` with ``codes``/``gt_codes``) add NMI / probe metrics."""
    a = dict(arrays)
    ep = a.get("episode_ids")
    abl_codes = {k[len("ablation_"):-len("_codes")]: v for k, v in a.items()
                 if k.startswith("ablation_") and k.endswith("_codes")}
    abl_vecs = {k[len("ablation_"):-len("_vectors")]: v for k, v in a.items()
                if k.startswith("ablation_") and k.endswith("_vectors")}
    out: dict[str, Any] = {}
    K = int(a["codebook"].shape[0]) if "codebook" in a else None
    if "gt_codes" in a and ("pred_codes" in a or "pred_logits" in a):
        out = M.evaluate_codes(a["gt_codes"], a.get("pred_codes"), pred_logits=a.get("pred_logits"), n_codes=K,
                               episode_ids=ep, ablations=abl_codes or None, n_boot=n_boot, seed=seed)
        if "gt_vectors" in a and "pred_vectors" in a:
            vec = M.evaluate_vectors(a["gt_vectors"], a["pred_vectors"], episode_ids=ep,
                                     train_mean=a.get("train_mean"), n_boot=n_boot, seed=seed)
            out.update({k: v for k, v in vec.items() if k not in out})
    elif "gt_vectors" in a and "pred_vectors" in a:
        out = M.evaluate_vectors(a["gt_vectors"], a["pred_vectors"], episode_ids=ep, train_mean=a.get("train_mean"),
                                 codebook=a.get("codebook"), gt_codes=a.get("gt_codes"),
                                 ablations=abl_vecs or None, n_boot=n_boot, seed=seed)
    codes = a.get("codes", a.get("gt_codes"))
    if "actions" in a and codes is not None and ep is not None:
        s1 = M.stage1_action_metrics(codes, a["actions"], ep, features=a.get("latents"), seed=seed)
        out.update(s1)
        if not out.get(n.HEAD):
            out.update({n.HEAD: "stage1", n.N_ITEMS: len(codes), n.N_EPISODES: len(np.unique(ep))})
            use = M.codebook_usage(codes, K or int(np.max(codes)) + 1)
            out[n.PPL_PRED] = use["ppl"]
            out[n.CODES_USED] = use["n_used"]
    return out


def _primary_stat(arrays: Mapping[str, np.ndarray], head: str) -> Callable[[np.ndarray], float] | None:
    """The primary metric of a head as a function of item indices (for paired bootstraps across checkpoints)."""
    if head == "token" and "gt_codes" in arrays and ("pred_codes" in arrays or "pred_logits" in arrays):
        gt = M.histograms.as_positions(arrays["gt_codes"]).astype(np.int64)
        pr = arrays["pred_codes"] if "pred_codes" in arrays else np.asarray(arrays["pred_logits"]).argmax(-1)
        corr = gt == M.histograms.as_positions(pr)
        K = int(max(gt.max(), np.max(pr)) + 1)

        def lift(i: np.ndarray) -> float:
            g = gt[i]
            maj = np.mean([np.bincount(g[:, s], minlength=K).max() for s in range(g.shape[1])]) / len(g)
            return float(corr[i].mean() - maj)

        return lift
    if head == "vector" and "gt_vectors" in arrays and "pred_vectors" in arrays:
        y = np.asarray(arrays["gt_vectors"], float).reshape(len(arrays["gt_vectors"]), -1)
        yh = np.asarray(arrays["pred_vectors"], float).reshape(len(y), -1)
        ref = y.mean(0) if "train_mean" not in arrays else np.asarray(arrays["train_mean"], float).reshape(-1)
        se, sst = ((yh - y) ** 2).sum(1), ((y - ref) ** 2).sum(1)
        return lambda i: float(1 - se[i].sum() / sst[i].sum())
    return None


def _n_items(arrays: Mapping[str, np.ndarray]) -> int:
    for k in ("gt_codes", "gt_vectors", "codes", "episode_ids"):
        if k in arrays:
            return len(arrays[k])
    raise ValueError("prediction file holds none of gt_codes / gt_vectors / codes / episode_ids")


def _same_items(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    for k in ("episode_ids", "gt_codes", "gt_vectors"):
        if (k in a) != (k in b):
            return False
        if k in a and (a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])):
            return False
    return True


def _timeseries_rows(run_dir: Path) -> list[dict[str, Any]]:
    from .runs_table import read_timeseries

    ts = read_timeseries(run_dir)
    if ts.empty:
        return []
    prefix = next((p for p in ("val/", "") if any(c == p + n.LIFT or c == p + n.R2 for c in ts.columns)), None)
    if prefix is None:
        return []
    rows = []
    for step, r in ts.iterrows():
        row = {k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix) and v == v}
        if row:
            rows.append({"step": int(step), **row})
    return rows


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: M.VerdictThresholds | None = None,
    max_checkpoints: int = 0,
):
    """One row per evaluated step: ``step``, ``verdict``, ``evidence`` and every metric with ``_lo``/``_hi``.

    Uses ``val_predictions/*.npz`` (every checkpoint scored on the same frozen items, so CIs are comparable);
    without them, the metric rows of ``timeseries.csv``. For every step after the first, the paired bootstrap
    (this step - first step) on the primary metric is added as ``trend_diff`` (same items, same resamples) and
    enters the verdict (a degrading run is not "learning"). ``max_checkpoints`` > 0 keeps that many, evenly spaced
    (always the first and the last). Returns a pandas DataFrame (empty when the run has nothing to evaluate).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    files = prediction_files(run_dir)
    if max_checkpoints and len(files) > max_checkpoints:
        keep = np.unique(np.linspace(0, len(files) - 1, max_checkpoints).round().astype(int))
        files = [files[i] for i in keep]
    rows: list[dict[str, Any]] = []
    first: tuple[dict, Callable | None] | None = None
    for step, path in files:
        arrays = load_predictions(path)
        m = evaluate_arrays(arrays, n_boot=n_boot, seed=seed)
        if not m:
            continue
        head = m.get(n.HEAD, "token")
        stat = _primary_stat(arrays, head)
        if first is None:
            first = (arrays, stat)
        elif stat is not None and first[1] is not None and _same_items(arrays, first[0]):
            ep = arrays.get("episode_ids")
            res = M.EpisodeResampler(ep, _n_items(arrays), n_boot, seed)
            m.update(M.paired_bootstrap(stat, first[1], resampler=res).as_dict(n.TREND_DIFF))
        word, evidence, _ = M.verdict(m, thresholds=thresholds)
        rows.append({"step": step, n.VERDICT: word, n.VERDICT_EVIDENCE: evidence, "source": path.name, **m})
    if not rows:
        for r in _timeseries_rows(run_dir):
            word, evidence, _ = M.verdict(r, thresholds=thresholds)
            rows.append({"step": r["step"], n.VERDICT: word, n.VERDICT_EVIDENCE: evidence,
                         "source": "timeseries.csv", **{k: v for k, v in r.items() if k != "step"}})
    df = pd.DataFrame(rows)
    return df.sort_values("step").reset_index(drop=True) if len(df) else df


def evaluate_checkpoints(
    run_dir: str | os.PathLike,
    predict: Callable[[Path], Mapping[str, np.ndarray]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    thresholds: M.VerdictThresholds | None = None,
):
    """Score every ``ckpt/*.ckpt`` with ``predict(ckpt_path) -> arrays`` (the model-specific part, supplied by
    the caller: it must score the same frozen items each time) and return rows like :func:`evaluate_run`.
    The step is read from ``step=N`` / ``step_N`` in the file name when present, else the file's order."""
    import pandas as pd

    rows = []
    for i, ck in enumerate(checkpoint_files(run_dir)):
        mstep = re.search(r"step[=_-]?(\d+)", ck.name)
        m = evaluate_arrays(predict(ck), n_boot=n_boot, seed=seed)
        word, evidence, _ = M.verdict(m, thresholds=thresholds)
        rows.append({"step": int(mstep.group(1)) if mstep else i, n.VERDICT: word, n.VERDICT_EVIDENCE: evidence,
                     "source": ck.name, **m})
    return pd.DataFrame(rows)


def overall_verdict(table) -> tuple[str, str]:
    """The run's verdict: the last checkpoint's word, with a Spearman trend of the primary metric over steps."""
    if table is None or len(table) == 0:
        return n.INCONCLUSIVE, "inconclusive: nothing to evaluate (no val_predictions/*.npz, no metric rows)"
    last = table.iloc[-1]
    head = last.get(n.HEAD, "token") if hasattr(last, "get") else "token"
    P = n.PRIMARY.get(head, n.LIFT)
    trend = ""
    if P in table.columns and len(table) >= 3:
        t = M.trend_test(table["step"], table[P])
        trend = f"; trend of {P} over {int(t['n'])} checkpoints: Spearman rho={t['rho']:.2f} (p={t['p']:.3g})"
    return str(last[n.VERDICT]), f"step {int(last['step'])}: {last[n.VERDICT_EVIDENCE]}{trend}"


def verdict_table(table, key_metrics: Sequence[str] = KEY_METRICS):
    """The verdicts.csv view: step, verdict, evidence and the key metrics present with their CI bounds."""
    cols = ["step", n.VERDICT]
    for k in key_metrics:
        for c in (k, k + n.LO, k + n.HI):
            if c in table.columns and table[c].notna().any():
                cols.append(c)
    return table[cols + [n.VERDICT_EVIDENCE]]


def write_verdicts_csv(table, out_dir: str | os.PathLike, key_metrics: Sequence[str] = KEY_METRICS) -> Path:
    """Write ``verdicts.csv`` (see :func:`verdict_table`) into ``out_dir`` atomically; returns its path."""
    path = Path(out_dir) / VERDICTS_CSV
    if table is None or len(table) == 0:
        atomic_write_text(path, "step,verdict,verdict_evidence\n")
    else:
        atomic_write_text(path, verdict_table(table, key_metrics).to_csv(index=False))
    return path


def summary_metrics(table, prefix: str = "analysis/") -> dict[str, Any]:
    """Flat scalars for the analysis run's ``metrics.json``: overall verdict, evidence, checkpoint count, and the
    last row's primary metric with CI."""
    word, evidence = overall_verdict(table)
    out: dict[str, Any] = {n.VERDICT: word, n.VERDICT_EVIDENCE: evidence, prefix + "n_checkpoints": len(table)}
    if len(table):
        last = table.iloc[-1]
        P = n.PRIMARY.get(last.get(n.HEAD, "token"), n.LIFT)
        for c in (P, P + n.LO, P + n.HI):
            if c in table.columns:
                out[prefix + c] = float(last[c])
        out[prefix + "last_step"] = int(last["step"])
        for w in n.VERDICTS:
            out[prefix + f"n_{w}"] = int((table[n.VERDICT] == w).sum())
    return out


# ----------------------------------------------------------------------------------------------------- plots
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


# ----------------------------------------------------------------------------------------------------- several runs
def compare_runs(run_dirs: Iterable[str | os.PathLike], **kwargs) -> dict[str, Any]:
    """``{label: evaluate_run(dir)}`` for several runs (labels = run directory names)."""
    return {run_label(d): evaluate_run(d, **kwargs) for d in run_dirs}


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


def paired_compare(
    run_a: str | os.PathLike, run_b: str | os.PathLike, *, n_boot: int = 1000, seed: int = 0
):
    """Primary metric of run A minus run B at every step both runs validated. Paired (same resamples of the same
    items) when both prediction files hold the same items, else unpaired (independent resamples of each run).
    Returns a DataFrame: step, diff, diff_lo, diff_hi, p_positive, paired, significant."""
    import pandas as pd

    fa, fb = dict(prediction_files(run_a)), dict(prediction_files(run_b))
    rows = []
    for step in sorted(set(fa) & set(fb)):
        a, b = load_predictions(fa[step]), load_predictions(fb[step])
        head = "token" if ("pred_codes" in a or "pred_logits" in a) else "vector"
        sa, sb = _primary_stat(a, head), _primary_stat(b, head)
        if sa is None or sb is None:
            continue
        paired = _same_items(a, b)
        if paired:
            ep = a.get("episode_ids")
            res = M.EpisodeResampler(ep, _n_items(a), n_boot, seed)
            r = M.paired_bootstrap(sa, sb, resampler=res)
            d, lo, hi, pp = r.diff, r.lo, r.hi, r.p_positive
        else:
            ra = M.EpisodeResampler(a.get("episode_ids"), _n_items(a), n_boot, seed)
            rb = M.EpisodeResampler(b.get("episode_ids"), _n_items(b), n_boot, seed + 1)
            xa = M.stats.bootstrap_samples(sa, ra)
            xb = M.stats.bootstrap_samples(sb, rb)
            diffs = xa - xb
            d = sa(np.arange(ra.n_items)) - sb(np.arange(rb.n_items))
            lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
            pp = float(np.nanmean(diffs > 0))
        rows.append({"step": step, "metric": n.PRIMARY[head], "diff": float(d), "diff_lo": float(lo),
                     "diff_hi": float(hi), "p_positive": pp, "paired": paired,
                     "significant": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def compare_table(tables: Mapping[str, Any]):
    """One row per run: last step, its verdict, the primary metric with CI, and the Spearman trend over steps."""
    import pandas as pd

    rows = []
    for label, t in tables.items():
        if t is None or len(t) == 0:
            rows.append({"run": label, n.VERDICT: n.INCONCLUSIVE, "last_step": None})
            continue
        last = t.iloc[-1]
        P = n.PRIMARY.get(last.get(n.HEAD, "token"), n.LIFT)
        tr = M.trend_test(t["step"], t[P]) if P in t.columns else {"rho": np.nan, "p": np.nan}
        rows.append({"run": label, n.VERDICT: last[n.VERDICT], "last_step": int(last["step"]), "metric": P,
                     "value": last.get(P), "lo": last.get(P + n.LO), "hi": last.get(P + n.HI),
                     "trend_rho": tr["rho"], "trend_p": tr["p"]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------- demo input
def make_demo_run_dir(
    root: str | os.PathLike,
    kind: str = "learning",
    *,
    steps: Sequence[int] = (100, 200, 300, 400, 500),
    n_episodes: int = 40,
    items_per_episode: int = 12,
    n_codes: int = 8,
    n_positions: int = 2,
    seed: int = 0,
    name: str = "",
) -> Path:
    """Write a SYNTHETIC DEMO run directory in the real format (``config.yaml``, ``metrics.json``,
    ``timeseries.csv``, ``status``, ``val_predictions/step_XXXXXX.npz``) under ``root`` and return its path.

    ``kind``: ``learning`` (accuracy grows with step), ``collapsed`` (one code), ``random-like`` (draws from the
    GT marginal, independent of the input). Every file says DEMO; nothing here comes from a real model.
    """
    if kind not in ("learning", "collapsed", "random-like"):
        raise ValueError(f"make_demo_run_dir kind={kind!r}: use learning, collapsed or random-like")
    rng = np.random.default_rng(seed)
    path = Path(root) / (name or f"DEMO_synthetic_{kind}")
    (path / PRED_DIR).mkdir(parents=True, exist_ok=True)
    N = n_episodes * items_per_episode
    p = np.exp(-0.4 * np.arange(n_codes))
    p /= p.sum()
    gt = rng.choice(n_codes, size=(N, n_positions), p=p)
    ep = np.repeat(np.arange(n_episodes), items_per_episode)
    codebook = rng.normal(size=(n_codes, 4)).astype(np.float32)
    ts_rows = []
    for j, step in enumerate(steps):
        if kind == "learning":
            keep = rng.random(gt.shape) < 0.2 + 0.7 * (j + 1) / len(steps)
            pred = np.where(keep, gt, rng.choice(n_codes, size=gt.shape, p=p))
        elif kind == "collapsed":
            pred = np.zeros_like(gt)
        else:
            pred = rng.choice(n_codes, size=gt.shape, p=p)
        np.savez_compressed(path / PRED_DIR / f"step_{step:06d}.npz", gt_codes=gt, pred_codes=pred,
                            gt_vectors=codebook[gt], pred_vectors=codebook[pred], episode_ids=ep,
                            codebook=codebook, step=np.array(step), mode=np.array("DEMO"))
        ts_rows.append(f"{step},{1.0 - 0.5 * (kind == 'learning') * (j + 1) / len(steps):.4f},"
                       f"{float((gt == pred).mean()):.4f}")
    atomic_write_text(path / "timeseries.csv", "step,val/loss,val/token_accuracy\n" + "\n".join(ts_rows) + "\n")
    atomic_write_text(path / "config.yaml", f"# SYNTHETIC DEMO run directory written by "
                      f"hlrp_core.analysis.make_demo_run_dir (kind={kind}); not a real model\n"
                      f"experiment:\n  name: DEMO_{kind}\n  description: synthetic demo input\n")
    atomic_write_json(path / "metrics.json", {"demo": True, "demo_kind": kind, "val/step": int(steps[-1])})
    atomic_write_text(path / "status", "DONE\n")
    return path


def read_run_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """metrics.json, the first lines of config.yaml, prediction steps and checkpoints of a run (for printing)."""
    run_dir = Path(run_dir)
    cfg = run_dir / "config.yaml"
    return {"run": run_label(run_dir), "metrics": read_json(run_dir / "metrics.json", {}) or {},
            "config_head": cfg.read_text().splitlines()[:3] if cfg.exists() else [],
            "prediction_steps": [s for s, _ in prediction_files(run_dir)],
            "checkpoints": [c.name for c in checkpoint_files(run_dir)]}


def resolve_inputs(run_dir: str, run_dirs: Sequence[str], demo_root: str | os.PathLike,
                   demo_kinds: Sequence[str] = ("learning",)) -> tuple[list[Path], bool]:
    """The run directories to analyse: ``run_dirs`` (+ ``run_dir``) when given, else freshly written demo runs
    under ``demo_root`` (one per ``demo_kinds``). Returns (paths, is_demo)."""
    from ..paths import resolve

    given = [d for d in ([run_dir] if run_dir else []) + list(run_dirs) if d]
    if given:
        missing = [d for d in given if not resolve(d).is_dir()]
        if missing:
            raise FileNotFoundError(f"analysis.run_dir(s) not found: {missing}; pass existing run directories")
        return [resolve(d) for d in given], False
    return [make_demo_run_dir(demo_root, k, seed=i) for i, k in enumerate(demo_kinds)], True


def paired_compare_all(run_dirs: Sequence[str | os.PathLike], *, n_boot: int = 1000, seed: int = 0):
    """:func:`paired_compare` of every run against the first one (the reference), stacked with ``run_a`` /
    ``run_b`` columns. Empty DataFrame with fewer than two runs."""
    import pandas as pd

    frames = []
    for other in list(run_dirs)[1:]:
        df = paired_compare(other, run_dirs[0], n_boot=n_boot, seed=seed)
        df.insert(0, "run_b", run_label(run_dirs[0]))
        df.insert(0, "run_a", run_label(other))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def thresholds_for(cfg: Any) -> M.VerdictThresholds:
    """The verdict thresholds of this analysis run's config (``training.verdict.*``, overridable with ``--set``)."""
    from ..training.verdict import thresholds_from_config

    return thresholds_from_config(cfg.training.verdict)


def n_boot_for(cfg: Any) -> int:
    """Bootstrap resamples for the analysis notebooks: 200 at smoke size, 1000 (the spec's B) otherwise."""
    return 200 if getattr(cfg, "smoke", False) else 1000
