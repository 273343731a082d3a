"""``model.policy.*``: the Stage-2 latent-action policy (docs/MODELS.md section 2).

A SmolVLM/Idefics3-family backbone (tiny random-init config by default, or a local directory), a pooled readout
and one of four heads/modes. Everything here is checked before any model, tokenizer or data pipeline exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import check, check_choice

POLICY_MODES = ["latent_flow", "codes", "actions", "multitask"]


@dataclass
class TinyBackboneConfig:
    """Sizes of the tiny random-init SmolVLM (docs/MODELS.md section 3); used when ``model.policy.backbone=tiny``.

    Args:
        vision_hidden: Vision tower width.
        vision_intermediate: Vision MLP width.
        vision_layers: Vision transformer layers.
        vision_heads: Vision attention heads.
        patch_size: Vision patch side in pixels (``image_size / patch_size`` must be divisible by ``scale_factor``).
        text_hidden: Text model width H (the pooled feature width).
        text_intermediate: Text MLP width.
        text_layers: Text decoder layers.
        text_heads: Text attention heads.
        text_kv_heads: Text key/value heads (GQA).
        max_positions: Text positions (image tokens + prompt tokens must fit).
        scale_factor: Pixel-shuffle factor of the connector (image tokens = (image_size/patch)^2 / scale^2).
    """

    vision_hidden: int = 32
    vision_intermediate: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    patch_size: int = 8
    text_hidden: int = 64
    text_intermediate: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    max_positions: int = 256
    scale_factor: int = 2


@dataclass
class PolicyConfig:
    """``model.policy.*``.

    Args:
        backbone: ``tiny`` (random-init tiny SmolVLM built from ``tiny``; offline, the default),
            ``smolvlm2_500m_random`` (SmolVLM2-500M dimensions, random init; GPU throughput checks) or a local
            directory holding a SmolVLM/Idefics3 checkpoint + tokenizer (loaded with ``local_files_only=True``
            under ``HF_HUB_OFFLINE=1``; no hub id is ever accepted).
        tiny: Tiny backbone sizes.
        mode: ``latent_flow`` (flow matching over LAQ codebook vectors), ``codes`` (per-position classification
            over the LAQ codebook), ``actions`` (regression on true actions) or ``multitask`` (latent flow + actions).
        image_size: Side of the square the first frame is pad-resized to (aspect kept, pad 0 bottom/right).
            0 = the backbone's own vision ``image_size`` (64 for tiny, 512 for SmolVLM2-500M).
        system_prompt: Text placed before the instruction (``"{system_prompt}\\n{instruction}"``).
        max_text_tokens: Truncation length of the text part of the prompt (image tokens come on top).
        readout: How the backbone's last hidden states become the head input [B,H]: ``mean`` (masked mean over
            image + prompt tokens, the predecessor's pooled head), ``last`` (the last prompt token, which attends to
            everything before it) or ``mean_last`` (the average of the two).
        dtype: Backbone dtype: ``float32`` or ``bfloat16`` (heads, time embeddings and losses always run in fp32).
        freeze_vision: Freeze the vision tower and connector (raises if the pattern matches no parameters).
        flow_steps: Euler steps when sampling the flow head (docs/MODELS.md 2.3; [pred] 8).
        flow_hidden_dim: Hidden width of the flow / code / action heads (0 = the backbone width H).
        min_period: Smallest period of the sinusoidal time embedding.
        max_period: Largest period of the sinusoidal time embedding.
        time_beta_alpha: Beta(alpha, beta) time sampling, alpha (torch ``concentration1``).
        time_beta_beta: Beta(alpha, beta) time sampling, beta (torch ``concentration0``).
        standardize_latents: Standardise flow targets per dimension with statistics of the first training
            batches (stored as buffers, in checkpoints and in the artifact); un-standardised before decoding.
        latent_stats_batches: Training batches used to estimate the latent mean/std (at the first steps).
        latent_loss_weight: Weight of the flow (or code) loss.
        action_loss_weight: Weight of the action MSE in ``multitask`` (and 1.0 is used in ``actions`` mode).
        action_dim: Action width predicted by the action head; null = the batch's padded width is not used and
            ``actions``/``multitask`` are refused. Padded dimensions (per-sample ``action_dim``) are masked.
        val_flow_seed: Seed of the fixed flow noise used at validation (the same items get the same noise).
        val_vote_samples: ``latent_flow``: extra fixed-seed flow samples per validation item whose nearest codes are
            majority-voted per position (``val/token_accuracy_vote``, an estimate of the conditional mode; a single
            sample's accuracy is capped near sum_k p_k^2 when the labels are ambiguous). 0 = off.
    """

    backbone: str = "tiny"
    tiny: TinyBackboneConfig = field(default_factory=TinyBackboneConfig)
    mode: str = "latent_flow"
    image_size: int = 0
    system_prompt: str = "You are a robot. Predict the latent action for the instruction."
    max_text_tokens: int = 48
    readout: str = "mean"
    dtype: str = "float32"
    freeze_vision: bool = False
    flow_steps: int = 8
    flow_hidden_dim: int = 0
    min_period: float = 4.0e-3
    max_period: float = 4.0
    time_beta_alpha: float = 1.5
    time_beta_beta: float = 1.0
    standardize_latents: bool = True
    latent_stats_batches: int = 4
    latent_loss_weight: float = 1.0
    action_loss_weight: float = 1.0
    action_dim: Optional[int] = None
    val_flow_seed: int = 1234
    val_vote_samples: int = 8

    def validate(self, problems: list[str]) -> None:
        check_choice(problems, "model.policy.mode", self.mode, POLICY_MODES)
        check_choice(problems, "model.policy.readout", self.readout, ["mean", "last", "mean_last"])
        check_choice(problems, "model.policy.dtype", self.dtype, ["float32", "bfloat16"])
        check(problems, bool(self.backbone), "model.policy.backbone is empty; use 'tiny' or a local directory")
        if self.backbone not in ("tiny", "smolvlm2_500m_random"):
            check(problems, "/" in self.backbone or self.backbone.startswith("."),
                  f"model.policy.backbone={self.backbone!r} looks like a hub id; hlrp never downloads models. "
                  "Use 'tiny' or a local directory path (absolute, or relative to the repo)")
        t = self.tiny
        img = self.image_size or 64
        if self.backbone == "tiny":
            check(problems, img % t.patch_size == 0 and (img // t.patch_size) % t.scale_factor == 0,
                  f"model.policy.image_size={img} with tiny.patch_size={t.patch_size} and tiny.scale_factor="
                  f"{t.scale_factor}: image_size/patch_size must be divisible by scale_factor")
            check(problems, t.text_hidden % t.text_heads == 0,
                  f"model.policy.tiny.text_hidden={t.text_hidden} must be divisible by text_heads={t.text_heads}")
            check(problems, t.text_heads % t.text_kv_heads == 0,
                  f"model.policy.tiny.text_heads={t.text_heads} must be divisible by text_kv_heads={t.text_kv_heads}")
        check(problems, self.flow_steps >= 1, f"model.policy.flow_steps={self.flow_steps} must be >= 1")
        check(problems, 0 < self.min_period < self.max_period,
              f"model.policy.min_period={self.min_period} / max_period={self.max_period}: need 0 < min < max")
        check(problems, self.time_beta_alpha > 0 and self.time_beta_beta > 0,
              f"model.policy.time_beta_alpha/beta=({self.time_beta_alpha},{self.time_beta_beta}) must be > 0")
        check(problems, self.max_text_tokens >= 4,
              f"model.policy.max_text_tokens={self.max_text_tokens} must be >= 4")
        if self.mode in ("actions", "multitask"):
            check(problems, self.action_dim is not None and self.action_dim >= 1,
                  f"model.policy.mode={self.mode!r} needs model.policy.action_dim (the data's action width), "
                  f"got {self.action_dim}; set e.g. model.policy.action_dim=7")
