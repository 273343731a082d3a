"""``model.*``: Stage 1 (LAQ) architecture at the top level (``model.dim``, ``model.code_seq_len``, ...), the
Stage-2 policy under ``model.policy.*`` and Stage 2's frozen-LAQ reference under ``model.laq.*``.

One schema serves both stages so that the override strings of both issues work unchanged
(``model.codebook_size=4096`` for Stage 1, ``model.laq.artifact=...`` for Stage 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .policy import PolicyConfig


@dataclass
class LAQRefConfig:
    """Stage 2's frozen LAQ.

    Args:
        artifact: Path to a Stage-1 ``laq_artifact.pt``.
        checkpoint: Seed spelling (``model.laq.checkpoint``); accepted as an alias of ``artifact``.
    """

    artifact: Optional[str] = None
    checkpoint: Optional[str] = None


@dataclass
class ModelConfig:
    """``model.*``.

    Args:
        name: Model family: ``laq`` (Stage 1) or ``policy`` (Stage 2).
        laq: Stage 2's frozen-LAQ reference.
        policy: Stage 2 policy (backbone, mode, heads); see ``config/policy.py``.
    """

    name: str = "laq"
    laq: LAQRefConfig = field(default_factory=LAQRefConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def validate(self, problems: list[str]) -> None:
        if self.laq.checkpoint and not self.laq.artifact:
            self.laq.artifact = self.laq.checkpoint
        self.policy.validate(problems)
