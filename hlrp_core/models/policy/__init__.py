"""Stage-2 latent-action policy: SmolVLM/Idefics3 backbone (tiny random-init or a local directory), hlrp-side
image/prompt processing and the latent_flow / codes / actions / multitask heads."""

from .configuration import SMOLVLM2_500M_RANDOM, image_tokens_per_image
from .modeling import (ActionHead, CodeHead, FlowHead, LatentPolicy, LatentSpec, action_mse, build_backbone,
                       count_parameters, euler_sample, interpolate, nearest_codes, sample_time,
                       sinusoidal_time_embedding, velocity_target)
from .processing import PolicyProcessor, build_tiny_tokenizer, pad_resize, tokenizer_hash

__all__ = ["SMOLVLM2_500M_RANDOM", "image_tokens_per_image", "ActionHead", "CodeHead", "FlowHead", "LatentPolicy",
           "LatentSpec", "action_mse", "build_backbone", "count_parameters", "euler_sample", "interpolate",
           "nearest_codes", "sample_time", "sinusoidal_time_embedding", "velocity_target", "PolicyProcessor",
           "build_tiny_tokenizer", "pad_resize", "tokenizer_hash"]
