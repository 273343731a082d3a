"""Stage 1: the LAQ latent action model (``LAQModel``), its resolved config (``LAQConfig``) and quantizers."""

from .configuration import ARCH_KEYS, LAQConfig
from .modeling import LAQModel, LAQOutput
from .quantizers import FSQ, NSVQ, VQEMA, QuantOut, batch_perplexity, build_quantizer, schedule_fires

__all__ = ["ARCH_KEYS", "FSQ", "LAQConfig", "LAQModel", "LAQOutput", "NSVQ", "QuantOut", "VQEMA",
           "batch_perplexity", "build_quantizer", "schedule_fires"]
