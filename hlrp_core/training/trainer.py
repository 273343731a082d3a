"""The Lightning trainer factory and the fit loop shared by Stage 1 and Stage 2 (``fit_module``; the wings' entry points
are ``laq.fit.fit_laq`` and ``policy.fit.fit_policy``).

``build_trainer(cfg, run)``: precision from ``training.precision=auto`` (bf16-mixed on GPU, 32-true on CPU), the
progress of ``logging.progress`` (widget bar in a kernel, one-line progress headless), wandb / TensorBoard loggers
when configured (``training/loggers.py``), ``figures/curves.png`` at every validation, ``LightningEnvironment`` (a notebook kernel must not be mistaken for a SLURM/torchrun worker), a
CSV time series ``<run>/timeseries.csv`` (with host RSS per logged step), ``<run>/ckpt/last.ckpt`` plus a checkpoint
every ``training.checkpoint.every_n_train_steps``, step-based validation every
``training.validation.check_interval``, gradient clipping, and the shared callbacks (heartbeat, metrics.json,
RAM guard, batch mix).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import LightningEnvironment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..storage import OutputWriteError
from .loggers import CurvesCallback, LoggerBridge, close_loggers, extra_loggers
from .progress import progress_setup
from .callbacks import (BatchMixCallback, DatasetStatisticsCallback, HeartbeatCallback, HostMemoryCallback,
                        MetricsJsonCallback, RamGuardCallback)
from .interrupts import RunGuard, TrainingDiverged, fail_run, finish_fit
from .resume import prepare_resume
from .run_handle import RunHandle
from .safe_checkpoint import add_checkpoint_io
from .verdict import VerdictCallback, settings_from_config

log = logging.getLogger("hlrp.training")
TIMESERIES = "timeseries.csv"
CKPT_DIR = "ckpt"


def resolve_accelerator(training: Any) -> str:
    acc = training.accelerator
    if acc == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if acc == "cuda" else acc


def resolve_precision(training: Any, accelerator: Optional[str] = None) -> str:
    """``auto`` -> ``bf16-mixed`` on GPU, ``32-true`` on CPU; explicit values pass through (``32`` -> ``32-true``)."""
    accelerator = accelerator or resolve_accelerator(training)
    if training.precision == "auto":
        return "bf16-mixed" if accelerator == "gpu" else "32-true"
    return "32-true" if training.precision in ("32", 32) else training.precision


def timeseries_logger(run_dir: str | os.PathLike) -> CSVLogger:
    """A CSVLogger writing ``<run_dir>/timeseries.csv`` (one row per logged step)."""
    logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    if rank_zero_only.rank == 0:  # other DDP ranks (srun) hold Lightning's dummy experiment and write nothing
        logger.experiment.metrics_file_path = os.path.join(logger.experiment.log_dir, TIMESERIES)
        preload_header(logger.experiment)  # a resumed segment appends to the file (training/resume.py)
    return logger


def preload_header(writer: Any) -> None:
    """Give Lightning's CSV writer the columns of an existing time series, so it appends (and widens the header
    when new columns appear) instead of failing on rows with columns it has not seen."""
    import csv

    path = Path(writer.metrics_file_path)
    if path.exists():
        with open(path, newline="") as fh:
            writer.metrics_keys = sorted(next(csv.reader(fh), []))


def checkpoint_callback(run_dir: str | os.PathLike, training: Any) -> ModelCheckpoint:
    ck = training.checkpoint
    return ModelCheckpoint(dirpath=str(Path(run_dir) / CKPT_DIR), filename="step_{step:06d}",
                           auto_insert_metric_name=False, every_n_train_steps=ck.every_n_train_steps,
                           save_top_k=ck.keep_last_n if ck.keep_last_n >= 0 else -1, monitor="step", mode="max",
                           save_last=True, save_on_train_epoch_end=False)


def build_trainer(cfg: Any, run: RunHandle, extra_callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """The shared trainer. ``run`` provides ``dir`` (time series and checkpoints go there) and the recording hooks;
    ``overrides`` are passed to ``L.Trainer`` last (tests use e.g. ``enable_checkpointing=False``)."""
    t = cfg.training
    if t.num_threads > 0:
        torch.set_num_threads(t.num_threads)
    accelerator = resolve_accelerator(t)
    if t.max_epochs not in (-1, None):
        log.warning("training.max_epochs=%s is ignored: runs are step-limited (training.max_steps)", t.max_epochs)
    guard = RunGuard(run, max_loss=t.divergence.max_loss)  # stop requests, signals, divergence (interrupts.py)
    callbacks: list[L.Callback] = [
        checkpoint_callback(run.dir, t),
        HeartbeatCallback(run, t.heartbeat_every_n_steps),
        HostMemoryCallback(t.log_every_n_steps),
        MetricsJsonCallback(run),
        RamGuardCallback(run, t.ram_guard.min_available_mb, stopper=guard),
        BatchMixCallback(run, t.dataset_usage_logger.log_batch_composition_every_n_steps),
        DatasetStatisticsCallback(run),
        VerdictCallback(run, settings_from_config(t.verdict)),
        *extra_callbacks,
        guard,
    ]
    # feedback (docs/FEEDBACK.md): progress bar or line, wandb / TensorBoard beside the CSV, figures/curves.png
    show_bar, progress_callbacks = progress_setup(cfg, run)
    callbacks += [*progress_callbacks, LoggerBridge(cfg), *([CurvesCallback(run)] if cfg.logging.curves else [])]
    kwargs: dict[str, Any] = dict(
        accelerator=accelerator, devices=t.devices if accelerator == "gpu" else 1, num_nodes=t.num_nodes,
        precision=resolve_precision(t, accelerator), max_steps=t.max_steps, max_epochs=-1,
        val_check_interval=t.validation.check_interval, check_val_every_n_epoch=None,
        limit_val_batches=t.validation.limit_batches or 1.0, num_sanity_val_steps=t.validation.num_sanity_val_steps,
        gradient_clip_val=t.gradient_clip_val or None, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=show_bar, enable_model_summary=False,
        logger=[timeseries_logger(run.dir), *extra_loggers(cfg, run)],
        callbacks=callbacks, default_root_dir=str(run.dir),
        profiler="simple" if t.profiler.enabled else None,
    )
    if t.num_nodes <= 1 and (accelerator == "cpu" or t.devices == 1):
        kwargs["plugins"] = [LightningEnvironment()]
    kwargs.update(overrides)
    kwargs["plugins"] = add_checkpoint_io(kwargs.get("plugins"))  # atomic, finite-checked checkpoints
    return L.Trainer(**kwargs)


def build_datamodule(cfg: Any):
    """The data adapter's LightningDataModule (``hlrp_core.data.build_datamodule``)."""
    from ..data import build_datamodule as _build

    return _build(cfg)


