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
    """``logging.*``.

    Args:
        level: Python logging level for ``unified.log``.
        memory_sample_interval_s: Background RSS/MemAvailable sampling period (0 = off).
        use_wandb: Accepted for seed commands; hlrp records to files (``metrics.json``, ``timeseries.csv``) and
            wandb is not installed, so ``true`` only logs a warning.
    """

    level: str = "INFO"
    memory_sample_interval_s: float = 5.0
    use_wandb: bool = False


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
        check(problems, self.seed >= 0, f"seed={self.seed} must be >= 0")
        for section in (self.data, self.model, self.training, self.cluster):
            section.validate(problems)
        # Cross-section rules (each message names both knobs) go below.
