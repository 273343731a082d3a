"""The input files a run needs, checked before its run directory exists (floor 1; cheap: no tensors are read).

``check_inputs(cfg)`` lists one problem per bad input -- the data root (``data.root``), the Stage-1 artifact
(``model.laq.artifact``) and the checkpoint to resume (``training.resume_from``) -- each naming the knob, the value
and the fix. ``hlrp run`` and ``runs.start`` raise them as one ``ConfigError`` before anything is written.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from .paths import resolve


def checkpoint_problem(path: str | os.PathLike, knob: str = "training.resume_from") -> str:
    """Why ``path`` cannot be a torch checkpoint (missing, a directory, empty, not a zip archive -- a truncated
    ``torch.save`` file has no zip directory), or "" when it looks like one."""
    p = resolve(path)
    if p.is_dir():
        hint = p / "ckpt" / "last.ckpt"
        return (f"{knob}={str(path)!r} is a directory; point it at a checkpoint file"
                + (f", e.g. {hint}" if hint.exists() else ", e.g. <old run>/ckpt/last.ckpt"))
    if not p.exists():
        return f"{knob}={str(path)!r}: no such checkpoint ({p}); point it at <old run>/ckpt/last.ckpt"
    size = p.stat().st_size
    if size == 0 or not zipfile.is_zipfile(p):
        return (f"{knob}={str(path)!r}: {p} is not a readable torch checkpoint (truncated, or not a checkpoint: "
                f"{size} bytes); point it at another checkpoint, e.g. an earlier ckpt/step_*.ckpt")
    return ""


def artifact_problem(path: str | os.PathLike, knob: str = "model.laq.artifact") -> str:
    p = resolve(path)
    if p.is_dir():
        if any((p / c).exists() for c in ("artifacts/laq_artifact.pt", "laq_artifact.pt")):
            return ""
        return (f"{knob}={str(path)!r} is a directory without artifacts/laq_artifact.pt; did the Stage-1 run "
                "finish? (a FAILED or diverged run writes no artifact)")
    if not p.exists():
        return f"{knob}={str(path)!r}: no such file ({p}); point it at <stage-1 run>/artifacts/laq_artifact.pt"
    if p.stat().st_size == 0 or not zipfile.is_zipfile(p):
        return f"{knob}={str(path)!r}: {p} is not a readable artifact (truncated or not written by torch.save)"
    return ""


def check_inputs(cfg: Any) -> list[str]:
    """Problems of the input files ``cfg`` names (empty list = all present and plausible)."""
    problems = []
    root = getattr(getattr(cfg, "data", None), "root", "")
    if root and not resolve(root).is_dir():
        problems.append(f"data.root={root!r}: no such directory ({resolve(root)}); point it at the dataset mirror "
                        "(<root>/<tfds_dir>/<version>/) or leave it empty for the embedded data")
    laq = getattr(getattr(cfg, "model", None), "laq", None)
    if laq is not None and getattr(laq, "artifact", None) and getattr(cfg.model, "name", "") == "policy":
        problems += [p for p in [artifact_problem(laq.artifact)] if p]
    resume = getattr(getattr(cfg, "training", None), "resume_from", None)
    if resume:
        problems += [p for p in [checkpoint_problem(resume)] if p]
    return problems
