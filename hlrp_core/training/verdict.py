"""The "is this learning?" verdict at every validation (issue 6 item 3).

``VerdictCallback(run)`` runs after each validation on global rank 0. It reads the run's newest
``val_predictions/step_XXXXXX.npz`` (written by the Stage-1 or Stage-2 module in the same validation), computes the
stage's metrics with :mod:`hlrp_core.metrics` (episode-bootstrap 95% CIs) and applies
:func:`hlrp_core.metrics.verdict`. It records into ``metrics.json`` (``run.record``):

- ``verdict`` (``learning`` / ``collapsed`` / ``random-like`` / ``inconclusive``), ``verdict_evidence`` (one line),
  ``verdict/step`` (the validation step the verdict belongs to);
- the key metrics with their CI bounds under ``verdict/<name>``, ``verdict/<name>_lo``, ``verdict/<name>_hi``
  (:data:`KEY_METRICS`),

and logs the numeric ones plus ``verdict/code`` (index into ``names.VERDICTS``) to the Lightning logger at
``trainer.global_step`` (the CSV time series).

Stage detection from the npz keys: Stage 1 (LAQ) files hold ``codes`` + ``recon_mse`` / ``copy_mse`` /
``shuffled_mse`` per item (``head="stage1"``: copy ratio, Delta PSNR, codes used, perplexity, action NMI / probe R2
vs shuffled control and vs the untrained LAQ); Stage 2 files hold ``gt_codes`` with ``pred_codes`` (token head,
primary ``lift``) or ``pred_vectors`` (vector head, primary ``r2``, nearest-code metrics with ``codebook``).

Ordering: Lightning calls ``on_validation_end`` after the module's ``on_validation_epoch_end`` (where the npz is
written). The callback only evaluates a file whose step equals ``trainer.global_step``; otherwise (file missing,
predictions disabled, stale file) it logs one line and records nothing, so an old verdict is never re-stamped with a
new step. A metrics failure never kills training (logged as a warning).

Use outside training: :func:`verdict_for_file` (one npz -> (word, evidence, metrics)).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import lightning as L
import numpy as np

from .. import metrics as M
from ..metrics import names as n

log = logging.getLogger("hlrp.training")

PRED_DIR = "val_predictions"
_STEP_RE = re.compile(r"^step_(\d+)\.npz$")

#: Metrics copied (with ``_lo`` / ``_hi`` when present) into metrics.json / the time series, per head.
KEY_METRICS = {
    "stage1": [n.COPY_RATIO, n.DELTA_PSNR, n.PPL_PRED, n.CODES_USED, n.ACTION_NMI, n.ACTION_NMI_EXCESS,
               n.PROBE_R2, n.PROBE_R2_EXCESS, n.PROBE_R2_VS_UNTRAINED, n.ACTION_NMI_VS_UNTRAINED, n.N_ITEMS,
               n.N_EPISODES],
    "token": [n.LIFT, n.ACC, n.MAJORITY_ACC, n.SEQ_EXACT, n.JS, n.JS_EXCESS, n.UNIQUE_RATIO, n.PPL_RATIO,
              n.TOP1_SHARE_PRED, n.N_ITEMS, n.N_EPISODES],
    "vector": [n.R2, n.MSE, n.COSINE, n.VAR_RATIO, n.NEAREST_ACC, n.NEAREST_LIFT, n.UNIQUE_RATIO, n.PPL_RATIO,
               n.N_ITEMS, n.N_EPISODES],
}


def prediction_files(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``<run_dir>/val_predictions/step_XXXXXX.npz`` sorted by step (temp files skipped)."""
    d = Path(run_dir) / PRED_DIR
    out = []
    for p in d.glob("step_*.npz") if d.is_dir() else []:
        m = _STEP_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The npz as a dict, dropping empty placeholder arrays (e.g. ``pred_codes`` of shape (0, S) in flow mode)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return {k: v for k, v in arrays.items() if not (v.ndim > 0 and v.size == 0)}


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


