"""Keep module state that DDP does not synchronise identical on every rank (broadcast from rank 0).

DDP all-reduces gradients, so weights trained only by the optimizer stay equal on all ranks. It does not cover
state a module changes by itself from its rank's own batch. The LAQ quantizer (``hlrp_core/models/laq/quantizers.py``)
does that in three places:

- NSVQ's data init: the first training batch's latents become the codebook, a different batch on each rank.
- NSVQ's dead-code replacement (``maybe_replace``): it judges usage from the rank's own window counts and re-seeds
  dead codes with its own random draws.
- VQ-EMA's per-batch EMA codebook update and its expiries.

Without a sync each rank ends with its own codebook. The run's checkpoint and artifact then hold rank 0's codebook,
while the decoder was trained on gradients averaged over ranks that quantised with different codes.

``BroadcastModuleState("model.quantizer")`` copies every parameter and buffer of that submodule from rank 0 to all
ranks at the start of training and after every training batch (after the optimizer step, before checkpoints are
taken; Lightning runs checkpoint callbacks last). That covers the init step and every replacement event without
hooking into the quantizer code. It broadcasts every step, not only when ``LAQModule.replacement["events"]`` changes,
because VQ-EMA diverges on every batch. The cost is one flat broadcast per dtype: an 8 x 8 or 4096 x 8 codebook plus
its counters is a few kB to 160 kB. On one process (no ``torch.distributed`` group, or world size 1) it does nothing.

``state_digest(module)`` is the sha256 of a module's parameters and buffers. The DDP report of ``python -m
hlrp_core.training.srun`` gathers it from every rank to show that the codebooks are identical.
"""

from __future__ import annotations

import hashlib
import time
from operator import attrgetter
from typing import Any

import lightning as L
import torch


def _dist_world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def module_tensors(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter and buffer, sorted by name (the same order on every rank)."""
    out = [(f"param:{n}", p.data) for n, p in module.named_parameters()]
    out += [(f"buffer:{n}", b) for n, b in module.named_buffers()]
    return sorted(out, key=lambda x: x[0])


def state_digest(module: torch.nn.Module) -> str:
    """sha256 over names, dtypes, shapes and bytes of all parameters and buffers of ``module``."""
    h = hashlib.sha256()
    for name, t in module_tensors(module):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@torch.no_grad()
def broadcast_module_state(module: torch.nn.Module, src: int = 0) -> int:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s values, one flat broadcast per dtype
    (bool goes as uint8, which every backend supports). Returns how many elements differed from ``src`` on this
    rank before the broadcast (0 on ``src`` itself). A no-op returning 0 without a process group."""
    if _dist_world() <= 1:
        return 0
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for _, t in module_tensors(module):
        groups.setdefault(t.dtype, []).append(t)
    changed = 0
    for dtype, tensors in groups.items():
        wire = torch.uint8 if dtype == torch.bool else dtype
        flat = torch.cat([t.reshape(-1).to(wire) for t in tensors])          # (N,) all tensors of this dtype
        before = flat.clone()
        torch.distributed.broadcast(flat, src=src)
        changed += int((flat != before).sum())
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view(t.shape).to(dtype))
            offset += n
    return changed


class BroadcastModuleState(L.Callback):
    """Broadcast the parameters and buffers of ``pl_module.<path>`` (e.g. ``model.quantizer``) from rank 0 at the
    start of training and after every ``every_n_steps``-th training batch.

    Counters for the DDP report: ``syncs`` (broadcasts done), ``changed_steps`` (steps whose broadcast changed
    this rank's state, i.e. it had diverged from rank 0: always 0 on rank 0), ``changed_elements`` and
    ``seconds`` (time spent broadcasting)."""

    def __init__(self, path: str = "model.quantizer", every_n_steps: int = 1):
        self.path, self.every_n_steps = path, max(1, int(every_n_steps))
        self.syncs = self.changed_steps = self.changed_elements = 0
        self.seconds = 0.0
        self.changed_at: list[int] = []

    def _sync(self, pl_module: Any, step: int) -> None:
        if _dist_world() <= 1:
            return
        t0 = time.perf_counter()
        changed = broadcast_module_state(attrgetter(self.path)(pl_module))
        self.seconds += time.perf_counter() - t0
        self.syncs += 1
        if changed:
            self.changed_steps += 1
            self.changed_elements += changed
            if len(self.changed_at) < 50:
                self.changed_at.append(step)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._sync(pl_module, int(trainer.global_step))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % self.every_n_steps == 0:
            self._sync(pl_module, int(trainer.global_step) - 1)  # the step whose update just happened

    def report(self) -> dict:
        return {"syncs": self.syncs, "changed_steps": self.changed_steps, "changed_elements": self.changed_elements,
                "changed_at": list(self.changed_at), "seconds": round(self.seconds, 4)}
