"""Stopping a training without losing work or misreporting it (docs/ROBUSTNESS.md).

``RunGuard`` (one Lightning callback, added by ``build_trainer``) turns every early end into a checkpoint plus an
honest ``status``:

- **stop requests** -- SIGINT/SIGTERM (``interrupted``) or SIGUSR1 (``time_limit``, what a SLURM ``--signal`` lead
  sends) to the training process, the RAM guard (``ram_guard``), or the file ``<run>/stop_request`` (how ``hlrp
  run`` and the SLURM job hand a signal to the papermill kernel, which never receives the job's signals itself).
  At the next step end the guard saves ``ckpt/last.ckpt`` at the current step and stops the fit; the caller
  (``finish_fit``) marks the run ``FAILED: <kind> at step N (resumable)`` and raises ``RunStopped``;
- **divergence** -- a non-finite training loss, or one above ``training.divergence.max_loss``: the fit stops at once
  (no checkpoint of the diverged weights, no artifact), ``diverged_step``/``diverged_loss`` are recorded (``nan`` as
  the string ``"nan"``) and the run is ``FAILED: diverged at step N``; ``TrainingDiverged`` is raised.

Under DDP each decision is all-reduced (``reduce_boolean_decision``) so every rank stops at the same step.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L

from ..stopping import SIGNAL_KIND, STOP_FILE, clear_stop_request, read_stop_request, request_stop  # noqa: F401

log = logging.getLogger("hlrp.training")
KINDS = {"interrupted": "interrupted", "time_limit": "time limit signal", "ram_guard": "ram_guard stop"}


class RunStopped(RuntimeError):
    """The fit stopped early on request with a checkpoint; ``str()`` is the status reason."""

    def __init__(self, reason: str, kind: str = "interrupted", step: int = 0, checkpoint: str = ""):
        super().__init__(reason)
        self.kind, self.step, self.checkpoint = kind, step, checkpoint


class TrainingDiverged(RuntimeError):
    """The loss became non-finite (or exploded); nothing from the diverged step on was saved."""

    def __init__(self, reason: str, step: int = 0, value: float = math.nan):
        super().__init__(reason)
        self.step, self.value = step, value


def _loss_of(outputs: Any) -> Optional[float]:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if loss is None:
        return None
    try:
        return float(loss.detach().float().item() if hasattr(loss, "detach") else loss)
    except (TypeError, ValueError, RuntimeError):
        return None


def text(value: float) -> str:
    """A float for metrics.json that keeps NaN/inf visible (strict JSON has neither)."""
    return repr(float(value)) if not math.isfinite(value) else value  # type: ignore[return-value]


class RunGuard(L.Callback):
    """Stop requests -> checkpoint + stop; divergence -> stop without saving (see the module docstring)."""

    POLL_S = 1.0  # one stat of the stop_request file per second: cheap on a shared file system at any step rate

    def __init__(self, run: Any, max_loss: float = 0.0, poll_s: Optional[float] = None, handle_signals: bool = True):
        self.run, self.max_loss, self.handle_signals = run, float(max_loss or 0.0), handle_signals
        self.poll_s = self.POLL_S if poll_s is None else poll_s
        self.pending: Optional[tuple[str, str]] = None
        self.stopped: Optional[RunStopped] = None
        self.diverged: Optional[TrainingDiverged] = None
        self._old: dict = {}
        self._last_poll = 0.0
        self._signals = 0

    # ---------------------------------------------------------------- requests
    def request(self, kind: str, detail: str = "") -> None:
        if self.pending is None:
            self.pending = (kind, detail)

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self._signals > 1 and signum == signal.SIGINT:  # a second Ctrl-C: the user means it
            self._restore()
            raise KeyboardInterrupt
        self.request(SIGNAL_KIND.get(signum, "interrupted"), f"signal {signal.Signals(signum).name}")

    def _install(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNAL_KIND:
            try:
                self._old[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # pragma: no cover - not the main interpreter thread
                pass

    def _restore(self) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError, TypeError):  # pragma: no cover
                pass
        self._old = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self._install()

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _poll_file(self) -> None:
        now = time.monotonic()
        if self.pending is not None or self.run is None or now - self._last_poll < self.poll_s:
            return
        self._last_poll = now
        req = read_stop_request(self.run.dir)
        if req:
            self.request(str(req.get("kind") or "interrupted"), str(req.get("detail") or "stop_request file"))

    def _agree(self, trainer, flag: bool) -> bool:
        if getattr(trainer, "world_size", 1) > 1:
            return bool(trainer.strategy.reduce_boolean_decision(flag, all=False))
        return flag

    # ---------------------------------------------------------------- the step end
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        loss = _loss_of(outputs)
        bad = loss is not None and (not math.isfinite(loss) or (self.max_loss > 0 and loss > self.max_loss))
        if self._agree(trainer, bad):
            value = loss if loss is not None else math.nan
            rule = "non-finite" if not math.isfinite(value) else f"above training.divergence.max_loss={self.max_loss}"
            reason = (f"diverged at step {step}: train loss {value!r} is {rule}; no artifact written, the last "
                      "finite checkpoint is kept; lower training.lr or raise training.warmup_steps")
            self.diverged = TrainingDiverged(reason, step, value)
            if self.run is not None:
                self.run.record({"diverged_step": step, "diverged_loss": text(value)})
            raise self.diverged
        self._poll_file()
        if not self._agree(trainer, self.pending is not None):
            return
        kind, detail = self.pending or ("interrupted", "another rank")
        ckpt = Path(self.run.dir) / "ckpt" / "last.ckpt" if self.run is not None else None
        if ckpt is not None and trainer.checkpoint_callback is not None:
            cb = trainer.checkpoint_callback
            # set before the save, so the checkpoint carries it: ModelCheckpoint's own save_last (also in the
            # resumed segment) must overwrite this file, not write a last-v1.ckpt beside it
            cb.last_model_path = str(ckpt)
            # and must not save it again at this step: its on_train_end save_last (when it has saved nothing yet)
            # would replace the mid-epoch state with an ended epoch, and the resumed run would log epoch 1
            # (what ModelCheckpoint._save_checkpoint records, lightning 2.6.6)
            cb._last_global_step_saved, cb._last_checkpoint_saved = step, str(ckpt)
            trainer.save_checkpoint(str(ckpt))
        reason = (f"{KINDS.get(kind, kind)} at step {step} (resumable): {detail}; checkpoint "
                  f"{ckpt if ckpt is not None else '(none)'}; continue with `hlrp resume <run dir>`")
        self.stopped = RunStopped(reason, kind, step, str(ckpt or ""))
        log.warning(reason)
        trainer.should_stop = True


def guard_of(trainer: Any) -> Optional[RunGuard]:
    return next((c for c in trainer.callbacks if isinstance(c, RunGuard)), None)


def fail_run(run: Any, reason: str, extra: Optional[dict] = None, step: Optional[int] = None) -> None:
    """Record ``extra`` and mark ``run`` (a ``run_handle.RunHandle``) FAILED with ``reason``."""
    if run is None:
        return
    try:
        if extra:
            run.record(extra)
    except OSError:  # a full disk may refuse metrics.json; the status below is still written (in place)
        pass
    finally:
        run.fail(reason, step=step)


def finish_fit(trainer: Any, run: Any) -> None:
    """After ``trainer.fit``: a stop request -> FAILED (resumable) + ``RunStopped``; otherwise nothing."""
    guard = guard_of(trainer)
    if guard is None or guard.stopped is None:
        return
    stop = guard.stopped
    fail_run(run, str(stop), {"stopped_reason": str(stop), "stopped_step": stop.step, "stopped_kind": stop.kind},
             step=stop.step)
    raise stop
