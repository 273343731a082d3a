"""Checkpoints that cannot be left half-written, and finite-weight checks for checkpoints and artifacts.

``AtomicCheckpointIO`` (a Lightning ``CheckpointIO`` plugin that ``build_trainer`` always installs) writes every
checkpoint to a temporary name in the same folder and renames it: a full disk or a kill mid-write leaves the
previous ``last.ckpt`` / ``step_*.ckpt`` intact and no truncated file under a final name. A refused write raises
``OutputWriteError`` naming the path and the free space. A state dict with NaN/inf weights is refused
(``NonFiniteWeightsError``): a diverged model is never saved as if it were a result.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..io import atomic_save
from ..storage import free_bytes, is_write_error, write_error

LOW_FREE = 64 * 2**20  # a torch.save that fails with less free space than this failed for lack of space


class NonFiniteWeightsError(ValueError):
    """A state dict holds NaN/inf values (a diverged run); the message counts and names the tensors."""


def non_finite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of floating tensors in ``state`` (nested dicts allowed) holding NaN or inf."""
    bad = []
    for k, v in state.items():
        if isinstance(v, Mapping):
            bad += [f"{k}.{n}" for n in non_finite_tensors(v)]
        elif torch.is_tensor(v) and v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            bad.append(str(k))
    return bad


def check_finite(state: Mapping[str, Any], what: str, n: int = 5) -> None:
    bad = non_finite_tensors(state)
    if bad:
        total = sum(1 for v in state.values() if torch.is_tensor(v))
        raise NonFiniteWeightsError(
            f"{what}: {len(bad)} of {total} tensors hold NaN/inf ({', '.join(bad[:n])}{' ...' if len(bad) > n else ''});"
            " the run diverged; lower training.lr and retrain from a finite checkpoint")


def save_atomic(obj: Any, path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """``torch.save`` to a temp name next to ``path``, then rename; write errors -> ``OutputWriteError``."""
    path = Path(path)
    try:
        return atomic_save(path, lambda tmp: torch.save(obj, tmp))
    except OSError as exc:
        if is_write_error(exc):
            raise write_error(path, exc, what) from None
        raise
    except RuntimeError as exc:  # torch's zip writer reports ENOSPC as "file write failed" / "unexpected pos"
        free = free_bytes(path)
        if "write" in str(exc).lower() or "unexpected pos" in str(exc) or (free is not None and free < LOW_FREE):
            raise write_error(path, OSError(errno.ENOSPC, str(exc)), what) from None
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written atomically, refusing non-finite weights."""

    def save_checkpoint(self, checkpoint: dict, path: Any, storage_options: Optional[Any] = None) -> None:
        check_finite(checkpoint.get("state_dict", {}), f"checkpoint {path}")
        save_atomic(checkpoint, path)


def add_checkpoint_io(plugins: Any) -> list:
    """``plugins`` (None, one plugin or a list) plus an ``AtomicCheckpointIO`` unless a CheckpointIO is given."""
    from lightning.pytorch.plugins.io import CheckpointIO

    out = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in out):
        out.append(AtomicCheckpointIO())
    return out
