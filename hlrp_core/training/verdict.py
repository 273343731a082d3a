"""The "is this learning?" verdict at every validation.

``VerdictCallback(run, settings)`` runs after each validation on global rank 0. It scores the run's newest
``val_predictions/step_XXXXXX.npz`` (written by the Stage-1 or Stage-2 module in the same validation) with
:func:`hlrp_core.metrics.predictions.score_latest` -- the same reader and scorer notebook 30 and the dashboard use,
so they give the same verdict for the same checkpoint -- and records into ``metrics.json`` (``run.record``):

- ``verdict`` (``learning`` / ``collapsed`` / ``random-like`` / ``inconclusive``), ``verdict_evidence`` (one line),
  ``verdict/step`` (the validation step the verdict belongs to);
- the key metrics with their CI bounds under ``verdict/<name>``, ``verdict/<name>_lo``, ``verdict/<name>_hi``
  (:data:`hlrp_core.metrics.predictions.KEY_METRICS`),

and logs the numeric ones plus ``verdict/code`` (index into ``names.VERDICTS``) to the Lightning logger at
``trainer.global_step`` (the CSV time series).

Ordering: Lightning calls ``on_validation_end`` after the module's ``on_validation_epoch_end`` (where the npz is
written). The callback only evaluates a file whose step equals ``trainer.global_step``; otherwise (file missing,
predictions disabled, stale file) it logs one line and records nothing, so an old verdict is never re-stamped with a
new step. A metrics failure never kills training (logged as a warning).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import lightning as L

from ..metrics import predictions as P
from ..metrics.predictions import (PRED_DIR, KEY_METRICS, VerdictSettings, prediction_files,  # noqa: F401
                                   settings_from_config, thresholds_from_config)

log = logging.getLogger("hlrp.training")


class VerdictCallback(L.Callback):
    """After each validation (global rank 0): the newest checkpoint scored by
    :func:`hlrp_core.metrics.predictions.score_latest` into ``metrics.json`` and the logger (module docstring).

    Args:
        run: The run (``dir``, ``record``, ``log``).
        settings: Bootstrap count, seed and thresholds (``settings_from_config(cfg.training.verdict)``).
    """

    def __init__(self, run: Any, settings: Optional[VerdictSettings] = None):
        self.run, self.settings = run, settings or VerdictSettings()
        self.last: Optional[dict[str, Any]] = None

    def _say(self, msg: str, level: int = logging.INFO) -> None:
        lg = getattr(self.run, "log", None) or log
        lg.log(level, msg)

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
            row = P.score_latest(self.run.dir, self.settings)
        except Exception as e:  # noqa: BLE001 - a metric failure must never kill training
            self._say(f"[Verdict] step={step}: failed on {path.name}: {type(e).__name__}: {e}", logging.WARNING)
            return
        items = P.record_items(row, step)
        evidence = items["verdict_evidence"]
        self.last = items
        self.run.record(items)
        if trainer.logger is not None:
            nums = {k: float(v) for k, v in items.items()
                    if k.startswith("verdict/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
            trainer.logger.log_metrics(nums, step=step)
        self._say(f"[Verdict] step={step} {evidence}")
