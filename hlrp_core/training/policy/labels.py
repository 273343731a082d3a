"""Online frozen-LAQ labels for Stage 2 (docs/MODELS.md 2.6).

A *labeller* turns a batch's ``frames`` (uint8 ``[B,3,T,H,W]``) into code ids ``[B,S]`` int64 and raw codebook
vectors ``[B,S,D]`` float, under ``no_grad`` with the LAQ in eval mode. The policy never holds the LAQ as a
submodule, so the LAQ is not in the policy's ``state_dict``; its identity (hash, K, S, D) is recorded instead and
checked on resume and in the artifact.

``load_laq_labeller(path)`` loads the Stage-1 ``laq_artifact.pt`` through the LAQ wing's reader (``laq/artifact.py``)
and fails with the reason (missing file, wrong kind of file, manifest mismatch) before any data pipeline is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from ...models.policy.modeling import LatentSpec
from ..laq.artifact import weights_hash  # the one hash of a LAQ state dict (the artifact manifest's)


class LAQArtifactError(ValueError):
    """The Stage-1 artifact given to Stage 2 is missing, not a LAQ artifact, or incompatible."""


class LatentLabeller:
    """Interface every labeller implements (the frozen LAQ, or the stand-in used by unit tests).

    Attributes:
        spec: (K, S, D).
        codebook: ``[K, D]`` raw codebook (for nearest-code decoding of sampled vectors).
        identity: dict with at least ``hash``, ``K``, ``S``, ``D`` and ``source`` (the artifact path).
        image_size: the LAQ's input side (frames are resized to it when they differ).
    """

    spec: LatentSpec
    codebook: torch.Tensor
    identity: dict
    image_size: Optional[int] = None

    def label(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def to(self, device: Any) -> "LatentLabeller":
        return self


def _frames_float(frames: torch.Tensor, image_size: Optional[int]) -> torch.Tensor:
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    if image_size and tuple(x.shape[-2:]) != (image_size, image_size):
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        y = torch.nn.functional.interpolate(y, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = y.view(b, t, c, image_size, image_size).permute(0, 2, 1, 3, 4)
    return x


class FrozenLAQLabeller(LatentLabeller):
    """Wraps a Stage-1 LAQ module. ``encode`` is a callable ``(model, frames_float [B,3,T,H,W]) -> (codes,
    vectors)`` chosen by ``load_laq_labeller`` from what the LAQ package provides."""

    def __init__(self, model: nn.Module, encode, spec: LatentSpec, codebook: torch.Tensor, identity: dict,
                 image_size: Optional[int]):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._encode = encode
        self.spec, self.codebook, self.identity, self.image_size = spec, codebook.detach().float(), identity, image_size

    def to(self, device: Any) -> "FrozenLAQLabeller":
        self.model.to(device)
        return self

    @torch.no_grad()
    def label(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()  # Lightning's train() on the policy never reaches this module; keep it so anyway
        device = next(self.model.parameters()).device
        x = _frames_float(frames.to(device), self.image_size)
        codes, vectors = self._encode(self.model, x)
        return codes.long().detach(), vectors.float().detach()


def load_laq_labeller(path: Optional[str], device: Any = "cpu") -> FrozenLAQLabeller:
    """Load the frozen Stage-1 LAQ from ``laq_artifact.pt``.

    Raises ``LAQArtifactError`` naming the problem (no path given, missing file, not a LAQ artifact, the LAQ
    loader's own validation error) -- always before any data pipeline exists."""
    if not path:
        raise LAQArtifactError(
            "model.laq.artifact is not set: Stage 2 needs the Stage-1 artifact, e.g. "
            "--set model.laq.artifact=<stage-1 run>/artifacts/laq_artifact.pt")
    from ...paths import resolve

    p = resolve(path)
    if not p.exists():
        raise LAQArtifactError(f"model.laq.artifact={path!r}: file not found ({p}). Point it at a finished "
                               "Stage-1 run's artifacts/laq_artifact.pt")
    if p.is_dir():  # a Stage-1 run directory
        cands = [p / "artifacts" / "laq_artifact.pt", p / "laq_artifact.pt"]
        found = [c for c in cands if c.exists()]
        if not found:
            raise LAQArtifactError(f"model.laq.artifact={path!r} is a directory without artifacts/laq_artifact.pt "
                                   "(or laq_artifact.pt); did the Stage-1 run finish?")
        p = found[0]
    from ..laq.artifact import load_laq_artifact  # the one reader of the Stage-1 artifact

    try:
        model, manifest = load_laq_artifact(p)
    except Exception as e:
        raise LAQArtifactError(f"model.laq.artifact={path!r} is not a usable Stage-1 LAQ artifact: "
                               f"{type(e).__name__}: {e}") from e
    return labeller_from_laq(model, manifest or {}, str(p)).to(device)


def smoke_laq_artifact(cfg: Any, out_dir: str | Path) -> Path:
    """The smoke-time stand-in for a missing ``model.laq.artifact`` (nbval runs notebook 11 on its defaults with
    no Stage-1 run): a random-init LAQ with the default ``LAQConfig`` at ``data.preprocess.image_size`` (seeded by
    ``cfg.seed``), written through the Stage-1 writer to ``<out_dir>/artifacts/smoke_laq/laq_artifact.pt`` so
    Stage 2 loads it through the real loader. Only for ``cfg.smoke``: a real run without an artifact fails."""
    from ...models.laq import LAQConfig, LAQModel
    from ..laq.artifact import ARTIFACT_NAME, save_laq_artifact

    if not cfg.smoke:
        raise LAQArtifactError("smoke_laq_artifact is for smoke runs only; set model.laq.artifact")
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg.seed))
        model = LAQModel(LAQConfig(image_size=int(cfg.data.preprocess.image_size)))
    return save_laq_artifact(model, Path(out_dir) / "artifacts" / "smoke_laq" / ARTIFACT_NAME,
                             source_run_dir="smoke: random-init LAQ (no model.laq.artifact given)", global_step=0,
                             resize_mode=cfg.data.preprocess.resize_mode)


