"""``LAQConfig``: the resolved LAQ architecture (what the model, its checkpoints and ``laq_artifact.pt`` record).

Built from the run config with ``LAQConfig.from_config(cfg)``: the ``model.*`` LAQ fields plus the image size from
``data.preprocess.image_size``. ``ARCH_KEYS`` are the fields whose change alters tensor shapes or semantics; resume and
artifact loading compare exactly these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ...config.errors import ConfigError
from ...config.laq import LAQFields

#: Fields that define the network (a mismatch makes a checkpoint/artifact incompatible).
ARCH_KEYS = ("image_size", "patch_size", "patch_embed", "patch_embed_channels", "encoder_pos_embed", "dim", "heads", "dim_head", "spatial_depth", "temporal_depth",
             "decoder_depth", "ff_mult", "attn_num_null_kv", "code_dim", "code_seq_len", "codebook_size",
             "quantizer", "reducer", "latent_norm", "decoder_residual", "decoder_cond_add", "fsq_levels", "num_frames")

#: Config keys (dotted) of the run config that map to ``LAQConfig`` fields.
CONFIG_KEYS = {k: f"model.{k}" for k in ARCH_KEYS}
CONFIG_KEYS["image_size"] = "data.preprocess.image_size"
CONFIG_KEYS.pop("num_frames")

GRID = 8  # the conv reducer needs the 8x8 token grid (docs/MODELS.md 1.4)


@dataclass
class LAQConfig(LAQFields):
    """Resolved LAQ architecture: the ``model.*`` LAQ fields (``LAQFields``, where each is documented) plus:

    Args:
        image_size: Input side in pixels (from ``data.preprocess.image_size``).
        num_frames: T, frames per clip (2: o_t, o_t+k).
    """

    image_size: int = 64
    num_frames: int = 2

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size or self.image_size // self.patch_size != GRID:
            raise ConfigError(
                f"data.preprocess.image_size={self.image_size} with model.patch_size={self.patch_size} gives a "
                f"{self.image_size / self.patch_size:g}x grid; the LAQ reducer needs {GRID}x{GRID}: set "
                f"model.patch_size={max(1, self.image_size // GRID)}")
        if self.patch_embed == "conv" and (self.patch_size % 2 or len(self.patch_embed_channels) != 2):
            raise ConfigError(
                f"model.patch_embed=conv needs an even model.patch_size (got {self.patch_size}) and two "
                f"model.patch_embed_channels (got {list(self.patch_embed_channels)}): e.g. [16, 32]")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_config(cls, cfg: Any) -> "LAQConfig":
        m = cfg.model
        kw = {k: getattr(m, k) for k in cls.__dataclass_fields__ if hasattr(m, k)}
        kw["image_size"] = int(cfg.data.preprocess.image_size)
        kw["fsq_levels"] = list(m.fsq_levels)
        kw["patch_embed_channels"] = [int(c) for c in m.patch_embed_channels]
        kw["replacement_schedule"] = [list(p) for p in m.replacement_schedule]
        kw["codebook_refit_steps"] = [int(v) for v in getattr(m, "codebook_refit_steps", [])]
        return cls(**kw)

    def to_dict(self) -> dict:
        return asdict(self)

    def arch(self) -> dict:
        return {k: getattr(self, k) for k in ARCH_KEYS}
