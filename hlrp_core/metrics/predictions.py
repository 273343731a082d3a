"""The one reader and scorer of validation predictions (``<run>/val_predictions/step_XXXXXX.npz``).

Every place that answers "is this learning?" goes through here, so the answer does not depend on where you ask:
the training callback (:class:`hlrp_core.training.verdict.VerdictCallback`, after each validation), notebook 30
(:func:`hlrp_core.analysis.learning.evaluate_run`, every checkpoint afterwards) and the run dashboard
(:mod:`hlrp_core.viz.widgets`, when a run has predictions newer than its recorded verdict).

- Files: :func:`save_predictions` (atomic: temp file + rename, so a reader never sees half a file),
  :func:`prediction_files` (the one file list; temp files skipped), :func:`load_predictions`.
- Scoring: :func:`score` (one checkpoint: stage-aware metrics with episode-bootstrap CIs + the verdict) and
  :func:`score_run` (every checkpoint of a run). A checkpoint is scored with the same inputs on both paths:
  its own arrays, the run's **first** prediction file (the paired latest-minus-first ``trend_diff`` of the primary
  metric, Stage 2) and the replacement counters of all files up to it (Stage 1 ``replaced_rising``).
- Settings: :class:`VerdictSettings` (bootstrap count, fixed bootstrap seed, thresholds), built from the
  ``training.verdict.*`` section by :func:`settings_from_config`.

Stage detection from the npz keys (:func:`detect_head`): Stage 1 (LAQ) files hold ``codes`` + ``recon_mse`` /
``copy_mse`` / ``shuffled_mse`` per item (copy ratio, Delta PSNR, codes used, perplexity, action NMI / probe R2 vs
shuffled control and vs the untrained LAQ); Stage 2 files hold ``gt_codes`` with ``pred_codes`` (token head, primary
``lift``) or ``pred_vectors`` (vector head, primary ``r2``, nearest-code metrics with ``codebook``).
Rules of the verdict: :mod:`hlrp_core.metrics.verdict`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from . import names as n
from .collapse import codebook_usage
from .evaluate import evaluate_codes, evaluate_vectors
from .histograms import as_positions
from .kmeans import kmeans_labels
from .stage1 import action_nmi, linear_probe_r2, stage1_action_metrics
from .stats import EpisodeResampler, bootstrap_many, paired_bootstrap
from .verdict import VerdictThresholds, verdict

PRED_DIR = "val_predictions"
_STEP_RE = re.compile(r"^step_(\d+)\.npz$")
#: Bootstrap / probe-split seed: fixed, so every path scores a checkpoint with the same resamples.
SCORE_SEED = 0


# ----------------------------------------------------------------------------------------------------- settings
@dataclass
class VerdictSettings:
    """How a checkpoint is scored (the same on every path).

    Args:
        n_boot: Episode-bootstrap resamples per CI (``training.verdict.n_boot``).
        thresholds: Verdict thresholds (``training.verdict.*``).
        seed: Bootstrap / probe-split seed.
    """

    n_boot: int = 500
    thresholds: VerdictThresholds = field(default_factory=VerdictThresholds)
    seed: int = SCORE_SEED


def thresholds_from_config(v: Any) -> VerdictThresholds:
    """``training.verdict`` (``VerdictConfig``) -> ``VerdictThresholds``; ``random_tolerance`` applies to every
    primary metric (lift, R^2, information gain)."""
    fields = {k: getattr(v, k) for k in VerdictThresholds.__dataclass_fields__ if hasattr(v, k)}
    fields["random_tolerance"] = {n.LIFT: float(v.random_tolerance), n.R2: float(v.random_tolerance),
                                  n.IG: float(v.random_tolerance)}
    return VerdictThresholds(**fields)


def settings_from_config(v: Any) -> VerdictSettings:
    """``training.verdict`` (``VerdictConfig`` or any object with its fields) -> :class:`VerdictSettings`."""
    return VerdictSettings(n_boot=int(v.n_boot), thresholds=thresholds_from_config(v))


def settings_for_run(run_dir: Optional[str | os.PathLike], default: Any = None) -> VerdictSettings:
    """The settings a run's training scored with: its ``config.yaml`` ``training.verdict`` section over ``default``
    (a ``VerdictConfig``; None = its defaults). So a later reader scores exactly as the training did."""
    from dataclasses import replace

    if default is None:
        from ..config.training import VerdictConfig

        default = VerdictConfig()
    path = Path(run_dir) / "config.yaml" if run_dir else None
    if path is not None and path.is_file():
        import yaml

        recorded = ((yaml.safe_load(path.read_text()) or {}).get("training") or {}).get("verdict") or {}
        default = replace(default, **{k: v for k, v in recorded.items() if hasattr(default, k)})
    return settings_from_config(default)


# ----------------------------------------------------------------------------------------------------- files
def prediction_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / PRED_DIR / f"step_{int(step):06d}.npz"


def save_predictions(run_dir: str | os.PathLike, step: int, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` (plus ``step``) to ``<run_dir>/val_predictions/step_XXXXXX.npz`` atomically (compressed);
    returns its path."""
    from ..io import atomic_save

    data = {"step": np.array(int(step)), **{k: np.asarray(v) for k, v in arrays.items()}}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:          # a file object: np.savez would append ".npz" to a temp name
            np.savez_compressed(f, **data)

    return atomic_save(prediction_path(run_dir, step), write)


