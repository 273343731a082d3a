"""Backbone configurations for the Stage-2 policy: the tiny random-init SmolVLM (docs/MODELS.md section 3), a
random-init SmolVLM2-500M-sized config (GPU throughput checks), and the rule that turns a vision config into the
number of image placeholder tokens. No function here reaches a model hub."""

from __future__ import annotations

from typing import Any

from ...config.policy import PolicyConfig

#: ``model.policy.backbone`` value for a random-init model with SmolVLM2-500M-Video-Instruct dimensions.
SMOLVLM2_500M_RANDOM = "smolvlm2_500m_random"


def tiny_backbone_config(pcfg: PolicyConfig, vocab_size: int, image_token_id: int, pad_token_id: int = 0) -> Any:
    """A ``SmolVLMConfig`` from ``pcfg.tiny`` (random init, offline). ``vocab_size``/``image_token_id`` come from
    the hand-built tokenizer so that ids always agree."""
    from transformers import SmolVLMConfig

    t = pcfg.tiny
    image_size = pcfg.image_size or 64
    return SmolVLMConfig(
        vision_config=dict(hidden_size=t.vision_hidden, intermediate_size=t.vision_intermediate,
                           num_hidden_layers=t.vision_layers, num_attention_heads=t.vision_heads,
                           image_size=image_size, patch_size=t.patch_size),
        text_config=dict(vocab_size=vocab_size, hidden_size=t.text_hidden, intermediate_size=t.text_intermediate,
                         num_hidden_layers=t.text_layers, num_attention_heads=t.text_heads,
                         num_key_value_heads=t.text_kv_heads, head_dim=t.text_hidden // t.text_heads,
                         max_position_embeddings=t.max_positions, pad_token_id=pad_token_id),
        scale_factor=t.scale_factor, image_token_id=image_token_id, pad_token_id=pad_token_id,
    )


def smolvlm2_500m_random_config(image_token_id: int, pad_token_id: int = 0) -> Any:
    """A ``SmolVLMConfig`` with the dimensions of HuggingFaceTB/SmolVLM2-500M-Video-Instruct (vision 768x12 at
    512 px / patch 16, text 960x32 with 15 heads / 5 KV heads, scale factor 4: 64 image tokens), random init.
    Written out by hand so that no config download is needed."""
    from transformers import SmolVLMConfig

    return SmolVLMConfig(
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=512, patch_size=16),
        text_config=dict(vocab_size=49280, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                         num_attention_heads=15, num_key_value_heads=5, head_dim=64,
                         max_position_embeddings=8192, rope_theta=100000.0, pad_token_id=pad_token_id),
        scale_factor=4, image_token_id=image_token_id, pad_token_id=pad_token_id,
    )


def image_tokens_per_image(vlm_config: Any) -> int:
    """Placeholder tokens per image: (image_size / patch_size)^2 / scale_factor^2 (16 for the tiny model)."""
    v = vlm_config.vision_config
    grid = v.image_size // v.patch_size
    return (grid * grid) // (vlm_config.scale_factor ** 2)


def backbone_image_size(vlm_config: Any) -> int:
    """The square side the vision tower expects."""
    return int(vlm_config.vision_config.image_size)