def labeller_from_laq(model: nn.Module, manifest: dict, source: str) -> FrozenLAQLabeller:
    """Adapt a loaded LAQ module: find its (codes, raw vectors) entry point and its (K, S, D)."""
    cfg = getattr(model, "config", None) or getattr(model, "cfg", None)
    K = int(getattr(cfg, "codebook_size", 0) or manifest.get("codebook_size", 0))
    S = int(getattr(cfg, "code_seq_len", 0) or manifest.get("code_seq_len", 0))
    D = int(getattr(cfg, "code_dim", 0) or manifest.get("code_dim", 0))
    image_size = int(getattr(cfg, "image_size", 0) or manifest.get("image_size", 0) or 0) or None
    if not (K and S and D):
        raise LAQArtifactError(f"{source}: cannot read codebook_size/code_seq_len/code_dim from the LAQ "
                               f"(got K={K}, S={S}, D={D})")
    codebook = None
    for name in ("codebook", "codebook_vectors"):
        fn = getattr(model, name, None)
        if fn is not None:
            codebook = fn() if callable(fn) else fn
            break
    if codebook is None:
        q = getattr(model, "quantizer", None) or getattr(model, "vq", None)
        fn = getattr(q, "codebook", None)
        codebook = fn() if callable(fn) else fn
    if codebook is None:  # FSQ: the grid points of every code id
        q = getattr(model, "quantizer", None)
        if q is not None and hasattr(q, "lookup"):
            with torch.no_grad():
                codebook = q.lookup(torch.arange(K))
    if codebook is None:
        raise LAQArtifactError(f"{source}: the LAQ exposes no codebook [K, D]")
    codebook = codebook.detach().float().cpu()
    if tuple(codebook.shape) != (K, D):
        raise LAQArtifactError(f"{source}: codebook shape {tuple(codebook.shape)} != (K, D) = {(K, D)}")

    def encode(m: nn.Module, x: torch.Tensor):
        for name in ("latent_labels", "encode_latents", "label", "encode_codes"):
            fn = getattr(m, name, None)
            if fn is not None:
                out = fn(x)
                break
        else:
            raise LAQArtifactError(f"{source}: the LAQ has no latent_labels()/encode_latents() method")
        if isinstance(out, dict):
            codes = out.get("codes", out.get("indices"))
            vectors = out.get("vectors", out.get("code_vectors", out.get("raw_vectors")))
        else:
            codes, vectors = out[0], out[1]
        return codes, vectors

    ident = {"hash": manifest.get("weights_hash") or weights_hash(model.state_dict()), "K": K, "S": S, "D": D,
             "source": source, "image_size": image_size, "quantizer": manifest.get("quantizer")}
    return FrozenLAQLabeller(model, encode, LatentSpec(K, S, D), codebook, ident, image_size)


class StandInLabeller(LatentLabeller):
    """A deterministic stand-in for unit tests and development before a Stage-1 artifact exists: each slot s's
    code is the quantised direction of the brightness-weighted centroid shift between the first and the last
    frame, rotated by s; vectors are the matching rows of a fixed random codebook."""

    def __init__(self, codebook_size: int = 8, code_seq_len: int = 4, code_dim: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.spec = LatentSpec(codebook_size, code_seq_len, code_dim)
        self.codebook = torch.randn(codebook_size, code_dim, generator=g)
        self.identity = {"hash": f"standin-{seed}-{codebook_size}-{code_seq_len}-{code_dim}", "K": codebook_size,
                         "S": code_seq_len, "D": code_dim, "source": "stand-in", "image_size": None}

    @torch.no_grad()
    def label(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames.float().mean(1)  # [B,T,H,W]
        h, w = x.shape[-2:]
        ys = torch.arange(h, dtype=torch.float32)[:, None]
        xs = torch.arange(w, dtype=torch.float32)[None, :]

        def centroid(img):
            m = img.sum((-2, -1)).clamp_min(1e-6)
            return torch.stack([(img * ys).sum((-2, -1)) / m, (img * xs).sum((-2, -1)) / m], -1)

        d = centroid(x[:, -1]) - centroid(x[:, 0])
        ang = torch.atan2(d[:, 0], d[:, 1])
        K, S = self.spec.codebook_size, self.spec.code_seq_len
        base = torch.floor((ang + torch.pi + torch.pi / K) / (2 * torch.pi) * K).long() % K  # bins centred on k*2pi/K
        codes = (base[:, None] + torch.arange(S)[None, :]) % K
        return codes, self.codebook[codes]