def prediction_files(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``<run_dir>/val_predictions/step_XXXXXX.npz`` sorted by step (temp files skipped)."""
    d = Path(run_dir) / PRED_DIR
    out = []
    for p in d.glob("step_*.npz") if d.is_dir() else []:
        m = _STEP_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def load_predictions(path: str | os.PathLike, keys: Optional[Iterable[str]] = None) -> dict[str, np.ndarray]:
    """The npz as a dict (only ``keys`` when given), dropping empty placeholder arrays (e.g. ``pred_codes`` of
    shape (0, S) in flow mode)."""
    with np.load(path, allow_pickle=False) as z:
        names = [k for k in z.files if keys is None or k in set(keys)]
        arrays = {k: z[k] for k in names}
    return {k: v for k, v in arrays.items() if not (v.ndim > 0 and v.size == 0)}


# ----------------------------------------------------------------------------------------------------- metrics
def detect_head(arrays: Mapping[str, np.ndarray]) -> str:
    """``stage1`` (LAQ files: ``codes`` + per-item reconstruction errors), ``token`` or ``vector`` (Stage 2)."""
    if "recon_mse" in arrays or ("codes" in arrays and "gt_codes" not in arrays):
        return "stage1"
    if "pred_codes" in arrays or "pred_logits" in arrays:
        return "token"
    if "pred_vectors" in arrays:
        return "vector"
    raise ValueError(f"cannot tell the stage from the npz keys {sorted(arrays)}")


def _episodes(a: Mapping[str, np.ndarray], n_items: int) -> np.ndarray:
    ep = a.get("episode_ids")
    return np.arange(n_items) if ep is None or len(ep) != n_items else np.asarray(ep)


def _n_items(a: Mapping[str, np.ndarray]) -> int:
    for k in ("gt_codes", "gt_vectors", "codes", "episode_ids"):
        if k in a:
            return len(a[k])
    raise ValueError("prediction file holds none of gt_codes / gt_vectors / codes / episode_ids")


def stage1_metrics(a: Mapping[str, np.ndarray], *, n_boot: int = 500, seed: int = SCORE_SEED) -> dict[str, Any]:
    """Stage-1 verdict inputs from a LAQ npz (keys of ``laq.module.LAQModule._save_outputs``)."""
    codes = np.asarray(a["codes"]).astype(np.int64)
    codes = codes.reshape(len(codes), -1)                                              # (N, S)
    N = len(codes)
    ep = _episodes(a, N)
    out: dict[str, Any] = {n.HEAD: "stage1"}
    if all(k in a for k in ("recon_mse", "copy_mse", "shuffled_mse")):
        rec, cop, shu = (np.asarray(a[k], float).reshape(-1) for k in ("recon_mse", "copy_mse", "shuffled_mse"))
        dp = 10.0 * np.log10(np.maximum(shu, 1e-12) / np.maximum(rec, 1e-12))          # PSNR(true) - PSNR(shuffled)
        res = EpisodeResampler(ep, N, n_boot, seed)
        stats = {n.COPY_RATIO: lambda i: rec[i].sum() / cop[i].sum(), n.DELTA_PSNR: lambda i: dp[i].mean()}
        for name, ci in bootstrap_many(stats, res).items():
            out.update(ci.as_dict(name))
    out[n.N_ITEMS] = N
    out[n.N_EPISODES] = len(np.unique(ep))
    K = int(codes.max()) + 1 if N else 1
    use = codebook_usage(codes.reshape(-1), K)
    out[n.PPL_PRED] = use["ppl"]
    out[n.CODES_USED] = use["n_used"]
    for s in range(codes.shape[1]):
        out[n.pos(n.CODES_USED, s)] = float(len(np.unique(codes[:, s])))
    actions = a.get("actions")
    if actions is not None and len(actions) == N and np.asarray(actions).reshape(N, -1).std(0).max() > 0:
        actions = np.asarray(actions, float).reshape(N, -1)
        feats = np.asarray(a["latents"], float).reshape(N, -1) if "latents" in a else None
        out.update(stage1_action_metrics(codes, actions, ep, features=feats, seed=seed))
        if "untrained_latents" in a and feats is not None:
            ul = np.asarray(a["untrained_latents"], float).reshape(N, codes.shape[1], -1)   # (N, S, D)
            r2_u = linear_probe_r2(ul.reshape(N, -1), actions, ep, seed)
            # the untrained LAQ's codes: the same k-means as the NSVQ codebook refit (metrics.kmeans), K clusters
            k_u = int(min(K, max(2, N // 10)))
            ucodes = np.stack([kmeans_labels(ul[:, s], k_u, seed=seed) for s in range(ul.shape[1])], 1)
            out["probe_r2_untrained"] = r2_u
            out["action_nmi_untrained"] = action_nmi(ucodes, actions, seed=seed)
            # point estimates only (no CI): the verdict then judges alignment by the excess over the shuffled control
            out[n.PROBE_R2_VS_UNTRAINED] = out[n.PROBE_R2] - r2_u
            out[n.ACTION_NMI_VS_UNTRAINED] = out[n.ACTION_NMI] - out["action_nmi_untrained"]
    return out


def _ablations(a: Mapping[str, np.ndarray], suffix: str) -> dict[str, np.ndarray]:
    return {k[len("ablation_"):-len(suffix)]: v for k, v in a.items()
            if k.startswith("ablation_") and k.endswith(suffix)}


def stage2_metrics(a: Mapping[str, np.ndarray], *, n_boot: int = 500, seed: int = SCORE_SEED) -> dict[str, Any]:
    """Stage-2 metrics from a policy npz (``gt_codes``, ``pred_codes`` or ``pred_vectors``, ``gt_vectors``,
    ``episode_ids``, ``codebook``; optional ``ablation_<name>_codes`` / ``_vectors``)."""
    head = detect_head(a)
    K = int(a["codebook"].shape[0]) if "codebook" in a else None
    ep = _episodes(a, _n_items(a))
    if head == "token":
        abl = _ablations(a, "_codes")
        out = evaluate_codes(a["gt_codes"], a.get("pred_codes"), pred_logits=a.get("pred_logits"), n_codes=K,
                             episode_ids=ep, ablations=abl or None, n_boot=n_boot, seed=seed)
        if "gt_vectors" in a and "pred_vectors" in a:
            vec = evaluate_vectors(a["gt_vectors"], a["pred_vectors"], episode_ids=ep,
                                   train_mean=a.get("train_mean"), n_boot=n_boot, seed=seed)
            out.update({k: v for k, v in vec.items() if k not in out})
        return out
    abl = _ablations(a, "_vectors")
    return evaluate_vectors(a["gt_vectors"], a["pred_vectors"], episode_ids=ep, train_mean=a.get("train_mean"),
                            codebook=a.get("codebook"), gt_codes=a.get("gt_codes"), ablations=abl or None,
                            n_boot=n_boot, seed=seed)


def evaluate_arrays(a: Mapping[str, np.ndarray], *, n_boot: int = 500, seed: int = SCORE_SEED) -> dict[str, Any]:
    """Stage-appropriate metrics (``head`` key set) of one validation's arrays."""
    if detect_head(a) == "stage1":
        return stage1_metrics(a, n_boot=n_boot, seed=seed)
    return stage2_metrics(a, n_boot=n_boot, seed=seed)


def primary_stat(a: Mapping[str, np.ndarray], head: str) -> Optional[Callable[[np.ndarray], float]]:
    """The primary metric of a Stage-2 head as a function of item indices (paired bootstraps across checkpoints);
    None for Stage 1 (its verdict has no trend clause)."""
    if head == "token" and "gt_codes" in a and ("pred_codes" in a or "pred_logits" in a):
        gt = as_positions(a["gt_codes"]).astype(np.int64)
        pr = a["pred_codes"] if "pred_codes" in a else np.asarray(a["pred_logits"]).argmax(-1)
        corr = gt == as_positions(pr)
        K = int(max(gt.max(), np.max(pr)) + 1)

        def lift(i: np.ndarray) -> float:
            g = gt[i]
            maj = np.mean([np.bincount(g[:, s], minlength=K).max() for s in range(g.shape[1])]) / len(g)
            return float(corr[i].mean() - maj)

        return lift
    if head == "vector" and "gt_vectors" in a and "pred_vectors" in a:
        y = np.asarray(a["gt_vectors"], float).reshape(len(a["gt_vectors"]), -1)
        yh = np.asarray(a["pred_vectors"], float).reshape(len(y), -1)
        ref = y.mean(0) if "train_mean" not in a else np.asarray(a["train_mean"], float).reshape(-1)
        se, sst = ((yh - y) ** 2).sum(1), ((y - ref) ** 2).sum(1)
        return lambda i: float(1 - se[i].sum() / sst[i].sum())
    return None


def same_items(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """True when two prediction files score the same frozen items (so a paired comparison is valid)."""
    for k in ("episode_ids", "gt_codes", "gt_vectors"):
        if (k in a) != (k in b):
            return False
        if k in a and (a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])):
            return False
    return True


