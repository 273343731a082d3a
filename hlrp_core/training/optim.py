"""AdamW with decay only on >=2-D weights, plus linear warm-up then cosine decay to ``min_lr_ratio * lr``.

The decay length is derived from ``training.max_steps`` (docs/MODELS.md section 4: no hidden schedule floor).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: tensors with ``ndim >= 2`` (matrices, conv kernels, embeddings) decay; biases, norms,
    scales and 1-D parameters do not. Frozen parameters are left out."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def lr_lambda(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak LR at ``step``: linear 0->1 over ``warmup_steps``, cosine 1->``min_lr_ratio`` after."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(module: nn.Module, training: Any) -> tuple[torch.optim.Optimizer, dict]:
    """(AdamW, Lightning scheduler dict stepping every optimizer step) from ``cfg.training``."""
    opt = torch.optim.AdamW(param_groups(module, training.weight_decay), lr=training.lr,
                            betas=tuple(training.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, training.warmup_steps, training.max_steps, training.min_lr_ratio))
    return opt, {"scheduler": sched, "interval": "step", "frequency": 1, "name": "lr"}


def count_params(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)
