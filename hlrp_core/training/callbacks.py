"""Lightning callbacks shared by both stages: heartbeat, metrics.json writer, RAM guard, host-memory columns in the
time series, the batch-mix logger, and the copy of the dataset statistics the loader normalised with.

Each takes the ``run`` object of ``hlrp_core.runs`` (anything with ``dir``, ``log``, ``record``, ``heartbeat``).
"""

from __future__ import annotations

import collections
import logging
import math
import os
from typing import Any, Optional

import lightning as L
import psutil

log = logging.getLogger("hlrp.training")

#: The run directory's copy of the per-dataset statistics the loader used (docs/data_at_scale.md); artifacts embed it.
STATISTICS_FILE = "dataset_statistics.json"


def run_statistics(run_dir: str | os.PathLike) -> dict:
    """``{dataset: statistics}`` the run's loader normalised with ({} when ``data.preprocess.normalize=none``)."""
    from ..io import read_json

    return read_json(os.path.join(run_dir, STATISTICS_FILE), {}) or {}


def _scalars(metrics: dict) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v.item() if hasattr(v, "item") else v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


def mem_available_mb() -> float:
    """What this process may still allocate, in MB: MemAvailable or its memory cgroup's headroom, the smaller."""
    from ..sysmem import available_bytes

    return available_bytes() / 2**20


def host_rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


class HeartbeatCallback(L.Callback):
    """Touch the run's ``status`` every ``every_n_steps`` optimizer steps (a stale mtime = a dead run)."""

    def __init__(self, run: Any, every_n_steps: int = 10):
        self.run, self.every = run, max(1, every_n_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self.run.heartbeat()


class HostMemoryCallback(L.Callback):
    """Log ``sys/host_rss_mb``, ``sys/mem_available_mb`` (and GPU memory when present) on every logged step, so the
    CSV time series keeps a memory trail even if the kernel is OOM-killed."""

    def __init__(self, every_n_steps: int = 10):
        self.every = max(1, every_n_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every:
            return
        vals = {"sys/host_rss_mb": host_rss_mb(), "sys/mem_available_mb": mem_available_mb()}
        import torch

        if torch.cuda.is_available():
            vals["sys/gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        pl_module.log_dict(vals, on_step=True, on_epoch=False)


class MetricsJsonCallback(L.Callback):
    """After every validation, merge the latest ``val/*`` (and ``train/*``) scalars into the run's ``metrics.json``
    via ``run.record``, plus ``global_step``. A module may expose ``last_val_metrics`` (dict) with extra scalars."""

    def __init__(self, run: Any, prefixes: tuple[str, ...] = ("val/", "train/", "codebook/")):
        self.run, self.prefixes = run, prefixes

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith(self.prefixes)}
        metrics.update(_scalars(getattr(pl_module, "last_val_metrics", {}) or {}))
        metrics["global_step"] = trainer.global_step
        self.run.record(metrics)


class RamGuardCallback(L.Callback):
    """Stop training when the memory this process may still use (the smaller of MemAvailable and its memory
    cgroup's headroom, ``hlrp_core.sysmem``) falls below ``min_available_mb``; the reason names the limit and the
    usage and is recorded in ``metrics.json`` as ``stopped_reason`` / ``stopped_step``. With a ``stopper`` (the
    ``RunGuard``) the stop is a checkpointed, resumable FAILED stop; without one ``trainer.should_stop`` is set.
    0 disables the guard."""

    def __init__(self, run: Any, min_available_mb: int, check_every_n_steps: int = 1, stopper: Any = None):
        self.run, self.min_mb, self.every = run, min_available_mb, max(1, check_every_n_steps)
        self.stopper = stopper
        self.stopped_reason: Optional[str] = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.min_mb <= 0 or trainer.global_step % self.every or self.stopped_reason:
            return
        from ..sysmem import headroom

        room = headroom()
        avail = room.available / 2**20
        if avail < self.min_mb:
            self.stopped_reason = (f"ram_guard: {avail:.0f} MB left < training.ram_guard.min_available_mb="
                                   f"{self.min_mb} at step {trainer.global_step} ({room.describe()}); lower "
                                   "data.loader.batch_size or free memory, then resume from ckpt/last.ckpt")
            log.error(self.stopped_reason)
            if self.run is not None:
                self.run.log.error(self.stopped_reason)
                self.run.record({"stopped_reason": self.stopped_reason, "stopped_step": trainer.global_step})
            if self.stopper is not None:
                self.stopper.request("ram_guard", self.stopped_reason)
            else:
                trainer.should_stop = True


class BatchMixCallback(L.Callback):
    """Every N steps log ``[Train][BatchMix] step=... name=count ...`` from ``batch["dataset_name"]`` (0 = off)."""

    def __init__(self, run: Any, every_n_steps: int):
        self.run, self.every = run, every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every <= 0 or trainer.global_step % self.every or not isinstance(batch, dict):
            return
        names = batch.get("dataset_name")
        if not names:
            return
        counts = collections.Counter(names)
        line = f"[Train][BatchMix] step={trainer.global_step} " + " ".join(
            f"{n}={c}" for n, c in counts.most_common())
        (self.run.log if self.run is not None else log).info(line)


class DatasetStatisticsCallback(L.Callback):
    """At fit start, write the loader's ``{dataset: statistics}`` (``data.preprocess.normalize``) to the run
    directory, so that a run, and the artifacts made from it, can always undo the normalisation it trained with."""

    def __init__(self, run: Any):
        self.run = run

    def on_fit_start(self, trainer, pl_module) -> None:
        loader = getattr(getattr(trainer, "datamodule", None), "loader", None)
        stats = getattr(loader, "statistics", None)
        if stats and trainer.is_global_zero:
            from ..io import atomic_write_json

            atomic_write_json(os.path.join(self.run.dir, STATISTICS_FILE), stats)
            self.run.log.info("dataset statistics of %s -> %s", ", ".join(sorted(stats)), STATISTICS_FILE)
