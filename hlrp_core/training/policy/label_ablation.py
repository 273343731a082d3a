"""Label ablations for Stage 2: the same training with labels that carry no input information.

``ShuffledLabeller(inner)`` wraps any :class:`~hlrp_core.training.policy.labels.LatentLabeller`: every call labels
the batch with ``inner`` and then permutes the (codes, vectors) rows across the batch with a fixed-seed generator
(one permutation per call, call index counted). The label marginal is unchanged, but which input gets which label
is random, so a policy trained (and validated) on it can at best reproduce the marginal: the verdict must be
``random-like``, never ``learning``. The identity hash gets a ``-shuffled`` suffix so its artifact cannot be
mistaken for a real Stage-2 result.

Use: ``fit_policy(cfg, run, labeller=ShuffledLabeller(load_laq_labeller(path)))``.
"""

from __future__ import annotations

from typing import Any

import torch

from .labels import LatentLabeller


class ShuffledLabeller(LatentLabeller):
    """``inner``'s labels permuted across each batch (module docstring).

    Args:
        inner: The real labeller (frozen LAQ or stand-in).
        seed: Seed of the permutations.
    """

    def __init__(self, inner: LatentLabeller, seed: int = 0):
        self.inner, self.seed, self.calls = inner, int(seed), 0
        self.spec, self.codebook = inner.spec, inner.codebook
        self.image_size = getattr(inner, "image_size", None)
        self.identity = {**inner.identity, "hash": f"{inner.identity.get('hash')}-shuffled",
                         "label_ablation": "shuffled"}

    def label(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, vectors = self.inner.label(frames)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        perm = torch.randperm(codes.shape[0], generator=g).to(codes.device)
        return codes[perm], vectors[perm]

    def to(self, device: Any) -> "ShuffledLabeller":
        self.inner = self.inner.to(device) or self.inner
        self.codebook = self.inner.codebook
        return self

    def __getattr__(self, name: str) -> Any:  # anything else (e.g. a module's LAQ handle) comes from the inner one
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
