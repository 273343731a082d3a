"""'Is it learning?' across the checkpoints of a run, from the files in its run directory (no model needed).

Every checkpoint is read and scored by :mod:`hlrp_core.metrics.predictions` -- the same reader and scorer the
training callback used at that validation -- so notebook 30 gives the training's verdict for the same checkpoint.
The bootstrap count and thresholds come from ``training.verdict.*`` (:func:`settings_for`: the analysed run's own
``config.yaml`` section, so the analysis scores as its training did).

Inputs a run directory may hold (written by the training code):

| file | used for |
|---|---|
| ``val_predictions/step_XXXXXX.npz`` | per-validation arrays (Stage 1: ``codes``, ``latents``, ``actions``, per-item reconstruction errors; Stage 2: ``gt_codes``, ``pred_codes`` / ``pred_vectors``, ``episode_ids``, ...) |
| ``timeseries.csv`` | fallback when there are no prediction files: rows whose columns carry ``hlrp_core.metrics`` names (``val/lift``, ``val/lift_lo``, ...) |
| ``metrics.json``, ``config.yaml`` | run summary, labels, the ``training.verdict`` settings |
| ``ckpt/*.ckpt`` | listed; evaluating a checkpoint needs a model, so :func:`evaluate_checkpoints` takes a ``predict`` callable that turns a checkpoint into the same arrays |

Main entry points: :func:`evaluate_run` (one row per step with metrics, CIs, the verdict and evidence),
:func:`overall_verdict` (the last checkpoint's verdict plus an exact permutation trend test), :func:`write_verdicts_csv`,
and for several runs :func:`compare_runs`, :func:`paired_compare`. Figures: :mod:`.learning_plots`; demo input:
:mod:`.learning_demo` (both re-exported here for the notebooks).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from .. import metrics as M
from ..io import atomic_write_text, read_json
from ..metrics import names as n
from ..metrics import predictions as P
from ..metrics.predictions import (PRED_DIR, VerdictSettings, load_predictions, prediction_files,  # noqa: F401
                                   settings_from_config)
from .learning_demo import make_demo_run_dir  # noqa: F401  (re-exported for the notebooks)
from .learning_plots import DEFAULT_PLOT, REFERENCE, plot_learning_curves, plot_metrics_vs_step  # noqa: F401

VERDICTS_CSV = "verdicts.csv"

#: Columns of verdicts.csv besides step/verdict/evidence: key metrics with their CI bounds (when present).
KEY_METRICS = [n.LIFT, n.ACC, n.MAJORITY_ACC, n.R2, n.MSE, n.COSINE, n.JS, n.JS_FLOOR, n.JS_EXCESS, n.UNIQUE_RATIO,
               n.PPL_RATIO, n.TOP1_SHARE_PRED, n.VAR_RATIO, n.NEAREST_ACC, n.IG, n.COPY_RATIO, n.DELTA_PSNR,
               n.CODES_USED, n.PPL_PRED, n.ACTION_NMI, n.ACTION_NMI_EXCESS, n.PROBE_R2, n.PROBE_R2_EXCESS,
               n.TREND_DIFF]

#: Metric whose trend over checkpoints :func:`overall_verdict` tests, per head (Stage 2: the verdict's primary).
TREND_METRIC = {**n.PRIMARY, "stage1": n.DELTA_PSNR}


# ----------------------------------------------------------------------------------------------------- inputs
def checkpoint_files(run_dir: str | os.PathLike) -> list[Path]:
    """``ckpt/*.ckpt`` of a run, sorted by name."""
    return sorted((Path(run_dir) / "ckpt").glob("*.ckpt"))


def run_label(run_dir: str | os.PathLike) -> str:
    """A short label: the run directory name (``<timestamp>_<name>``)."""
    return Path(run_dir).name


def settings_for(cfg: Any, run_dir: Optional[str | os.PathLike] = None) -> VerdictSettings:
    """The ``training.verdict.*`` settings to score ``run_dir`` with: its own ``config.yaml`` section when it has
    one (so the analysis scores exactly as its training did) over this analysis run's ``cfg.training.verdict``."""
    return P.settings_for_run(run_dir, cfg.training.verdict)


def _settings(settings: Optional[VerdictSettings], n_boot: Optional[int],
              thresholds: Optional[M.VerdictThresholds]) -> VerdictSettings:
    st = settings or VerdictSettings()
    if n_boot is not None:
        st = VerdictSettings(n_boot=int(n_boot), thresholds=st.thresholds, seed=st.seed)
    if thresholds is not None:
        st = VerdictSettings(n_boot=st.n_boot, thresholds=thresholds, seed=st.seed)
    return st


# ----------------------------------------------------------------------------------------------------- evaluation
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
    settings: Optional[VerdictSettings] = None,
    max_checkpoints: int = 0,
    n_boot: Optional[int] = None,
    thresholds: Optional[M.VerdictThresholds] = None,
):
    """One row per evaluated step: ``step``, ``verdict``, ``evidence``, ``source`` and every metric with
    ``_lo``/``_hi``, each checkpoint scored by :func:`hlrp_core.metrics.predictions.score_run` (as its training
    scored it, including the paired latest-minus-first ``trend_diff``). Without prediction files, the metric rows
    of ``timeseries.csv``. ``max_checkpoints`` > 0 keeps that many, evenly spaced (always the first and the last).
    ``n_boot`` / ``thresholds`` override ``settings`` (tests). Returns a pandas DataFrame (empty when the run has
    nothing to evaluate)."""
    import pandas as pd

    st = _settings(settings, n_boot, thresholds)
    run_dir = Path(run_dir)
    steps = [s for s, _ in prediction_files(run_dir)]
    if max_checkpoints and len(steps) > max_checkpoints:
        keep = np.unique(np.linspace(0, len(steps) - 1, max_checkpoints).round().astype(int))
        steps = [steps[i] for i in keep]
    rows = P.score_run(run_dir, st, steps=steps) if steps else []
    if not rows:
        for r in _timeseries_rows(run_dir):
            word, evidence, _ = M.verdict(r, thresholds=st.thresholds)
            rows.append({"step": r["step"], n.VERDICT: word, n.VERDICT_EVIDENCE: evidence,
                         "source": "timeseries.csv", **{k: v for k, v in r.items() if k != "step"}})
    df = pd.DataFrame(rows)
    return df.sort_values("step").reset_index(drop=True) if len(df) else df


def evaluate_checkpoints(
    run_dir: str | os.PathLike,
    predict: Callable[[Path], Mapping[str, np.ndarray]],
    *,
    settings: Optional[VerdictSettings] = None,
):
    """Score every ``ckpt/*.ckpt`` with ``predict(ckpt_path) -> arrays`` (the model-specific part, supplied by
    the caller: it must score the same frozen items each time) and return rows like :func:`evaluate_run`.
    The step is read from ``step=N`` / ``step_N`` in the file name when present, else the file's order."""
    import pandas as pd

    rows, first = [], None
    for i, ck in enumerate(checkpoint_files(run_dir)):
        mstep = re.search(r"step[=_-]?(\d+)", ck.name)
        arrays = predict(ck)
        first = arrays if first is None else first
        rows.append({"step": int(mstep.group(1)) if mstep else i, "source": ck.name,
                     **P.score(arrays, settings, reference=first)})
    return pd.DataFrame(rows)


def _trend_metric(table, head: str) -> Optional[str]:
    m = TREND_METRIC.get(head, n.LIFT)
    return m if m in table.columns else None


def overall_verdict(table) -> tuple[str, str]:
    """The run's verdict: the last checkpoint's word and evidence, plus the trend of the head's trend metric over
    the checkpoints (:func:`hlrp_core.metrics.stats.trend_test`: exact permutation p; the evidence names it)."""
    if table is None or len(table) == 0:
        return n.INCONCLUSIVE, "inconclusive: nothing to evaluate (no val_predictions/*.npz, no metric rows)"
    last = table.iloc[-1]
    head = last.get(n.HEAD, "token") if hasattr(last, "get") else "token"
    metric = _trend_metric(table, head)
    trend = ""
    if metric and len(table) >= 3:
        t = M.trend_test(table["step"], table[metric].astype(float))
        trend = (f"; trend of {metric} over {int(t['n'])} checkpoints: rho={t['rho']:.2f}, p={t['p']:.3g} "
                 f"({t['method']})")
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


def training_verdict(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What the training callback recorded in the run's ``metrics.json``: ``verdict``, ``verdict_evidence`` and
    ``verdict/step`` (empty dict when it recorded none)."""
    m = read_json(Path(run_dir) / "metrics.json", {}) or {}
    return {k: m[k] for k in (n.VERDICT, n.VERDICT_EVIDENCE, "verdict/step") if k in m}


def summary_metrics(table, prefix: str = "analysis/", run_dir: Optional[str | os.PathLike] = None
                    ) -> dict[str, Any]:
    """Flat scalars for the analysis run's ``metrics.json``: overall verdict, evidence, checkpoint count, the last
    row's primary metric with CI and, with ``run_dir``, whether it agrees with the verdict the training recorded
    for the same step (``analysis/training_verdict``, ``analysis/agrees_with_training``)."""
    word, evidence = overall_verdict(table)
    out: dict[str, Any] = {n.VERDICT: word, n.VERDICT_EVIDENCE: evidence, prefix + "n_checkpoints": len(table)}
    if len(table):
        last = table.iloc[-1]
        metric = _trend_metric(table, last.get(n.HEAD, "token"))
        for c in ((metric, metric + n.LO, metric + n.HI) if metric else ()):
            if c in table.columns:
                out[prefix + c] = float(last[c])
        out[prefix + "last_step"] = int(last["step"])
        for w in n.VERDICTS:
            out[prefix + f"n_{w}"] = int((table[n.VERDICT] == w).sum())
        tv = training_verdict(run_dir) if run_dir else {}
        if tv.get("verdict/step") == int(last["step"]):
            out[prefix + "training_verdict"] = tv[n.VERDICT]
            out[prefix + "agrees_with_training"] = int(tv[n.VERDICT] == word)
    return out


# ----------------------------------------------------------------------------------------------------- several runs
def compare_runs(run_dirs: Iterable[str | os.PathLike], **kwargs) -> dict[str, Any]:
    """``{label: evaluate_run(dir)}`` for several runs (labels = run directory names)."""
    return {run_label(d): evaluate_run(d, **kwargs) for d in run_dirs}


def paired_compare(run_a: str | os.PathLike, run_b: str | os.PathLike, *,
                   settings: Optional[VerdictSettings] = None, n_boot: Optional[int] = None):
    """Primary metric of run A minus run B at every step both runs validated. Paired (same resamples of the same
    items) when both prediction files hold the same items, else unpaired (independent resamples of each run).
    Returns a DataFrame: step, diff, diff_lo, diff_hi, p_positive, paired, significant."""
    import pandas as pd

    st = _settings(settings, n_boot, None)
    fa, fb = dict(prediction_files(run_a)), dict(prediction_files(run_b))
    rows = []
    for step in sorted(set(fa) & set(fb)):
        a, b = load_predictions(fa[step]), load_predictions(fb[step])
        head = P.detect_head(a)
        sa, sb = P.primary_stat(a, head), P.primary_stat(b, head)
        if sa is None or sb is None:
            continue
        paired = P.same_items(a, b)
        ra = M.EpisodeResampler(a.get("episode_ids"), P._n_items(a), st.n_boot, st.seed)
        if paired:
            r = M.paired_bootstrap(sa, sb, resampler=ra)
            d, lo, hi, pp = r.diff, r.lo, r.hi, r.p_positive
        else:
            rb = M.EpisodeResampler(b.get("episode_ids"), P._n_items(b), st.n_boot, st.seed + 1)
            diffs = M.stats.bootstrap_samples(sa, ra) - M.stats.bootstrap_samples(sb, rb)
            d = sa(np.arange(ra.n_items)) - sb(np.arange(rb.n_items))
            lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
            pp = float(np.nanmean(diffs > 0))
        rows.append({"step": step, "metric": n.PRIMARY[head], "diff": float(d), "diff_lo": float(lo),
                     "diff_hi": float(hi), "p_positive": pp, "paired": paired,
                     "significant": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def compare_table(tables: Mapping[str, Any]):
    """One row per run: last step, its verdict, the primary metric with CI, and the trend over steps."""
    import pandas as pd

    rows = []
    for label, t in tables.items():
        if t is None or len(t) == 0:
            rows.append({"run": label, n.VERDICT: n.INCONCLUSIVE, "last_step": None})
            continue
        last = t.iloc[-1]
        metric = _trend_metric(t, last.get(n.HEAD, "token"))
        tr = M.trend_test(t["step"], t[metric].astype(float)) if metric else {"rho": np.nan, "p": np.nan}
        rows.append({"run": label, n.VERDICT: last[n.VERDICT], "last_step": int(last["step"]), "metric": metric,
                     "value": last.get(metric), "lo": last.get(f"{metric}{n.LO}"),
                     "hi": last.get(f"{metric}{n.HI}"), "trend_rho": tr["rho"], "trend_p": tr["p"]})
    return pd.DataFrame(rows)


def paired_compare_all(run_dirs: Sequence[str | os.PathLike], **kwargs):
    """:func:`paired_compare` of every run against the first one (the reference), stacked with ``run_a`` /
    ``run_b`` columns. Empty DataFrame with fewer than two runs."""
    import pandas as pd

    frames = []
    for other in list(run_dirs)[1:]:
        df = paired_compare(other, run_dirs[0], **kwargs)
        df.insert(0, "run_b", run_label(run_dirs[0]))
        df.insert(0, "run_a", run_label(other))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ----------------------------------------------------------------------------------------------------- notebooks
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
