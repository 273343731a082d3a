"""LAQ quantizers: NSVQ (LAPA / predecessor parity), VQ-EMA (k-means init + dead-code expiry) and FSQ.

Common interface (``BaseQuantizer``):
- ``forward(x [B,S,D]) -> QuantOut``: ``z`` (what the decoder sees), ``codes`` [B,S] int64 in [0,K), ``vectors``
  [B,S,D] (the raw codebook vectors of the codes, before ``project_out``), ``loss`` (scalar, 0 when none).
- ``lookup(codes [B,S]) -> [B,S,D]``: forced codes (latent transfer, shuffled-code control).
- ``maybe_replace(step) -> dict | None``: the step-based dead-code schedule; returns an event record
  (``replaced``, ``used``, ``deferred``, ``window_total``, ``min_count``) whenever the schedule fired. NSVQ also
  runs its k-means codebook refits here (the record then has ``refit`` = 1 and ``inertia``).
Usage counters live in buffers, so they are saved in checkpoints and resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...metrics import kmeans as KM


@dataclass
class QuantOut:
    z: torch.Tensor          # (B, S, D) decoder input (noised in NSVQ training, exact code otherwise)
    codes: torch.Tensor      # (B, S) int64
    vectors: torch.Tensor    # (B, S, D) codebook vectors of the codes
    loss: torch.Tensor       # () auxiliary loss (VQ-EMA commitment; 0 otherwise)


def batch_perplexity(codes: torch.Tensor, k: int) -> torch.Tensor:
    """exp(entropy) of the code frequencies in ``codes`` (any shape), docs/MODELS.md 1.3."""
    p = torch.bincount(codes.reshape(-1), minlength=k).float()  # (K,)
    p = p / p.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p + 1e-12)).sum())


def schedule_fires(schedule: list[list[int]], step: int) -> bool:
    """True when any ``[interval, until]`` pair fires at ``step`` (``step < until and step % interval == 0``)."""
    return step > 0 and any(step < until and step % interval == 0 for interval, until in schedule)


class BaseQuantizer(nn.Module):
    def __init__(self, dim: int, codebook_size: int):
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.register_buffer("window_counts", torch.zeros(codebook_size, dtype=torch.float64))  # (K,)

    def _count(self, codes: torch.Tensor) -> None:
        if self.training:
            self.window_counts += torch.bincount(codes.reshape(-1), minlength=self.codebook_size).to(
                self.window_counts.dtype)

    def maybe_replace(self, step: int) -> Optional[dict]:
        return None

    def codebook(self) -> Optional[torch.Tensor]:
        """(K, D) codebook, or None when the quantizer has none to export."""
        return None


def kmeans_refit(x: torch.Tensor, current: torch.Tensor, seed: int, restarts: int = KM.RESTARTS) -> tuple[
        torch.Tensor, float, float]:
    """Best codebook for the latents x (N, D): :func:`hlrp_core.metrics.kmeans.kmeans` warm-started from
    ``current`` (K, D) plus ``restarts`` k-means++ seeds (the same k-means as the untrained-LAQ baseline). Returns
    (centres on x's device/dtype, their inertia, the inertia of ``current``). The warm start means a refit never
    quantizes these latents worse than before."""
    res = KM.kmeans(x.detach().double().cpu().numpy(), len(current), seed=seed, restarts=restarts,
                    init=current.detach().double().cpu().numpy())
    return torch.as_tensor(res.centres, device=x.device, dtype=x.dtype), res.inertia, res.init_inertia


class NSVQ(BaseQuantizer):
    """Noise-substitution VQ (docs/MODELS.md 1.3): nearest code; in training the decoder sees
    ``x + (||x - e|| / ||v|| + eps) * v`` with ``v ~ N(0, I)``; no codebook or commitment loss.
    Dead-code replacement with a threshold relative to mean usage and a minimum window (docs/MODELS.md 1.6).

    Optional k-means refits (``refit_steps``): at each listed step the codebook is replaced by the best k-means
    solution (:func:`kmeans_refit`) for the latents of the last ``refit_window`` training batches. Why: NSVQ moves
    each code towards the latents assigned to it, i.e. online k-means from a random start, which settles in local
    minima: on laq_tiny one code sat between two motion directions while another direction held two codes (NMI 0.79
    while the latent's own class centroids separate the directions at 0.88). Dead-code replacement cannot see that
    (every code is used). Refits at steps 500, 750, 1000 and 1250 of 1500: NMI 0.877 / 0.880 (two seeds)."""

    def __init__(self, dim: int, codebook_size: int, schedule: list[list[int]], threshold: float = 0.1,
                 min_window_factor: float = 10.0, eps: float = 1e-12, data_init: bool = True,
                 reseed: str = "codes", refit_steps: list[int] = (), refit_window: int = 16):
        super().__init__(dim, codebook_size)
        self.embed = nn.Parameter(torch.randn(codebook_size, dim))  # (K, D), N(0,1) as LAPA
        # data_init: on the first training batch, re-seed the codebook from the batch latents (+0.02 noise) so the
        # substituted noise starts at the latents' scale instead of ||N(0,1)|| (much faster start on CPU).
        self.register_buffer("initted", torch.tensor(not data_init))
        self.schedule = [list(map(int, p)) for p in schedule]
        self.threshold, self.min_window_factor, self.eps = threshold, min_window_factor, eps
        # reseed="latents": dead codes restart at latents of the last training batch (kept here, outside the state
        # dict; the training task checkpoints it for exact resume). "codes" = LAPA: a used code + 0.02 N(0,1), which
        # lands far from the data when the latents' spread is below 0.02 (conv stem at init: 0.004 per dim) and then
        # churns the codebook into one code.
        self.reseed = reseed
        self.refit_steps = sorted({int(v) for v in refit_steps})
        # batches of latents kept in ``recent``: what a refit clusters (1 = the last batch, for reseed=latents)
        self.keep_batches = max(1, int(refit_window)) if self.refit_steps else 1
        self.recent: Optional[torch.Tensor] = None                       # (<=keep_batches*B*S, D) recent latents

    def codebook(self) -> torch.Tensor:
        return self.embed

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.dim)                                   # (B*S, D)
        d = torch.cdist(flat.float(), self.embed.float())                # (B*S, K)
        return d.argmin(dim=-1).view(x.shape[:-1])                       # (B, S)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embed)                            # (B, S, D)

    @torch.no_grad()
    def _data_init(self, x: torch.Tensor) -> None:
        flat = x.reshape(-1, self.dim).float()                           # (B*S, D)
        pick = flat[torch.randint(flat.shape[0], (self.codebook_size,), device=flat.device)]  # (K, D)
        self.embed.data.copy_(pick + 0.02 * flat.std() * torch.randn_like(pick))
        self.initted.fill_(True)

    def forward(self, x: torch.Tensor) -> QuantOut:
        if self.training and not bool(self.initted):
            self._data_init(x.detach())
        if self.training and (self.reseed == "latents" or self.refit_steps):
            new = x.detach().reshape(-1, self.dim)                       # (B*S, D)
            keep = self.keep_batches * new.shape[0]
            old = self.recent if self.recent is not None and self.keep_batches > 1 else new[:0]
            self.recent = torch.cat([old.to(new), new])[-keep:].clone()  # (<=keep, D)
        codes = self.assign(x)                                           # (B, S)
        vectors = self.lookup(codes)                                     # (B, S, D)
        if self.training:
            v = torch.randn_like(x)                                      # (B, S, D)
            resid = (x - vectors).norm(dim=-1, keepdim=True)             # (B, S, 1)
            z = x + (resid / (v.norm(dim=-1, keepdim=True) + self.eps)) * v   # (B, S, D)
        else:
            z = vectors
        self._count(codes)
        return QuantOut(z=z, codes=codes, vectors=vectors, loss=x.new_zeros(()))

    @torch.no_grad()
    def _refit(self, step: int) -> dict:
        counts = self.window_counts
        event = {"step": step, "window_total": float(counts.sum()), "used": int((counts > 0).sum()), "replaced": 0,
                 "deferred": 0, "min_count": float(counts.min()), "refit": 1}
        src = self.recent
        if src is None or len(src) < 10 * self.codebook_size:
            event.update(deferred=1, refit=0)  # too few latents to place K centres (skipped, not retried)
            return event
        centres, inertia, before = kmeans_refit(src.float(), self.embed.float(), seed=step)
        self.embed.data.copy_(centres.to(self.embed.dtype))
        event.update(inertia=inertia, inertia_before=before)
        counts.zero_()
        return event

    @torch.no_grad()
    def maybe_replace(self, step: int) -> Optional[dict]:
        if step in self.refit_steps:
            return self._refit(step)
        if not schedule_fires(self.schedule, step):
            return None
        counts = self.window_counts
        total = float(counts.sum())
        used = counts > 0
        event = {"step": step, "window_total": total, "used": int(used.sum()), "replaced": 0, "deferred": 0,
                 "min_count": float(counts.min())}
        if total < self.min_window_factor * self.codebook_size and used.any():
            event["deferred"] = 1  # too few assignments to judge K codes; keep accumulating (rule 1)
            return event
        if not used.any():
            self.embed.add_(0.02 * torch.randn_like(self.embed))
            event["replaced"] = self.codebook_size
        else:
            dead = counts < self.threshold * (total / self.codebook_size)  # (K,)
            n_dead = int(dead.sum())
            if n_dead and self.reseed == "latents" and self.recent is not None:
                src = self.recent.to(self.embed.device, self.embed.dtype)  # (N, D)
                pick = torch.randint(len(src), (n_dead,), device=src.device)  # (n_dead,)
                self.embed.data[dead] = src[pick] + 0.02 * src.std() * torch.randn_like(src[pick])
            elif n_dead:
                used_idx = used.nonzero().squeeze(1)                     # (U,)
                pick = used_idx[torch.randint(len(used_idx), (n_dead,), device=used_idx.device)]  # (n_dead,)
                self.embed.data[dead] = self.embed.data[pick] + 0.02 * torch.randn(
                    n_dead, self.dim, device=self.embed.device, dtype=self.embed.dtype)
            event["replaced"] = n_dead
        counts.zero_()
        return event


def _ddp_world() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce_sum(*tensors: torch.Tensor) -> None:
    """Sum in place over DDP ranks (a no-op in one process)."""
    if _ddp_world() > 1:
        for t in tensors:
            torch.distributed.all_reduce(t)


def _broadcast0(t: torch.Tensor) -> torch.Tensor:
    if _ddp_world() > 1:
        torch.distributed.broadcast(t, src=0)
    return t


class VQEMA(BaseQuantizer):
    """VQ with a straight-through estimator and an EMA codebook (as lucidrains ``VectorQuantize``): k-means init on
    the first training batch, commitment loss, and dead-code expiry (EMA cluster size < threshold -> re-seeded from
    encoder outputs of the current batch). Expiry events are reported through ``maybe_replace``.

    Under DDP the per-batch cluster counts and sums are all-reduced over ranks before the EMA update (as
    vector-quantize-pytorch does), so every rank applies the update of the global batch: the codebooks stay equal
    and equal to one process training on the whole global batch. The k-means init starts from rank 0's draw and
    all-reduces each iteration's counts and sums; expiry re-seeds from rank 0's draw (broadcast)."""

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.8, commitment_weight: float = 0.25,
                 dead_code_threshold: float = 2.0, kmeans_iters: int = 10, eps: float = 1e-5):
        super().__init__(dim, codebook_size)
        self.decay, self.commitment_weight, self.dead_code_threshold = decay, commitment_weight, dead_code_threshold
        self.kmeans_iters, self.eps = kmeans_iters, eps
        self.register_buffer("embed", torch.randn(codebook_size, dim))          # (K, D)
        self.register_buffer("embed_avg", self.embed.clone())                     # (K, D)
        self.register_buffer("cluster_size", torch.ones(codebook_size))         # (K,)
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("pending_expired", torch.zeros((), dtype=torch.int64))

    def codebook(self) -> torch.Tensor:
        return self.embed

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        n = flat.shape[0]
        idx = torch.randint(n, (self.codebook_size,), device=flat.device) if n < self.codebook_size else \
            torch.randperm(n, device=flat.device)[: self.codebook_size]
        means = _broadcast0(flat[idx].clone())                           # (K, D)
        for _ in range(self.kmeans_iters):
            assign = torch.cdist(flat, means).argmin(-1)                 # (N,)
            bins = torch.bincount(assign, minlength=self.codebook_size).float()  # (K,)
            sums = torch.zeros_like(means).index_add_(0, assign, flat)   # (K, D)
            _all_reduce_sum(bins, sums)                                  # the global batch's clusters under DDP
            nonzero = bins > 0
            means[nonzero] = sums[nonzero] / bins[nonzero, None]
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embed)                            # (B, S, D)

    def forward(self, x: torch.Tensor) -> QuantOut:
        flat = x.reshape(-1, self.dim).float()                           # (B*S, D)
        if self.training and not bool(self.initted):
            self._kmeans_init(flat.detach())
        codes = torch.cdist(flat, self.embed).argmin(-1)                 # (B*S,)
        vectors = F.embedding(codes, self.embed).view_as(x).to(x.dtype)  # (B, S, D)
        codes = codes.view(x.shape[:-1])                                 # (B, S)
        loss = x.new_zeros(())
        if self.training:
            self._count(codes)
            with torch.no_grad():
                onehot = F.one_hot(codes.reshape(-1), self.codebook_size).float()  # (B*S, K)
                bins, sums = onehot.sum(0), onehot.t() @ flat.detach()            # (K,), (K, D)
                _all_reduce_sum(bins, sums)  # DDP: every rank applies the global batch's update
                self.cluster_size.mul_(self.decay).add_(bins, alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # (K,)
                self.embed.copy_(self.embed_avg / smoothed[:, None])
                self._expire(flat.detach())
            loss = self.commitment_weight * F.mse_loss(x, vectors.detach())
        z = x + (vectors - x).detach()                                   # (B, S, D) straight-through
        return QuantOut(z=z, codes=codes, vectors=vectors, loss=loss)

    @torch.no_grad()
    def _expire(self, flat: torch.Tensor) -> None:
        if self.dead_code_threshold <= 0:
            return
        dead = self.cluster_size < self.dead_code_threshold              # (K,)
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = flat[torch.randint(flat.shape[0], (n_dead,), device=flat.device)]  # (n_dead, D)
        pick = _broadcast0(pick.contiguous())  # the dead set is equal on all ranks (all-reduced counts)
        self.embed[dead] = pick
        self.embed_avg[dead] = pick * self.dead_code_threshold
        self.cluster_size[dead] = self.dead_code_threshold
        self.pending_expired += n_dead

    def maybe_replace(self, step: int) -> Optional[dict]:
        """Reports the expiries accumulated since the last report (every call with a non-zero count)."""
        n = int(self.pending_expired)
        if n == 0:
            return None
        counts = self.window_counts
        event = {"step": step, "window_total": float(counts.sum()), "used": int((counts > 0).sum()),
                 "replaced": n, "deferred": 0, "min_count": float(counts.min())}
        self.pending_expired.zero_()
        counts.zero_()
        return event


def default_fsq_levels(codebook_size: int) -> list[int]:
    """Powers of two -> 8-level digits first: 4096 -> [8,8,8,8], 8 -> [8], 16 -> [8,2], 64 -> [8,8]."""
    n = codebook_size.bit_length() - 1
    if 2 ** n != codebook_size:
        raise ValueError(f"model.codebook_size={codebook_size} is not a power of 2; set model.fsq_levels")
    levels = [8] * (n // 3) + ([2 ** (n % 3)] if n % 3 else [])
    return levels or [2]


class FSQ(BaseQuantizer):
    """Finite scalar quantization (Mentzer et al. 2023): project D -> L bounded digits, round each to its level grid
    (straight-through), project back. No codebook parameters, so no collapse by construction; usage is measured."""

    def __init__(self, dim: int, levels: list[int]):
        k = 1
        for lv in levels:
            k *= lv
        super().__init__(dim, k)
        self.levels = list(levels)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.float32))           # (L,)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.int64), 0)
        self.register_buffer("_basis", basis)                                                  # (L,)
        self.project_in = nn.Linear(dim, len(levels))
        self.project_out = nn.Linear(len(levels), dim)

    def _bound(self, h: torch.Tensor) -> torch.Tensor:
        half_l = (self._levels - 1) * (1 - 1e-3) / 2                     # (L,)
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)            # (L,)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(h + shift) * half_l - offset

    def _digits_to_grid(self, digits: torch.Tensor) -> torch.Tensor:
        half_w = torch.div(self._levels, 2, rounding_mode="floor")       # (L,)
        return (digits.float() - half_w) / half_w                        # (..., L) in [-1, 1]

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        digits = (codes[..., None] // self._basis) % self._levels.long()  # (B, S, L)
        return self.project_out(self._digits_to_grid(digits))            # (B, S, D)

    def forward(self, x: torch.Tensor) -> QuantOut:
        h = self._bound(self.project_in(x.float()))                      # (B, S, L)
        q = h + (torch.round(h) - h).detach()                            # (B, S, L) straight-through rounding
        half_w = torch.div(self._levels, 2, rounding_mode="floor")
        digits = (torch.round(h).detach() + half_w).long()               # (B, S, L) in [0, level)
        codes = (digits * self._basis).sum(-1)                           # (B, S)
        z = self.project_out(q / half_w).to(x.dtype)                     # (B, S, D)
        self._count(codes)
        return QuantOut(z=z, codes=codes, vectors=z.detach(), loss=x.new_zeros(()))


def build_quantizer(quantizer: str, code_dim: int, codebook_size: int, *, schedule=(), threshold=0.1,
                    min_window_factor=10.0, ema_decay=0.8, commitment_weight=0.25, dead_code_threshold=2.0,
                    fsq_levels=(), codebook_init="data", replacement_source="codes", refit_steps=(),
                    refit_window=16) -> BaseQuantizer:
    if quantizer == "nsvq":
        return NSVQ(code_dim, codebook_size, [list(p) for p in schedule], threshold, min_window_factor,
                    data_init=codebook_init == "data", reseed=replacement_source, refit_steps=list(refit_steps),
                    refit_window=refit_window)
    if quantizer == "vq_ema":
        return VQEMA(code_dim, codebook_size, ema_decay, commitment_weight, dead_code_threshold)
    if quantizer == "fsq":
        return FSQ(code_dim, list(fsq_levels) or default_fsq_levels(codebook_size))
    raise ValueError(f"model.quantizer={quantizer!r}: choose one of nsvq, vq_ema, fsq")