@dataclasses.dataclass
class Fit:
    """What ``fit_module`` hands back to a wing's fit function: the trainer, the data module, the RAM guard's stop
    reason (None when the fit reached ``training.max_steps``) and the wall time of the fit plus its final validation."""

    trainer: L.Trainer
    datamodule: Any
    stopped: Optional[str]
    wall_s: float

    def close(self, run: RunHandle) -> None:
        """The end step of both wings: finish the loggers (wandb prints `wandb sync`; final figures/curves.png),
        then release the data module's workers."""
        close_loggers(self.trainer, run)
        if hasattr(self.datamodule, "teardown"):
            try:
                self.datamodule.teardown("fit")
            except Exception:  # noqa: BLE001 - a failed release must not fail a finished fit
                pass


def fit_module(cfg: Any, run: RunHandle, module: L.LightningModule, datamodule: Any = None,
               extra_callbacks: Sequence[L.Callback] = (), **trainer_overrides: Any) -> Fit:
    """The fit both wings share (``laq.fit.fit_laq``, ``policy.fit.fit_policy``): ``training.resume_from`` checked
    against ``module`` before any data loads (``resume.prepare_resume``), the data module (``datamodule`` or the
    configured one), the shared trainer, ``trainer.fit`` (divergence or a write error -> FAILED with the reason), a
    stop request -> FAILED + ``RunStopped``, and a validation at the final step when the last one was earlier (and
    the RAM guard did not stop the fit)."""
    ckpt_path = prepare_resume(module, cfg, run)  # raises before any data exists
    dm = datamodule if datamodule is not None else build_datamodule(cfg)
    trainer = build_trainer(cfg, run, extra_callbacks, **trainer_overrides)
    t0 = time.time()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    except (TrainingDiverged, OutputWriteError) as exc:  # FAILED with the reason, not a bare traceback
        fail_run(run, str(exc))
        raise
    finish_fit(trainer, run)  # a stop request (signal, RAM guard, stop_request file) -> FAILED + RunStopped
    stopped = getattr(next((c for c in trainer.callbacks if isinstance(c, RamGuardCallback)), None),
                      "stopped_reason", None)
    if module.last_val_step != trainer.global_step and not stopped:
        trainer.validate(module, datamodule=dm, verbose=False)
    return Fit(trainer, dm, stopped, time.time() - t0)