def stage1_metrics(a: Mapping[str, np.ndarray], *, n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """Stage-1 verdict inputs from a LAQ npz (keys of ``laq_module._save_outputs``)."""
    codes = np.asarray(a["codes"]).astype(np.int64)
    codes = codes.reshape(len(codes), -1)                                              # (N, S)
    N = len(codes)
    ep = _episodes(a, N)
    out: dict[str, Any] = {n.HEAD: "stage1"}
    if all(k in a for k in ("recon_mse", "copy_mse", "shuffled_mse")):
        rec, cop, shu = (np.asarray(a[k], float).reshape(-1) for k in ("recon_mse", "copy_mse", "shuffled_mse"))
        dp = 10.0 * np.log10(np.maximum(shu, 1e-12) / np.maximum(rec, 1e-12))          # PSNR(true) - PSNR(shuffled)
        res = M.EpisodeResampler(ep, N, n_boot, seed)
        stats = {n.COPY_RATIO: lambda i: rec[i].sum() / cop[i].sum(), n.DELTA_PSNR: lambda i: dp[i].mean()}
        for name, ci in M.stats.bootstrap_many(stats, res).items():
            out.update(ci.as_dict(name))
    out[n.N_ITEMS] = N
    out[n.N_EPISODES] = len(np.unique(ep))
    K = int(codes.max()) + 1 if N else 1
    use = M.codebook_usage(codes.reshape(-1), K)
    out[n.PPL_PRED] = use["ppl"]
    out[n.CODES_USED] = use["n_used"]
    for s in range(codes.shape[1]):
        out[n.pos(n.CODES_USED, s)] = float(len(np.unique(codes[:, s])))
    actions = a.get("actions")
    if actions is not None and len(actions) == N and np.asarray(actions).reshape(N, -1).std(0).max() > 0:
        actions = np.asarray(actions, float).reshape(N, -1)
        feats = np.asarray(a["latents"], float).reshape(N, -1) if "latents" in a else None
        out.update(M.stage1_action_metrics(codes, actions, ep, features=feats, seed=seed))
        if "untrained_latents" in a and feats is not None:
            uf = np.asarray(a["untrained_latents"], float).reshape(N, -1)
            r2_u = M.linear_probe_r2(uf, actions, ep, seed)
            out["probe_r2_untrained"] = r2_u
            # point estimate only (no CI): the verdict then judges alignment by the excess over the shuffled control
            out[n.PROBE_R2_VS_UNTRAINED] = out[n.PROBE_R2] - r2_u
    return out


def stage2_metrics(a: Mapping[str, np.ndarray], *, n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """Stage-2 metrics from a policy npz (``gt_codes``, ``pred_codes`` or ``pred_vectors``, ``gt_vectors``,
    ``episode_ids``, ``codebook``; optional ``ablation_<name>_codes`` / ``_vectors``)."""
    head = detect_head(a)
    K = int(a["codebook"].shape[0]) if "codebook" in a else None
    N = len(a["gt_codes"]) if "gt_codes" in a else len(a["gt_vectors"])
    ep = _episodes(a, N)
    if head == "token":
        abl = {k[len("ablation_"):-len("_codes")]: v for k, v in a.items()
               if k.startswith("ablation_") and k.endswith("_codes")}
        out = M.evaluate_codes(a["gt_codes"], a.get("pred_codes"), pred_logits=a.get("pred_logits"), n_codes=K,
                               episode_ids=ep, ablations=abl or None, n_boot=n_boot, seed=seed)
        if "gt_vectors" in a and "pred_vectors" in a:
            vec = M.evaluate_vectors(a["gt_vectors"], a["pred_vectors"], episode_ids=ep,
                                     train_mean=a.get("train_mean"), n_boot=n_boot, seed=seed)
            out.update({k: v for k, v in vec.items() if k not in out})
        return out
    abl = {k[len("ablation_"):-len("_vectors")]: v for k, v in a.items()
           if k.startswith("ablation_") and k.endswith("_vectors")}
    return M.evaluate_vectors(a["gt_vectors"], a["pred_vectors"], episode_ids=ep, train_mean=a.get("train_mean"),
                              codebook=a.get("codebook"), gt_codes=a.get("gt_codes"), ablations=abl or None,
                              n_boot=n_boot, seed=seed)


def evaluate_arrays(a: Mapping[str, np.ndarray], *, n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """Stage-appropriate metrics (``head`` key set) of one validation's arrays."""
    if detect_head(a) == "stage1":
        return stage1_metrics(a, n_boot=n_boot, seed=seed)
    return stage2_metrics(a, n_boot=n_boot, seed=seed)


def thresholds_from_config(v: Any) -> M.VerdictThresholds:
    """``training.verdict`` (``VerdictConfig``) -> ``VerdictThresholds``; ``random_tolerance`` applies to every
    primary metric (lift, R^2, information gain)."""
    fields = {k: getattr(v, k) for k in M.VerdictThresholds.__dataclass_fields__ if hasattr(v, k)}
    fields["random_tolerance"] = {n.LIFT: float(v.random_tolerance), n.R2: float(v.random_tolerance),
                                  n.IG: float(v.random_tolerance)}
    return M.VerdictThresholds(**fields)


def verdict_for_file(path: str | Path, *, n_boot: int = 500, seed: int = 0,
                     extra: Optional[Mapping[str, Any]] = None,
                     thresholds: Optional[M.VerdictThresholds] = None) -> tuple[str, str, dict[str, Any]]:
    """(word, evidence, metrics) of one ``val_predictions/step_XXXXXX.npz``. ``extra`` adds verdict inputs
    (e.g. ``replaced_rising``)."""
    m = evaluate_arrays(load_arrays(path), n_boot=n_boot, seed=seed)
    m.update(extra or {})
    word, evidence, _ = M.verdict(m, head=m.get(n.HEAD), thresholds=thresholds)
    return word, evidence, m


def record_items(word: str, evidence: str, m: Mapping[str, Any], step: int) -> dict[str, Any]:
    """The ``metrics.json`` entries: ``verdict``, ``verdict_evidence``, ``verdict/step``, ``verdict/code`` and the
    head's key metrics with CI bounds under ``verdict/``."""
    head = str(m.get(n.HEAD, "token"))
    out: dict[str, Any] = {n.VERDICT: word, n.VERDICT_EVIDENCE: evidence, "verdict/step": int(step),
                           "verdict/code": n.VERDICTS.index(word), "verdict/head": head}
    for name in KEY_METRICS.get(head, []):
        for key in (name, name + n.LO, name + n.HI):
            if key in m:
                try:
                    v = float(m[key])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(v):
                    out[f"verdict/{key}"] = v
    return out


class VerdictCallback(L.Callback):
    """After each validation (global rank 0): metrics + verdict from this validation's npz into ``metrics.json``
    and the logger (module docstring).

    Args:
        run: The run (``dir``, ``record``, ``log``).
        n_boot: Episode-bootstrap resamples per CI.
        seed: Bootstrap / probe-split seed (fixed, so every validation is scored the same way).
        thresholds: Verdict thresholds (default ``VerdictThresholds()``).
    """

    def __init__(self, run: Any, n_boot: int = 500, seed: int = 0,
                 thresholds: Optional[M.VerdictThresholds] = None):
        self.run, self.n_boot, self.seed, self.thresholds = run, int(n_boot), int(seed), thresholds
        self.last: Optional[dict[str, Any]] = None
        self._replaced: list[tuple[float, float]] = []     # (events, last_replaced) per validation (Stage 1)

    def _say(self, msg: str, level: int = logging.INFO) -> None:
        lg = getattr(self.run, "log", None) or log
        lg.log(level, msg)

    def _replaced_rising(self, pl_module: Any) -> dict[str, float]:
        rep = getattr(pl_module, "replacement", None)
        if not isinstance(rep, Mapping) or "events" not in rep:
            return {}
        ev, last = float(rep.get("events", 0)), float(rep.get("last_replaced", 0))
        if not self._replaced or self._replaced[-1][0] != ev:
            self._replaced.append((ev, last))
        r = [x[1] for x in self._replaced[-3:]]
        return {n.REPLACED_RISING: float(len(r) == 3 and r[0] < r[1] < r[2])}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        step = int(trainer.global_step)
        files = prediction_files(self.run.dir)
        if not files:
            self._say(f"[Verdict] step={step}: no {PRED_DIR}/step_*.npz in the run; verdict skipped")
            return
        f_step, path = files[-1]
        if f_step != step:
            self._say(f"[Verdict] step={step}: newest predictions are from step {f_step}; verdict skipped")
            return
        try:
            word, evidence, m = verdict_for_file(path, n_boot=self.n_boot, seed=self.seed,
                                                 extra=self._replaced_rising(pl_module), thresholds=self.thresholds)
        except Exception as e:  # noqa: BLE001 - a metric failure must never kill training
            self._say(f"[Verdict] step={step}: failed on {path.name}: {type(e).__name__}: {e}", logging.WARNING)
            return
        items = record_items(word, evidence, m, step)
        self.last = items
        self.run.record(items)
        if trainer.logger is not None:
            nums = {k: float(v) for k, v in items.items()
                    if k.startswith("verdict/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
            trainer.logger.log_metrics(nums, step=step)
        self._say(f"[Verdict] step={step} {evidence}")
