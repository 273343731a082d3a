"""``training.*``: the Lightning loop shared by Stage 1 (LAQ) and Stage 2 (policy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import check, check_choice
from .verdict import VerdictRules


@dataclass
class VisualizationConfig:
    """Sample panels (PNG + JSON records).

    Args:
        enabled: Write sample panels at each validation (val) / every ``every_n_steps`` (train).
        every_n_steps: Train panels only: how often, in optimizer steps.
        num_samples: Samples per panel set.
    """

    enabled: bool = False
    every_n_steps: int = 500
    num_samples: int = 8


@dataclass
class ValidationConfig:
    """Step-based validation on the fixed, cached validation set.

    Args:
        check_interval: Validate every N optimizer steps (and once at the end).
        limit_batches: Validation batches per validation (0 = the whole fixed set).
        num_sanity_val_steps: Lightning sanity batches before training (0 off; the fixed val set makes it cheap).
        visualization: Validation sample panels.
        save_predictions: Stage 1: write ``val_predictions/step_XXXXXX.npz`` (codes, latents, actions, episode ids)
            at each validation for the analysis notebooks.
        figures: Stage 1: save the reconstruction grid, code-usage histogram and code-vs-action scatter at each
            validation (``figures/*.png``, overwritten, so the run dir holds the latest).
        untrained_baseline: Stage 1: also measure NMI / probe R2 on a randomly initialised model of the same shape
            (the ``val/*_untrained`` keys; docs/METRICS.md §5).
    """

    check_interval: int = 500
    limit_batches: int = 0
    num_sanity_val_steps: int = 0
    save_predictions: bool = True
    figures: bool = True
    untrained_baseline: bool = True
    visualization: VisualizationConfig = field(default_factory=VisualizationConfig)


@dataclass
class CheckpointConfig:
    """Args:
        every_n_train_steps: Periodic checkpoint interval (``last.ckpt`` is always written too).
        keep_last_n: Periodic checkpoints kept (-1 keeps all).
    """

    every_n_train_steps: int = 1000
    keep_last_n: int = -1


@dataclass
class ProfilerConfig:
    """Args:
        enabled: Lightning's simple profiler, report saved in the run directory.
    """

    enabled: bool = False


@dataclass
class DatasetUsageLoggerConfig:
    """Args:
        log_batch_composition_every_n_steps: Print ``[Train][BatchMix] step=... name=count`` every N steps (0 off).
    """

    log_batch_composition_every_n_steps: int = 0


@dataclass
class RamGuardConfig:
    """Stop a run cleanly, with a recorded reason, before the kernel OOM-killer does.

    Args:
        min_available_mb: Stop when the memory left (MemAvailable, or the memory cgroup's limit minus usage when
            smaller) falls below this (0 = off).
        interval_s: How often the guard samples memory.
    """

    min_available_mb: int = 0
    interval_s: float = 1.0


@dataclass
class DivergenceConfig:
    """When a training counts as diverged (stopped FAILED, no artifact; a non-finite loss always counts).

    Args:
        max_loss: A training loss above this also counts as diverged (0 = only NaN/inf).
    """

    max_loss: float = 0.0


@dataclass
class VerdictConfig(VerdictRules):
    """``training.verdict.*``: the "is this learning?" verdict written after every validation (docs/METRICS.md §8;
    the rule is in ``hlrp_core/metrics/verdict.py``). The thresholds and their meanings are ``VerdictRules``
    (``config/verdict.py``), plus:

    Args:
        n_boot: Episode-bootstrap resamples per confidence interval.
    """

    n_boot: int = 500


@dataclass
class TrainingConfig:
    """Training loop knobs (both stages).

    Args:
        max_steps: Optimizer steps to train.
        max_epochs: Kept for seed commands; -1 means step-limited only (the only supported value besides -1 is
            ignored with a warning: an "epoch" over a weighted infinite mix has no meaning).
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW decay, applied only to weights with >= 2 dimensions.
        betas: AdamW betas.
        warmup_steps: Linear warm-up steps, then cosine decay to ``min_lr_ratio * lr``.
        min_lr_ratio: Floor of the cosine schedule as a fraction of ``lr``.
        gradient_clip_val: Clip the global gradient norm (0 = off).
        precision: ``auto`` (bf16-mixed on GPU, 32-true on CPU), or a Lightning precision string.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: Devices per node. Notebooks always use 1 (DDP cannot be spawned from a kernel); >1 goes through srun.
        num_nodes: Nodes for DDP under SLURM.
        log_every_n_steps: One log line / time-series row every N steps (no progress bars in batch runs).
        heartbeat_every_n_steps: Touch the run's ``status`` every N steps so a dead run is detectable.
        resume_from: A ``last.ckpt`` (or any checkpoint) to continue from, in a new run directory.
        resume_from_checkpoint: Seed spelling of ``resume_from`` (accepted; copied into ``resume_from``).
        validation: Step-based validation.
        train_visualization: Train-time sample panels.
        checkpoint: Checkpoint cadence.
        profiler: Lightning profiler.
        dataset_usage_logger: Batch-mix log lines.
        ram_guard: Clean, checkpointed stop on low memory (MemAvailable or the memory cgroup's headroom).
        divergence: When a non-finite or exploding loss stops the run as FAILED (docs/ROBUSTNESS.md).
        verdict: Thresholds of the "is this learning?" verdict after each validation.
        num_threads: ``torch.set_num_threads`` for the run (0 = leave torch's default). The dev machines have 2
            shared cores: 2 is right there.
        save_artifact: Write ``<run>/artifacts/laq_artifact.pt`` (Stage 1) at the end of training.
    """

    # schedule
    max_steps: int = 1000
    max_epochs: int = -1
    lr: float = 3.0e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    gradient_clip_val: float = 1.0
    # hardware
    precision: str = "auto"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    # bookkeeping
    log_every_n_steps: int = 10
    heartbeat_every_n_steps: int = 10
    resume_from: Optional[str] = None
    resume_from_checkpoint: Optional[str] = None
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    train_visualization: VisualizationConfig = field(default_factory=VisualizationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)
    dataset_usage_logger: DatasetUsageLoggerConfig = field(default_factory=DatasetUsageLoggerConfig)
    ram_guard: RamGuardConfig = field(default_factory=RamGuardConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    num_threads: int = 0
    save_artifact: bool = True

    def validate(self, problems: list[str]) -> None:
        check(problems, self.max_steps >= 1, f"training.max_steps={self.max_steps} must be >= 1")
        check(problems, self.lr >= 0, f"training.lr={self.lr} must be >= 0")
        check(problems, self.divergence.max_loss >= 0,
              f"training.divergence.max_loss={self.divergence.max_loss} must be >= 0 (0 = only NaN/inf)")
        check(problems, self.warmup_steps >= 0, f"training.warmup_steps={self.warmup_steps} must be >= 0")
        check(problems, len(self.betas) == 2, f"training.betas={self.betas} must have two values, e.g. [0.9,0.95]")
        check(problems, self.validation.check_interval >= 1,
              f"training.validation.check_interval={self.validation.check_interval} must be >= 1")
        check(problems, self.checkpoint.every_n_train_steps >= 1,
              f"training.checkpoint.every_n_train_steps={self.checkpoint.every_n_train_steps} must be >= 1")
        v = self.verdict
        check(problems, v.n_boot >= 50, f"training.verdict.n_boot={v.n_boot} must be >= 50 (CIs need resamples)")
        for key in ("min_episodes", "min_items_per_code", "collapse_top1_floor", "collapse_top1_margin",
                    "collapse_unique_ratio", "collapse_ppl_ratio", "collapse_var_ratio", "random_tolerance",
                    "plateau_tolerance", "stage1_min_ppl", "stage1_min_excess"):
            check(problems, getattr(v, key) >= 0, f"training.verdict.{key}={getattr(v, key)} must be >= 0")
        check_choice(problems, "training.accelerator", self.accelerator, ["auto", "cpu", "gpu", "cuda"])
        check_choice(problems, "training.precision", self.precision,
                     ["auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"])
        if self.resume_from and self.resume_from_checkpoint and self.resume_from != self.resume_from_checkpoint:
            problems.append(
                f"training.resume_from={self.resume_from!r} and training.resume_from_checkpoint="
                f"{self.resume_from_checkpoint!r} disagree; set only one of them")
        if self.resume_from_checkpoint and not self.resume_from:
            self.resume_from = self.resume_from_checkpoint