def replaced_rising(history: Sequence[tuple[float, float]]) -> dict[str, float]:
    """``replaced_rising`` from the (replacement events so far, codes replaced at the last event) of each validation
    up to this one: 1 when the replaced count rose over the last 3 distinct events. Empty without counters."""
    events: list[tuple[float, float]] = []
    for ev, last in history:
        if not events or events[-1][0] != ev:
            events.append((float(ev), float(last)))
    if not events:
        return {}
    r = [x[1] for x in events[-3:]]
    return {n.REPLACED_RISING: float(len(r) == 3 and r[0] < r[1] < r[2])}


_COUNTER_KEYS = ("replacement_events", "replacement_last")


def _counters(a: Mapping[str, np.ndarray]) -> Optional[tuple[float, float]]:
    if all(k in a for k in _COUNTER_KEYS):
        return float(a["replacement_events"]), float(a["replacement_last"])
    return None


# ----------------------------------------------------------------------------------------------------- scoring
def score(arrays: Mapping[str, np.ndarray], settings: Optional[VerdictSettings] = None, *,
          reference: Optional[Mapping[str, np.ndarray]] = None, history: Sequence[tuple[float, float]] = (),
          extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Score one checkpoint: ``{"verdict", "verdict_evidence", **metrics}``.

    Args:
        arrays: The checkpoint's prediction arrays.
        settings: Bootstrap count, seed and thresholds (default ``VerdictSettings()``).
        reference: The run's first prediction arrays: adds the paired ``trend_diff`` (this - first) of the primary
            metric on the same items and resamples (a degrading run is not ``learning``). Ignored when the items
            differ or for Stage 1.
        history: Stage 1: (replacement events, last replaced) of every validation up to this one.
        extra: More verdict inputs (tests).
    """
    st = settings or VerdictSettings()
    m = evaluate_arrays(arrays, n_boot=st.n_boot, seed=st.seed)
    head = str(m.get(n.HEAD, "token"))
    if reference is not None and reference is not arrays and same_items(arrays, reference):
        sa, sb = primary_stat(arrays, head), primary_stat(reference, head)
        if sa is not None and sb is not None:
            res = EpisodeResampler(arrays.get("episode_ids"), _n_items(arrays), st.n_boot, st.seed)
            m.update(paired_bootstrap(sa, sb, resampler=res).as_dict(n.TREND_DIFF))
    if head == "stage1":
        m.update(replaced_rising(history))
    m.update(extra or {})
    word, evidence, _ = verdict(m, head=head, thresholds=st.thresholds)
    return {n.VERDICT: word, n.VERDICT_EVIDENCE: evidence, **m}


def score_file(path: str | os.PathLike, settings: Optional[VerdictSettings] = None) -> dict[str, Any]:
    """Score one prediction file alone (no trend reference, no replacement history)."""
    return score(load_predictions(path), settings)


def score_run(run_dir: str | os.PathLike, settings: Optional[VerdictSettings] = None, *,
              steps: Optional[Iterable[int]] = None) -> list[dict[str, Any]]:
    """Score the checkpoints of a run (all, or those in ``steps``), each exactly as the training callback scored
    it at that validation: rows ``{"step", "source", "verdict", "verdict_evidence", **metrics}`` by step."""
    files = prediction_files(run_dir)
    wanted = None if steps is None else {int(s) for s in steps}
    rows: list[dict[str, Any]] = []
    first: Optional[dict[str, np.ndarray]] = None
    history: list[tuple[float, float]] = []
    for step, path in files:
        if wanted is not None and step not in wanted and first is not None:
            c = _counters(load_predictions(path, _COUNTER_KEYS))     # cheap: two scalars of the skipped file
            if c is not None:
                history.append(c)
            continue
        arrays = load_predictions(path)
        c = _counters(arrays)
        if c is not None:
            history.append(c)
        if first is None:
            first = arrays
        if wanted is not None and step not in wanted:
            continue
        row = score(arrays, settings, reference=first, history=history)
        rows.append({"step": step, "source": path.name, **row})
    return rows


def score_latest(run_dir: str | os.PathLike, settings: Optional[VerdictSettings] = None
                 ) -> Optional[dict[str, Any]]:
    """The newest checkpoint of a run scored as :func:`score_run` scores it (None without prediction files)."""
    files = prediction_files(run_dir)
    if not files:
        return None
    rows = score_run(run_dir, settings, steps=[files[-1][0]])
    return rows[-1] if rows else None


def current_verdict(run_dir: str | os.PathLike, recorded: Optional[Mapping[str, Any]] = None,
                    settings: Optional[VerdictSettings] = None) -> dict[str, Any]:
    """The verdict of a run's newest checkpoint for a viewer (the dashboard): the one the training recorded in
    ``metrics.json`` when it belongs to the newest prediction file, else the newest file scored now (a run killed
    between writing predictions and recording). ``{"verdict", "verdict_evidence", "step", "source"}``."""
    rec = dict(recorded or {})
    files = prediction_files(run_dir)
    newest = files[-1][0] if files else None
    if n.VERDICT in rec and (newest is None or rec.get("verdict/step") == newest):
        return {n.VERDICT: rec[n.VERDICT], n.VERDICT_EVIDENCE: rec.get(n.VERDICT_EVIDENCE, ""),
                "step": rec.get("verdict/step"), "source": "metrics.json (recorded by the training)"}
    if newest is None:
        return {n.VERDICT: "(none recorded)", n.VERDICT_EVIDENCE: "", "step": None, "source": "-"}
    row = score_latest(run_dir, settings or settings_for_run(run_dir))
    return {n.VERDICT: row[n.VERDICT], n.VERDICT_EVIDENCE: row[n.VERDICT_EVIDENCE], "step": newest,
            "source": f"{PRED_DIR}/{files[-1][1].name} (scored now: no recorded verdict for it)"}


#: Metrics copied (with ``_lo`` / ``_hi`` when present) into metrics.json / the time series, per head.
KEY_METRICS = {
    "stage1": [n.COPY_RATIO, n.DELTA_PSNR, n.PPL_PRED, n.CODES_USED, n.ACTION_NMI, n.ACTION_NMI_EXCESS,
               n.PROBE_R2, n.PROBE_R2_EXCESS, n.PROBE_R2_VS_UNTRAINED, n.ACTION_NMI_VS_UNTRAINED, n.N_ITEMS,
               n.N_EPISODES],
    "token": [n.LIFT, n.ACC, n.MAJORITY_ACC, n.SEQ_EXACT, n.JS, n.JS_EXCESS, n.UNIQUE_RATIO, n.PPL_RATIO,
              n.TOP1_SHARE_PRED, n.TREND_DIFF, n.N_ITEMS, n.N_EPISODES],
    "vector": [n.R2, n.MSE, n.COSINE, n.VAR_RATIO, n.NEAREST_ACC, n.NEAREST_LIFT, n.UNIQUE_RATIO, n.PPL_RATIO,
               n.TREND_DIFF, n.N_ITEMS, n.N_EPISODES],
}


def record_items(row: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The ``metrics.json`` entries of a scored checkpoint: ``verdict``, ``verdict_evidence``, ``verdict/step``,
    ``verdict/code``, ``verdict/head`` and the head's key metrics with CI bounds under ``verdict/``."""
    head = str(row.get(n.HEAD, "token"))
    word = str(row[n.VERDICT])
    out: dict[str, Any] = {n.VERDICT: word, n.VERDICT_EVIDENCE: row[n.VERDICT_EVIDENCE], "verdict/step": int(step),
                           "verdict/code": n.VERDICTS.index(word), "verdict/head": head}
    for name in KEY_METRICS.get(head, []):
        for key in (name, name + n.LO, name + n.HI):
            if key in row:
                try:
                    v = float(row[key])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(v):
                    out[f"verdict/{key}"] = v
    return out
