"""The run handle: what training needs of a run, and the stand-in for a bare directory (docs/ARCHITECTURE.md, the
training wings).

``hlrp_core.runs.Run`` (a notebook's run) is one; ``DirRun`` serves tests and library calls without the run
contract; ``srun.RankRun`` serves the non-zero ranks of a DDP launch (they write no run files). The fit functions of
both wings, the trainer and its callbacks take any of them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Protocol


class RunHandle(Protocol):
    """``dir``: where checkpoints, the time series and predictions go; ``log``: the run's logger; ``record``: merge
    flat scalars into the run's metrics; ``heartbeat``: the liveness mark; ``save_figure``: a figure under
    ``figures/``; ``fail``: mark the run FAILED with a reason (and the step it stopped at)."""

    dir: Path
    log: logging.Logger

    def record(self, metrics: dict, final: bool = False) -> dict: ...

    def heartbeat(self) -> None: ...

    def save_figure(self, fig: Any, name: str, dpi: int = 100) -> Any: ...

    def fail(self, reason: str, step: Optional[int] = None) -> None: ...


class DirRun:
    """A run handle on a bare directory: ``record`` merges into ``<dir>/metrics.json``, figures go to
    ``<dir>/figures/``; there is no status file, so ``heartbeat`` does nothing and ``fail`` only logs."""

    def __init__(self, out: str | os.PathLike, logger: str = "hlrp.run"):
        self.dir, self.log = Path(out), logging.getLogger(logger)
        self.dir.mkdir(parents=True, exist_ok=True)

    def record(self, metrics: dict, final: bool = False) -> dict:
        from ..runs import record_metrics

        return record_metrics(self.dir, metrics, final=final)

    def heartbeat(self) -> None:
        pass

    def save_figure(self, fig: Any, name: str, dpi: int = 100) -> Path:
        path = self.dir / "figures" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        return path

    def fail(self, reason: str, step: Optional[int] = None) -> None:
        self.log.error("failed%s: %s", f" at step {step}" if step is not None else "", reason)
