"""The Stage-2 latent-action policy: a SmolVLM/Idefics3 backbone with a pooled readout and config-selected heads.

Modes (docs/MODELS.md 2.4-2.5): ``latent_flow`` (flow matching over the frozen LAQ's raw codebook vectors, pi0 /
SmolVLA convention: t=1 is noise, t=0 is data), ``codes`` (per-position classifier over the K codes),
``actions`` (action regression) and ``multitask`` (latent flow + actions). Every head is built eagerly in
``__init__`` from the config and the LAQ's (K, S, D), so a checkpoint's keys never depend on what ran first.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config.policy import PolicyConfig
from . import configuration as C
from .processing import PolicyProcessor, build_tiny_tokenizer


@dataclass(frozen=True)
class LatentSpec:
    """What the frozen LAQ emits: K codes per slot, S slots, D-wide raw codebook vectors."""

    codebook_size: int
    code_seq_len: int
    code_dim: int

    @property
    def flat_dim(self) -> int:
        return self.code_seq_len * self.code_dim


# ----------------------------------------------------------------------------------------------- flow-matching math
def sample_time(n: int, alpha: float = 1.5, beta: float = 1.0, generator: Optional[torch.Generator] = None,
                device: Any = None) -> torch.Tensor:
    """t = 0.999·τ + 0.001 with τ ~ Beta(alpha, beta) (density ∝ τ^0.5 for (1.5, 1): skewed to the noisy end)."""
    if generator is None:
        tau = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta))).sample((n,))
    else:  # a reproducible draw: Beta via two Gammas is not generator-aware, so use inverse-CDF for beta == 1
        u = torch.rand(n, generator=generator)
        if beta == 1.0:
            tau = u.pow(1.0 / alpha)
        else:
            g1 = torch._standard_gamma(torch.full((n,), float(alpha)))
            g2 = torch._standard_gamma(torch.full((n,), float(beta)))
            tau = g1 / (g1 + g2)
    return (0.999 * tau + 0.001).to(device=device, dtype=torch.float32)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = t·ε + (1 − t)·x₀ (t broadcast over the trailing dims)."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return t * noise + (1.0 - t) * x0


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """u = dx_t/dt = ε − x₀."""
    return noise - x0


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    """[B] -> [B, dim] sin/cos features with periods log-spaced in [min_period, max_period] (lerobot's layout);
    always computed in fp32."""
    if dim % 2:
        raise ValueError(f"time embedding width must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    scaling = (2.0 * math.pi / period).to(torch.float32)
    arg = scaling[None, :] * t.float()[:, None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


@torch.no_grad()
def euler_sample(velocity_fn, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate from x=ε at t=1 to t=0: t_i = 1 − i/n, x ← x − (1/n)·v(x, t_i)."""
    x = noise.clone()
    dt = -1.0 / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), 1.0 - i / steps, device=x.device, dtype=torch.float32)
        x = x + dt * velocity_fn(x, t)
    return x


def nearest_codes(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """[B,S,D] vectors (raw codebook space) -> [B,S] index of the nearest (L2) codebook entry."""
    d = torch.cdist(vectors.float().reshape(-1, vectors.shape[-1]), codebook.float())
    return d.argmin(dim=-1).view(vectors.shape[:-1])


# ------------------------------------------------------------------------------------------------------------ heads
class FlowHead(nn.Module):
    """v(x_t, t, c): Linear(S·D→h) on x_t ⊕ sinusoidal time emb (h) → Linear(2h→h) → SiLU → Linear(h→h);
    ⊕ Linear(H→h)(pooled) → Linear(2h→h) → SiLU → Linear(h→S·D). Runs in fp32."""

    def __init__(self, latent_dim: int, cond_dim: int, hidden: int, min_period: float, max_period: float):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"flow hidden width must be even, got {hidden}")
        self.hidden, self.min_period, self.max_period = hidden, min_period, max_period
        self.in_proj = nn.Linear(latent_dim, hidden)
        self.time_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.cond_proj = nn.Linear(cond_dim, hidden)
        self.out = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, latent_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        temb = sinusoidal_time_embedding(t, self.hidden, self.min_period, self.max_period)
        h = self.time_mlp(torch.cat([self.in_proj(x_t.float()), temb], dim=-1))
        return self.out(torch.cat([h, self.cond_proj(cond.float())], dim=-1))


class CodeHead(nn.Module):
    """Per-slot classifier: pooled [B,H] → logits [B,S,K]."""

    def __init__(self, cond_dim: int, hidden: int, seq_len: int, codebook_size: int):
        super().__init__()
        self.seq_len, self.codebook_size = seq_len, codebook_size
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, seq_len * codebook_size))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net(cond.float()).view(-1, self.seq_len, self.codebook_size)


class ActionHead(nn.Module):
    """pooled [B,H] → actions [B,A]."""

    def __init__(self, cond_dim: int, hidden: int, action_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, action_dim))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net(cond.float())


