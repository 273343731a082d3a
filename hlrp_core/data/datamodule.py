"""The Lightning DataModule over one ``PairLoader``: ``train_dataloader`` = the persistent train stream,
``val_dataloader`` = the fixed, cached val set; ``state_dict`` carries the stream's next sample index (exact resume).
"""

from __future__ import annotations

from typing import Any, Optional

from .loader import PairLoader
from .pipeline import ValIterable


def build_datamodule(cfg: Any, rank: Optional[int] = None, world_size: Optional[int] = None):
    """A ``lightning.LightningDataModule`` over one ``PairLoader`` (built once in ``setup``, closed in
    ``teardown``); ``state_dict``/``load_state_dict`` carry the train stream's next sample index for exact resume.
    ``rank``/``world_size`` default to the attached trainer's (DDP: each rank reads its own shard)."""
    return PairDataModule(cfg, rank=rank, world_size=world_size)


def _datamodule_base():
    import lightning as L

    return L.LightningDataModule


class PairDataModule(_datamodule_base()):  # type: ignore[misc]
    """Lightning DataModule: ``train_dataloader`` = the persistent train stream, ``val_dataloader`` = the fixed,
    cached val set (limited to ``training.validation.limit_batches`` when set).

    ``rank``/``world_size``: the train-stream shard (see ``PairLoader``); ``None`` takes them from the attached
    trainer at ``setup`` (``trainer.global_rank`` / ``trainer.world_size``), else 0 / 1. Validation is not sharded:
    every rank evaluates the same fixed set."""

    def __init__(self, cfg: Any, rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__()
        self.cfg = cfg
        self.loader: Optional[PairLoader] = None
        self._start_index = 0
        self.rank, self.world_size = rank, world_size

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        rank = self.rank if self.rank is not None else int(getattr(trainer, "global_rank", 0) or 0)
        world = self.world_size if self.world_size is not None else int(getattr(trainer, "world_size", 1) or 1)
        return rank, world

    def setup(self, stage: Optional[str] = None) -> None:
        if self.loader is None:
            rank, world = self._shard()
            self.loader = PairLoader(self.cfg, start_index=self._start_index, rank=rank, world_size=world)

    def train_dataloader(self):
        self.setup()
        return self.loader.train

    def val_dataloader(self):
        self.setup()
        tr = getattr(self.cfg, "training", None)
        limit = int(tr.validation.limit_batches) if tr is not None else 0
        return ValIterable(self.loader, limit)

    def state_dict(self) -> dict:
        if self.loader is not None:
            return self.loader.state_dict()
        return {"next_index": int(self._start_index)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._start_index = int(state_dict.get("next_index", 0))
        if self.loader is not None:
            self.loader.seek(self._start_index)

    def teardown(self, stage: Optional[str] = None) -> None:
        if self.loader is not None:
            self.loader.close()
            self.loader = None
