"""The root config: one typed dataclass tree. Sections live in sibling modules, one per owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .cluster import ClusterConfig, SubmitConfig
from .data import DataConfig
from .errors import check, check_choice
from .model import ModelConfig
from .training import TrainingConfig


@dataclass
class ExperimentConfig:
    """``experiment.*`` (``experiment=<preset>`` selects a preset; ``experiment.name=...`` names the run).

    Args:
        name: Run name: the suffix of the run directory ``<timestamp>_<name>``. Empty = the notebook's name.
        study: Folder under ``outputs/`` (``scratch``, ``train``, ``ladders/<ladder>``, ...). Empty = chosen from
            the notebook's number band.
        preset: The experiment preset that was applied (recorded by the loader; set it via ``experiment=<name>``).
        description: Free text kept in the run record.
    """

    name: str = ""
    study: str = ""
    preset: str = ""
    description: str = ""


@dataclass
class LoggingConfig:
    """``logging.*``: where a run reports besides its files (docs/FEEDBACK.md).

    Args:
        level: Python logging level for ``unified.log``.
        memory_sample_interval_s: Background RSS/MemAvailable sampling period (0 = off).
        use_wandb: Attach Lightning's ``WandbLogger``: files under ``<run>/wandb/``, run name = the run directory's
            name, run id derived from it (a resumed or requeued run continues the same wandb run).
        wandb_mode: ``offline`` (default: nothing leaves the machine; upload later with the printed ``wandb sync``
            command), ``online`` (needs ``wandb login``) or ``disabled``.
        wandb_project: wandb project name.
        wandb_group: wandb group; empty = the run's study folder (e.g. ``train``, ``ladders/<ladder>``).
        wandb_tags: wandb tags (the experiment preset is always added).
        tensorboard: Also write TensorBoard event files under ``<run>/tensorboard/``.
        progress: Training progress: ``auto`` (the widget bar in an interactive kernel; a periodic one-line progress
            in the log under papermill / SLURM / CI), ``bar``, ``line`` or ``off``.
        progress_every_s: Seconds between two one-line progress reports.
        curves: Write ``figures/curves.png`` (loss, lr, throughput, RSS, verdict metrics) at every validation and at
            the end of a training.
    """

    level: str = "INFO"
    memory_sample_interval_s: float = 5.0
    use_wandb: bool = False
    wandb_mode: str = "offline"
    wandb_project: str = "hlrp"
    wandb_group: str = ""
    wandb_tags: list[str] = field(default_factory=list)
    tensorboard: bool = False
    progress: str = "auto"
    progress_every_s: float = 30.0
    curves: bool = True


@dataclass
class AnalysisConfig:
    """``analysis.*``: inputs of the analysis notebooks (30-39, 90-99).

    Args:
        run_dir: A run directory to analyse.
        run_dirs: Several run directories to compare.
        ladder: A ladder name to report on.
    """

    run_dir: str = ""
    run_dirs: list[str] = field(default_factory=list)
    ladder: str = ""


@dataclass
class Config:
    """Everything a run needs. Load it with ``hlrp_core.config.load``; never build one by hand in a notebook.

    Args:
        seed: Global seed (Lightning ``seed_everything``; data sampling derives its seeds from it).
        smoke: Tiny sizing, applied by the loader (schema -> experiment -> smoke profile -> overrides).
        experiment: Run naming and the applied preset.
        data: Datasets, loader and preprocessing.
        model: Stage 1 / Stage 2 model.
        training: The training loop.
        logging: Logs and memory sampling.
        cluster: Where to run.
        submit: Per-submission cluster overrides.
        analysis: Inputs of analysis notebooks.
    """

    seed: int = 0
    smoke: bool = False
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    submit: SubmitConfig = field(default_factory=SubmitConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def validate(self, problems: list[str]) -> None:
        check_choice(problems, "logging.level", self.logging.level.upper(),
                     ["DEBUG", "INFO", "WARNING", "ERROR"])
        check_choice(problems, "logging.wandb_mode", self.logging.wandb_mode, ["offline", "online", "disabled"])
        check_choice(problems, "logging.progress", self.logging.progress, ["auto", "bar", "line", "off"])
        check(problems, self.logging.progress_every_s > 0,
              f"logging.progress_every_s={self.logging.progress_every_s} must be > 0 (seconds between progress lines)")
        check(problems, self.seed >= 0, f"seed={self.seed} must be >= 0")
        for section in (self.data, self.model, self.training, self.cluster):
            section.validate(problems)
        # Cross-section rules (each message names both knobs) go below.
