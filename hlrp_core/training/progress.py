"""Training progress (docs/FEEDBACK.md section 3): which progress the shared trainer shows, and the throughput column.

- ``bar`` (an interactive kernel): Lightning's ``TQDMProgressBar`` (``tqdm.auto``: the notebook widget bar).
- ``line`` (papermill, SLURM, CI): :class:`ProgressLineCallback` logs ``[Progress] step 250/1500 (17%) | 2.41
  steps/s | ETA 8m39s | elapsed 1m43s | loss 0.0123`` every ``logging.progress_every_s`` seconds into the run log
  (``unified.log`` and the streamed cell output), plus one line per validation with its duration.
- :class:`ThroughputCallback` (always) logs ``perf/train_steps_per_s`` on every logged step, so the time series and
  ``figures/curves.png`` carry throughput.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import lightning as L

from .. import progress as P

log = logging.getLogger("hlrp.training")
THROUGHPUT = "perf/train_steps_per_s"


class ThroughputCallback(L.Callback):
    """``perf/train_steps_per_s`` over the last ``every_n_steps`` optimizer steps (validation time excluded)."""

    def __init__(self, every_n_steps: int = 10):
        self.every = max(1, int(every_n_steps))
        self._t: Optional[float] = None
        self._step = 0
        self._paused = 0.0
        self._val_t0: Optional[float] = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._t, self._step, self._paused = time.monotonic(), int(trainer.global_step), 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_t0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_t0 is not None:
            self._paused += time.monotonic() - self._val_t0
            self._val_t0 = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if self._t is None or step % self.every or step == self._step:
            return
        now = time.monotonic()
        dt = now - self._t - self._paused
        if dt > 0:
            pl_module.log(THROUGHPUT, (step - self._step) / dt, on_step=True, on_epoch=False, batch_size=1)
        self._t, self._step, self._paused = now, step, 0.0


class ProgressLineCallback(L.Callback):
    """The periodic one-line progress of a headless training (global rank 0 only)."""

    def __init__(self, run: Any, every_s: float = 30.0):
        self.run, self.every_s = run, float(every_s)
        self.rep: Optional[P.LineReporter] = None
        self._val_t0: Optional[float] = None

    def _log(self) -> logging.Logger:
        return getattr(self.run, "log", None) or log

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        total = int(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else None
        self.rep = P.LineReporter("step", total, self.every_s, self._log(), unit="steps",
                                  start=int(trainer.global_step))
        self._log().info("[Progress] training from step %d to %s (a line every %.0f s)", trainer.global_step,
                         total, self.every_s)

    def _extra(self, trainer) -> str:
        loss = trainer.callback_metrics.get("train/loss")
        try:
            return f"loss {float(loss):.4g}" if loss is not None else ""
        except (TypeError, ValueError):
            return ""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.rep is not None:
            self.rep.update(int(trainer.global_step), self._extra(trainer))

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self._val_t0 = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_t0 is None:
            return
        self._log().info("[Progress] validation at step %d took %.1f s", trainer.global_step,
                         time.monotonic() - self._val_t0)
        self._val_t0 = None

    def on_train_end(self, trainer, pl_module) -> None:
        if self.rep is not None:
            self.rep.close(self._extra(trainer))
            self.rep = None


def progress_setup(cfg: Any, run: Any) -> tuple[bool, list[L.Callback]]:
    """``(enable_progress_bar, callbacks)`` for ``build_trainer`` from ``logging.progress``."""
    lg = cfg.logging
    mode = P.mode(lg.progress)
    callbacks: list[L.Callback] = [ThroughputCallback(cfg.training.log_every_n_steps)]
    if mode == "bar":
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=5))
        return True, callbacks
    if mode == "line":
        callbacks.append(ProgressLineCallback(run, lg.progress_every_s))
    return False, callbacks