# -------------------------------------------------------------------------------------------------------- backbone
def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def build_backbone(pcfg: PolicyConfig) -> tuple[nn.Module, Any, Any]:
    """``(vlm, tokenizer, vlm_config)`` for ``pcfg.backbone``:

    - ``tiny``: tiny SmolVLM from config + the hand-built tokenizer (random init, offline);
    - ``smolvlm2_500m_random``: SmolVLM2-500M dimensions, random init, hand-built tokenizer (GPU throughput);
    - a local directory: ``AutoModelForImageTextToText`` / ``AutoTokenizer`` with ``local_files_only=True`` under
      ``HF_HUB_OFFLINE=1``; ``vlm`` is the inner ``SmolVLMModel`` / ``Idefics3Model`` (``.model``).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers import SmolVLMModel

    if pcfg.backbone in ("tiny", C.SMOLVLM2_500M_RANDOM):
        tok = build_tiny_tokenizer()
        image_id = tok.convert_tokens_to_ids("<image>")
        if pcfg.backbone == "tiny":
            vcfg = C.tiny_backbone_config(pcfg, vocab_size=len(tok), image_token_id=image_id,
                                          pad_token_id=tok.pad_token_id)
        else:
            vcfg = C.smolvlm2_500m_random_config(image_token_id=image_id, pad_token_id=tok.pad_token_id)
        vlm = SmolVLMModel(vcfg)
        return vlm.to(_dtype(pcfg.dtype)), tok, vcfg

    from ...paths import resolve

    path = resolve(pcfg.backbone)
    if not path.is_dir() or not (path / "config.json").exists():
        raise FileNotFoundError(
            f"model.policy.backbone={pcfg.backbone!r}: {path} is not a local model directory with config.json. "
            "hlrp never downloads weights: download SmolVLM2 once elsewhere and point at that directory, "
            "or use model.policy.backbone=tiny")
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    full = AutoModelForImageTextToText.from_pretrained(str(path), local_files_only=True, dtype=_dtype(pcfg.dtype))
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    vlm = getattr(full, "model", full)
    return vlm, tok, vlm.config


class LatentPolicy(nn.Module):
    """Backbone + pooled readout + the mode's heads.

    Args:
        pcfg: ``model.policy`` config.
        spec: the frozen LAQ's (K, S, D).
        codebook: the LAQ's codebook [K, D] (raw space), kept as a buffer for nearest-code decoding.
        backbone: optional prebuilt ``(vlm, tokenizer, vlm_config)`` (tests reuse one tiny build).
    """

    def __init__(self, pcfg: PolicyConfig, spec: LatentSpec, codebook: Optional[torch.Tensor] = None,
                 backbone: Optional[tuple[nn.Module, Any, Any]] = None):
        super().__init__()
        self.pcfg, self.spec = pcfg, spec
        self.vlm, self.tokenizer, self.vlm_config = backbone if backbone is not None else build_backbone(pcfg)
        self.image_size = C.backbone_image_size(self.vlm_config)
        if pcfg.image_size and pcfg.image_size != self.image_size:
            raise ValueError(f"model.policy.image_size={pcfg.image_size} but the backbone's vision tower expects "
                             f"{self.image_size}; set model.policy.image_size=0 (= the backbone's) or {self.image_size}")
        self.processor = PolicyProcessor(self.tokenizer, self.image_size, C.image_tokens_per_image(self.vlm_config),
                                         pcfg.system_prompt, pcfg.max_text_tokens)
        if self.processor.image_token_id != self.vlm_config.image_token_id:
            raise ValueError(f"tokenizer <image> id {self.processor.image_token_id} != backbone image_token_id "
                             f"{self.vlm_config.image_token_id}")
        self.hidden_size = int(self.vlm_config.text_config.hidden_size)
        head_hidden = pcfg.flow_hidden_dim or self.hidden_size
        head_hidden += head_hidden % 2
        if pcfg.freeze_vision:
            frozen = 0
            for name, p in self.vlm.named_parameters():
                if name.startswith(("vision_model.", "connector.")):
                    p.requires_grad_(False)
                    frozen += 1
            if frozen == 0:
                raise ValueError("model.policy.freeze_vision=true matched no parameter (vision_model.*, connector.*)")
        mode = pcfg.mode
        self.flow_head = FlowHead(spec.flat_dim, self.hidden_size, head_hidden, pcfg.min_period, pcfg.max_period) \
            if mode in ("latent_flow", "multitask") else None
        self.code_head = CodeHead(self.hidden_size, head_hidden, spec.code_seq_len, spec.codebook_size) \
            if mode == "codes" else None
        self.action_head = ActionHead(self.hidden_size, head_hidden, int(pcfg.action_dim)) \
            if mode in ("actions", "multitask") else None
        cb = codebook.detach().float().cpu() if codebook is not None else torch.zeros(spec.codebook_size, spec.code_dim)
        if tuple(cb.shape) != (spec.codebook_size, spec.code_dim):
            raise ValueError(f"codebook shape {tuple(cb.shape)} != (K, D) = {(spec.codebook_size, spec.code_dim)}")
        self.register_buffer("codebook", cb.clone())
        mean, std = self.codebook_stats(cb, spec, pcfg.standardize_latents)
        self.register_buffer("latent_mean", mean)
        self.register_buffer("latent_std", std)

    # -- latents
    @staticmethod
    def codebook_stats(codebook: torch.Tensor, spec: LatentSpec, standardize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean/std of the codebook entries (every possible target), tiled over the S slots; identity
        when ``standardize`` is off. std is floored at 1e-3."""
        if not standardize:
            return torch.zeros(spec.flat_dim), torch.ones(spec.flat_dim)
        mean = codebook.float().mean(0)
        std = codebook.float().std(0, unbiased=False).clamp_min(1e-3)
        return mean.repeat(spec.code_seq_len), std.repeat(spec.code_seq_len)

    def standardize(self, vectors: torch.Tensor) -> torch.Tensor:
        """[B,S,D] raw → [B,S·D] standardised."""
        return (vectors.float().reshape(vectors.shape[0], -1) - self.latent_mean) / self.latent_std

    def unstandardize(self, flat: torch.Tensor) -> torch.Tensor:
        """[B,S·D] standardised → [B,S,D] raw."""
        x = flat.float() * self.latent_std + self.latent_mean
        return x.view(-1, self.spec.code_seq_len, self.spec.code_dim)

    # -- backbone
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """Backbone over [image tokens; prompt] → readout (``model.policy.readout``) of the last hidden state →
        [B,H] fp32."""
        dtype = next(self.vlm.parameters()).dtype
        out = self.vlm(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values.to(dtype),
                       use_cache=False)
        h = out.last_hidden_state.float()
        m = attention_mask.unsqueeze(-1).float()
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        if self.pcfg.readout == "mean":
            return mean
        last_idx = (attention_mask.sum(1) - 1).clamp_min(0)
        last = h[torch.arange(h.shape[0], device=h.device), last_idx]
        return last if self.pcfg.readout == "last" else 0.5 * (mean + last)

    def inputs(self, frames: torch.Tensor, language, device: Any = None) -> dict[str, torch.Tensor]:
        enc = self.processor(frames, language)
        device = device or next(self.parameters()).device
        return {k: v.to(device) for k, v in enc.items()}

    # -- losses
    def flow_loss(self, pooled: torch.Tensor, vectors: torch.Tensor,
                  generator: Optional[torch.Generator] = None, t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Velocity MSE (mean over batch and dims) on standardised targets."""
        x0 = self.standardize(vectors)
        if generator is None:
            noise = torch.randn_like(x0)
        else:
            noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        if t is None:
            pc = self.pcfg
            t = sample_time(x0.shape[0], pc.time_beta_alpha, pc.time_beta_beta, generator=generator, device=x0.device)
        x_t = interpolate(x0, noise, t)
        v = self.flow_head(x_t, t, pooled)
        return F.mse_loss(v, velocity_target(x0, noise))

    def sample_latents(self, pooled: torch.Tensor, generator: Optional[torch.Generator] = None,
                       steps: Optional[int] = None) -> torch.Tensor:
        """N-step Euler sample → raw-space vectors [B,S,D]."""
        shape = (pooled.shape[0], self.spec.flat_dim)
        noise = torch.randn(shape, generator=generator).to(pooled.device) if generator is not None \
            else torch.randn(shape, device=pooled.device)
        flat = euler_sample(lambda x, t: self.flow_head(x, t, pooled), noise, steps or self.pcfg.flow_steps)
        return self.unstandardize(flat)

    def decode_codes(self, vectors: torch.Tensor) -> torch.Tensor:
        return nearest_codes(vectors, self.codebook)

    def head_manifest(self) -> dict:
        return {"mode": self.pcfg.mode, "spec": asdict(self.spec), "hidden_size": self.hidden_size,
                "heads": [n for n in ("flow_head", "code_head", "action_head") if getattr(self, n) is not None]}


def action_mse(pred: torch.Tensor, target: torch.Tensor, action_dim: Optional[torch.Tensor] = None) -> torch.Tensor:
    """MSE over the first A columns of a zero-padded action batch, masking each sample's padded dims
    (``action_dim`` [B]); a target narrower than the head raises naming both widths."""
    A = pred.shape[1]
    if target.shape[1] < A:
        raise ValueError(f"batch action width {target.shape[1]} < model.policy.action_dim={A}: "
                         f"set model.policy.action_dim={target.shape[1]} (or fewer)")
    target = target[:, :A].float()
    mask = torch.ones_like(target)
    if action_dim is not None:
        mask = (torch.arange(A, device=target.device)[None, :] < action_dim.to(target.device)[:, None]).float()
    return ((pred.float() - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable)."""
    total = sum(p.numel() for p in module.parameters())
    return total, sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["LatentSpec", "LatentPolicy", "FlowHead", "CodeHead", "ActionHead", "build_backbone", "sample_time",
           "interpolate", "velocity_target", "sinusoidal_time_embedding", "euler_sample", "nearest_codes",
           "action_mse", "count_parameters"]
