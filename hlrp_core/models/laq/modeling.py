"""LAQ: a LAPA-shaped latent action quantizer (docs/MODELS.md section 1).

::

    clip [B,3,T=2,H,W] in [0,1]
      |  patch embed, shared by both frames                                                  -> [B,T,8,8,dim]
      |    ``linear`` (LAPA): LayerNorm(3p^2) -> Linear -> LayerNorm(dim)
      |    ``conv``: conv3 -> GELU -> max-pool 2 -> conv3 -> GELU -> max-pool p/2 -> Linear -> LayerNorm(dim)
      |  + learned absolute position embedding (unless encoder_pos_embed=false) + time embedding
      |  spatial blocks (per frame, 64 tokens)  x spatial_depth
      |  temporal blocks (per cell, T tokens, causal)  x temporal_depth
      |  to_code: Linear(dim -> D); delta = last - first                                  -> [B,D,8,8]
      |  reducer (LAPA conv, or conv + max-pool) 8x8 -> 2x2 | 2x1 | 1x1                 -> [B,S,D]
      |  optional BatchNorm over D (latent_norm=batch), then norm sqrt(D) per vector (batch_l2)
      |  quantizer (NSVQ | VQ-EMA | FSQ)                -> codes [B,S], vectors [B,S,D], z [B,S,D]
      v
    decoder: patch tokens of o_t (own embedding) [+ Linear(project_out(z) flattened), when decoder_cond_add]
             x decoder_depth blocks of
             [self-attention, cross-attention to project_out(z) (S tokens), GEGLU]
             -> Linear(dim -> 3p^2) -> o_t + residual (or pixels)                          -> [B,3,H,W]

Blocks follow the predecessor: PEG (depthwise conv, causal in time) -> attention with l2-normalised q/k, learned
per-dim scales, logit scale 8 and null key/value slots -> GEGLU feed-forward. Positions: learned absolute embeddings
plus the PEG (instead of LAPA's continuous relative bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import LAQConfig
from .quantizers import BaseQuantizer, batch_perplexity, build_quantizer


# ----------------------------------------------------------------------------------------------- building blocks
class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    inner = dim * mult
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner * 2, bias=False), GEGLU(),
                         nn.Linear(inner, dim, bias=False))


class Attention(nn.Module):
    """Multi-head attention with l2-normalised q/k, learned per-dim q/k scales, logit scale 8 and null KV slots.
    ``context`` given -> cross-attention; ``causal`` -> causal self-attention."""

    def __init__(self, dim: int, heads: int, dim_head: int, num_null_kv: int = 2, scale: float = 8.0,
                 context_dim: Optional[int] = None):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, scale
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(context_dim) if context_dim else None
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.null_kv = nn.Parameter(torch.randn(2, heads, num_null_kv, dim_head))  # (2, h, n_null, dh)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        ctx = self.context_norm(context) if context is not None else x                 # (b, m, c)
        q = self.to_q(x)                                                                # (b, n, h*dh)
        k, v = self.to_kv(ctx).chunk(2, dim=-1)                                         # (b, m, h*dh) x2
        q, k, v = (t.view(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (b, h, *, dh)
        nk, nv = (t.unsqueeze(0).expand(b, -1, -1, -1) for t in self.null_kv)         # (b, h, n_null, dh)
        k, v = torch.cat([nk, k], dim=2), torch.cat([nv, v], dim=2)                     # (b, h, n_null+m, dh)
        q = F.normalize(q, dim=-1) * self.q_scale                                       # (b, h, n, dh)
        k = F.normalize(k, dim=-1) * self.k_scale                                       # (b, h, n_null+m, dh)
        mask = None
        if causal:
            m, n_null = k.shape[2] - self.null_kv.shape[2], self.null_kv.shape[2]
            tri = torch.ones(n, m, dtype=torch.bool, device=x.device).tril()            # (n, m)
            mask = torch.cat([torch.ones(n, n_null, dtype=torch.bool, device=x.device), tri], dim=1)  # (n, n_null+m)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)  # (b, h, n, dh)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))                       # (b, n, dim)


class PEG(nn.Module):
    """Position-generating depthwise conv over (T, H, W); causal in time (pads only the past)."""

    def __init__(self, dim: int, causal_time: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, 3, groups=dim)
        self.causal_time = causal_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, h, w, dim)
        y = x.permute(0, 4, 1, 2, 3)                                                    # (B, dim, T, h, w)
        tpad = (2, 0) if self.causal_time else (1, 1)
        y = F.pad(y, (1, 1, 1, 1, *tpad))                                               # (B, dim, T+2, h+2, w+2)
        return self.conv(y).permute(0, 2, 3, 4, 1)                                      # (B, T, h, w, dim)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int, num_null_kv: int,
                 cross_dim: Optional[int] = None, peg: bool = True):
        super().__init__()
        self.peg = PEG(dim) if peg else None
        self.attn = Attention(dim, heads, dim_head, num_null_kv)
        self.cross = Attention(dim, heads, dim_head, num_null_kv, context_dim=cross_dim) if cross_dim else None
        self.ff = feed_forward(dim, ff_mult)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int], causal: bool = False,
                context: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x: (B', n, dim) tokens; grid = (T, h, w) of the full video for the PEG
        if self.peg is not None:
            t, h, w = grid
            full = x.reshape(-1, t, h, w, x.shape[-1])                                  # (B, T, h, w, dim)
            x = x + self.peg(full).reshape(x.shape)                                     # (B', n, dim)
        x = x + self.attn(x, causal=causal)                                             # (B', n, dim)
        if self.cross is not None:
            x = x + self.cross(x, context=context)                                      # (B', n, dim)
        return x + self.ff(x)                                                           # (B', n, dim)


class PatchEmbed(nn.Module):
    """Per patch: LayerNorm(3 p^2) -> Linear -> LayerNorm(dim)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch = patch
        pdim = 3 * patch * patch
        self.net = nn.Sequential(nn.LayerNorm(pdim), nn.Linear(pdim, dim), nn.LayerNorm(dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (B, 3, T, H, W) float
        b, c, t, hh, ww = frames.shape
        p = self.patch
        x = frames.view(b, c, t, hh // p, p, ww // p, p)                                # (B, 3, T, h, p, w, p)
        x = x.permute(0, 2, 3, 5, 1, 4, 6).reshape(b, t, hh // p, ww // p, c * p * p)   # (B, T, h, w, 3p^2)
        return self.net(x)                                                              # (B, T, h, w, dim)


class ConvPatchEmbed(nn.Module):
    """Shift-robust tokens: two stride-1 3x3 convs at pixel resolution, each followed by a max-pool, so a token is a
    max over its p x p patch of translation-equivariant features.

    Why (measured on the embedded procedural data, 2026-11-25): with the linear patch embedding, 75% of the LAQ latent's
    variance followed the moving object's sub-patch phase (its position mod p; R2 0.8 from cos/sin of it), so the
    codebook split on phase instead of motion (laq_tiny at 1500 steps: NMI 0.34, probe R2 0.58). With this stem (plus
    ``encoder_pos_embed=false``, ``latent_norm=batch``, center-crop framing) the same run gives NMI 0.63, probe R2 0.94."""

    def __init__(self, patch: int, dim: int, channels: list[int]):
        super().__init__()
        c1, c2 = channels
        self.patch = patch
        self.net = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
                                 nn.Conv2d(c1, c2, 3, padding=1), nn.GELU(), nn.MaxPool2d(patch // 2))
        self.out = nn.Sequential(nn.Linear(c2, dim), nn.LayerNorm(dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (B, 3, T, H, W) float
        b, c, t, hh, ww = frames.shape
        x = frames.transpose(1, 2).reshape(b * t, c, hh, ww)                             # (B*T, 3, H, W)
        y = self.net(x)                                                                 # (B*T, c2, h, w)
        y = y.permute(0, 2, 3, 1).reshape(b, t, hh // self.patch, ww // self.patch, -1)  # (B, T, h, w, c2)
        return self.out(y)                                                              # (B, T, h, w, dim)


def build_patch_embed(config: LAQConfig) -> nn.Module:
    if config.patch_embed == "conv":
        return ConvPatchEmbed(config.patch_size, config.dim, list(config.patch_embed_channels))
    return PatchEmbed(config.patch_size, config.dim)


def build_reducer(code_dim: int, code_seq_len: int, kind: str = "conv") -> nn.Sequential:
    """D x 8 x 8 delta -> S code vectors (docs/MODELS.md 1.4): 4 -> 2x2, 2 -> 2x1, 1 -> 1x1.

    ``conv`` (LAPA): conv3 s2 p1, ReLU, then a position-specific last conv (3 / (3,4) / 4 kernel).
    ``maxpool``: conv3 p1 (D -> 4D), ReLU, conv1 (4D -> D), adaptive max-pool to the same 2x2 / 2x1 / 1x1 layout:
    translation-invariant, so a motion seen at one place trains every place (much faster on small data)."""
    if kind == "maxpool":
        out = {4: (2, 2), 2: (2, 1), 1: (1, 1)}[code_seq_len]
        return nn.Sequential(nn.Conv2d(code_dim, 4 * code_dim, 3, 1, 1), nn.ReLU(),
                             nn.Conv2d(4 * code_dim, code_dim, 1), nn.AdaptiveMaxPool2d(out))
    last = {4: nn.Conv2d(code_dim, code_dim, 3, 1, 0),
            2: nn.Conv2d(code_dim, code_dim, (3, 4), 1, 0),
            1: nn.Conv2d(code_dim, code_dim, 4, 1, 0)}[code_seq_len]
    return nn.Sequential(nn.Conv2d(code_dim, code_dim, 3, 2, 1), nn.ReLU(), last)


@dataclass
class LAQOutput:
    loss: torch.Tensor            # () total loss (pixel MSE + quantizer aux loss)
    recon_loss: torch.Tensor      # () pixel MSE on o_t+k
    recon: torch.Tensor           # (B, 3, H, W) prediction of o_t+k
    codes: torch.Tensor           # (B, S) int64
    vectors: torch.Tensor         # (B, S, D) codebook vectors of the codes (before project_out)
    latents: torch.Tensor         # (B, S, D) continuous pre-quantization delta latents
    perplexity: torch.Tensor      # () batch perplexity of the codes


# ----------------------------------------------------------------------------------------------------- the model
class LAQModel(nn.Module):
    """Latent action quantizer. See the module docstring for the architecture."""

    def __init__(self, config: LAQConfig):
        super().__init__()
        c = self.config = config
        g = c.grid
        self.patch_embed = build_patch_embed(c)
        # encoder_pos_embed=false: no absolute positions in the encoder (the PEG still gives relative ones), so the
        # max-pool reducer's latent cannot depend on where in the image the motion happened
        self.pos_spatial = nn.Parameter(torch.randn(g * g, c.dim) * 0.02) if c.encoder_pos_embed else None  # (64, dim)
        self.pos_time = nn.Parameter(torch.randn(c.num_frames, c.dim) * 0.02)           # (T, dim)
        blk = dict(heads=c.heads, dim_head=c.dim_head, ff_mult=c.ff_mult, num_null_kv=c.attn_num_null_kv)
        self.spatial = nn.ModuleList([Block(c.dim, **blk) for _ in range(c.spatial_depth)])
        self.temporal = nn.ModuleList([Block(c.dim, **blk) for _ in range(c.temporal_depth)])
        self.to_code = nn.Linear(c.dim, c.code_dim)
        self.reducer = build_reducer(c.code_dim, c.code_seq_len, c.reducer)
        # latent_norm=batch: standardise each latent dim over the batch before quantizing (eval statistics are
        # recomputed on the val set by the training task before each validation).
        # Why: conv-stem latents share a large common offset with a spread of ~1% of it, so a small collective drift
        # put every item nearest to one code (3 of 4 runs collapsed); standardised latents cannot drift that way.
        self.latent_norm = nn.BatchNorm1d(c.code_dim, affine=False) if c.latent_norm in ("batch", "batch_l2") else None
        # latent_norm=batch_l2: then scale each centred latent vector to norm sqrt(D) (so its entries stay ~unit
        # size like BatchNorm's): the codes see only the direction of motion, not its length (which changed with a
        # pushed block or a smaller step and smeared each direction's cluster into its neighbours')
        self.latent_sphere = c.latent_norm == "batch_l2"
        self.quantizer: BaseQuantizer = build_quantizer(
            c.quantizer, c.code_dim, c.codebook_size, schedule=c.replacement_schedule,
            threshold=c.replacement_threshold, min_window_factor=c.replacement_min_window_factor,
            ema_decay=c.ema_decay, commitment_weight=c.commitment_weight,
            dead_code_threshold=c.dead_code_threshold, fsq_levels=c.fsq_levels, codebook_init=c.codebook_init,
            replacement_source=c.replacement_source, refit_steps=c.codebook_refit_steps,
            refit_window=c.codebook_refit_window)
        # decoder
        self.dec_patch_embed = PatchEmbed(c.patch_size, c.dim)
        self.dec_pos = nn.Parameter(torch.randn(g * g, c.dim) * 0.02)                   # (64, dim)
        self.project_out = nn.Linear(c.code_dim, c.dim)
        self.code_pos = nn.Parameter(torch.randn(c.code_seq_len, c.dim) * 0.02)        # (S, dim)
        self.cond_add = nn.Linear(c.code_seq_len * c.dim, c.dim) if c.decoder_cond_add else None
        self.decoder = nn.ModuleList([Block(c.dim, **blk, cross_dim=c.dim) for _ in range(c.decoder_depth)])
        self.dec_norm = nn.LayerNorm(c.dim)
        self.to_pixels = nn.Linear(c.dim, 3 * c.patch_size ** 2)
        if c.decoder_residual:
            nn.init.zeros_(self.to_pixels.weight)
            nn.init.zeros_(self.to_pixels.bias)

    # ---------------------------------------------------------------------------------------------------- encoder
    def encode(self, frames: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        """frames (B,3,T,H,W) float in [0,1] -> continuous delta latents (B,S,D) (last minus first, reduced).
        ``normalise=False`` skips ``latent_norm`` (the raw reducer output its statistics are computed from)."""
        c = self.config
        b, _, t, _, _ = frames.shape
        g = c.grid
        x = self.patch_embed(frames)                                                    # (B, T, g, g, dim)
        x = x + self.pos_time[:t].view(1, t, 1, 1, -1)
        if self.pos_spatial is not None:
            x = x + self.pos_spatial.view(1, 1, g, g, -1)
        x = x.reshape(b * t, g * g, c.dim)                                              # (B*T, 64, dim)
        for blk in self.spatial:
            x = blk(x, grid=(t, g, g))                                                  # (B*T, 64, dim)
        x = x.view(b, t, g * g, c.dim).transpose(1, 2).reshape(b * g * g, t, c.dim)     # (B*64, T, dim)
        for blk in self.temporal:
            x = self._temporal(blk, x, b, t, g)                                         # (B*64, T, dim)
        z = self.to_code(x).view(b, g, g, t, c.code_dim)                                # (B, g, g, T, D)
        delta = (z[:, :, :, -1] - z[:, :, :, 0]).permute(0, 3, 1, 2)                    # (B, D, g, g)
        red = self.reducer(delta)                                                       # (B, D, gh, gw)
        if normalise and self.latent_norm is not None:
            red = self.latent_norm(red.flatten(2)).view(red.shape)                      # (B, D, gh, gw)
            if self.latent_sphere:
                red = F.normalize(red, dim=1) * red.shape[1] ** 0.5                     # (B, D, gh, gw)
        return red.flatten(2).transpose(1, 2)                                           # (B, S, D)

    @staticmethod
    def _temporal(blk: Block, x: torch.Tensor, b: int, t: int, g: int) -> torch.Tensor:
        # the PEG needs (B, T, h, w, dim) order; temporal attention runs per cell over T (causal)
        if blk.peg is not None:
            full = x.view(b, g, g, t, -1).permute(0, 3, 1, 2, 4)                        # (B, T, g, g, dim)
            x = x + blk.peg(full).permute(0, 2, 3, 1, 4).reshape(x.shape)               # (B*64, T, dim)
        x = x + blk.attn(x, causal=True)                                                # (B*64, T, dim)
        return x + blk.ff(x)                                                            # (B*64, T, dim)

    # ---------------------------------------------------------------------------------------------------- decoder
    def decode(self, first: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """first (B,3,H,W) float, z (B,S,D) action vectors -> prediction of o_t+k (B,3,H,W)."""
        c = self.config
        b, _, hh, ww = first.shape
        g, p = c.grid, c.patch_size
        x = self.dec_patch_embed(first.unsqueeze(2))[:, 0]                              # (B, g, g, dim)
        x = x.reshape(b, g * g, c.dim) + self.dec_pos                                   # (B, 64, dim)
        ctx = self.project_out(z) + self.code_pos                                       # (B, S, dim)
        if self.cond_add is not None:
            x = x + self.cond_add(ctx.flatten(1))[:, None, :]                           # (B, 64, dim)
        for blk in self.decoder:
            x = blk(x, grid=(1, g, g), context=ctx)                                     # (B, 64, dim)
        pix = self.to_pixels(self.dec_norm(x))                                          # (B, 64, 3p^2)
        pix = pix.view(b, g, g, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, hh, ww)  # (B, 3, H, W)
        return first + pix if c.decoder_residual else pix

    # ---------------------------------------------------------------------------------------------------- forward
    @staticmethod
    def to_float(frames: torch.Tensor) -> torch.Tensor:
        """uint8 [0,255] -> float [0,1] on the frames' device (float input passes through)."""
        return frames.float().div_(255.0) if frames.dtype == torch.uint8 else frames

    def forward(self, frames: torch.Tensor, codes: Optional[torch.Tensor] = None) -> LAQOutput:
        """Encode, quantize and reconstruct the last frame.

        Args:
            frames: ``batch["frames"]``: uint8 or float ``[B,3,T,H,W]`` (T >= 2; the first and last frames are
                o_t and o_t+k). uint8 is divided by 255 here, on the model's device.
            codes: Optional forced code ids ``[B,S]`` (shuffled-code control, latent transfer): the decoder then
                sees their codebook vectors instead of the inferred ones.
        Returns:
            ``LAQOutput`` (loss, recon_loss, recon [B,3,H,W], codes [B,S], vectors [B,S,D], latents [B,S,D],
            perplexity).
        """
        frames = self.to_float(frames)                                                  # (B, 3, T, H, W)
        first, last = frames[:, :, 0], frames[:, :, -1]                                 # (B, 3, H, W) x2
        latents = self.encode(frames)                                                   # (B, S, D)
        q = self.quantizer(latents)
        z = q.z if codes is None else self.quantizer.lookup(codes)                      # (B, S, D)
        recon = self.decode(first, z)                                                   # (B, 3, H, W)
        sq = (recon.float() - last.float()) ** 2                                        # (B, 3, H, W)
        recon_loss = sq.mean()
        loss = recon_loss
        if self.config.motion_weight > 0:
            moved = ((last - first).abs().amax(1, keepdim=True) > 0.05).float()         # (B, 1, H, W)
            loss = (sq * (1 + self.config.motion_weight * moved)).mean()
        return LAQOutput(loss=loss + q.loss, recon_loss=recon_loss, recon=recon, codes=q.codes,
                         vectors=q.vectors, latents=latents,
                         perplexity=batch_perplexity(q.codes, self.config.codebook_size))

    @torch.no_grad()
    def label(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2 online labelling (eval mode, deterministic): frames [B,3,T,H,W] -> (codes [B,S], vectors [B,S,D])."""
        was = self.training
        self.eval()
        q = self.quantizer(self.encode(self.to_float(frames)))
        self.train(was)
        return q.codes, q.vectors
