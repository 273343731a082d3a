"""``model.*``: Stage 1 (LAQ) architecture at the top level (``model.dim``, ``model.code_seq_len``, ...), the
Stage-2 policy under ``model.policy.*`` and Stage 2's frozen-LAQ reference under ``model.laq.*``.

One schema serves both stages so that the override strings of both issues work unchanged
(``model.codebook_size=4096`` for Stage 1, ``model.laq.artifact=...`` for Stage 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .errors import check_choice
from .laq import LAQFields
from .policy import PolicyConfig


@dataclass
class LAQRefConfig:
    """Stage 2's frozen LAQ.

    Args:
        artifact: Path to a Stage-1 ``laq_artifact.pt``.
        checkpoint: Seed spelling (``model.laq.checkpoint``); accepted as an alias of ``artifact``.
        label_ablation: ``none``, or ``shuffled``: permute the LAQ's labels across each batch (train and
            validation), so they carry no information about the inputs; the verdict of such a run must be
            ``random-like`` (the control of "is this learning?"). The exported artifact is marked ``-shuffled``.
    """

    artifact: Optional[str] = None
    checkpoint: Optional[str] = None
    label_ablation: str = "none"


@dataclass
class ModelConfig(LAQFields):
    """``model.*``: the LAQ architecture at the top level (``model.dim``, ``model.codebook_size``: fields and
    meanings in ``LAQFields``, ``hlrp_core/config/laq.py``), plus:

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
        check_choice(problems, "model.laq.label_ablation", self.laq.label_ablation, ["none", "shuffled"])
        self.validate_laq(problems)
