"""``laq_artifact.pt``: the Stage-1 LAQ weights plus a versioned manifest, written atomically; Stage 2 loads it to
label batches online (``load_laq_artifact``). Loading validates the manifest and names every mismatch.

File layout (a ``torch.save`` dict; tensors only, no pickled classes)::

    {"schema_version": "hlrp.laq_artifact.v1", "manifest": {...}, "state_dict": {name: tensor}}

Manifest: ``laq_config`` (the resolved ``LAQConfig``), ``codebook_size``, ``code_seq_len``, ``code_dim``,
``image_size``, ``quantizer``, ``weights_hash`` (sha256 over the state dict), ``preprocess`` (how frames were
resized), provenance (``source_run_dir``, ``source_global_step``), ``versions`` (torch, hlrp).
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import torch

from ..safe_checkpoint import NonFiniteWeightsError, check_finite, save_atomic

from ...models.laq import ARCH_KEYS, LAQConfig, LAQModel

SCHEMA_VERSION = "hlrp.laq_artifact.v1"
ARTIFACT_NAME = "laq_artifact.pt"


class ArtifactError(ValueError):
    """The artifact is missing, of another schema, malformed, or does not match what the caller expects."""


def weights_hash(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return ""


def build_manifest(model: LAQModel, *, source_run_dir: str = "", global_step: int = 0,
                   resize_mode: str = "", dataset_statistics: Optional[dict] = None) -> dict:
    c = model.config
    sd = {k: v for k, v in model.state_dict().items()}
    return {
        "laq_config": c.to_dict(),
        "codebook_size": c.codebook_size, "code_seq_len": c.code_seq_len, "code_dim": c.code_dim,
        "image_size": c.image_size, "quantizer": c.quantizer,
        "weights_hash": weights_hash(sd),
        "preprocess": {"image_size": c.image_size, "resize_mode": resize_mode, "scale": "uint8/255"},
        "source_run_dir": source_run_dir, "source_global_step": int(global_step),
        "versions": {"torch": str(torch.__version__), "hlrp": _version("hlrp")},
        "dataset_statistics": dict(dataset_statistics or {}),  # what the training data was normalised with
    }


def save_laq_artifact(model: LAQModel, path: str | os.PathLike, **provenance: Any) -> Path:
    """Write ``{schema_version, manifest, state_dict}`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    try:
        check_finite(state, f"LAQ artifact {path} not written")  # a diverged model is not a result
    except NonFiniteWeightsError as e:
        raise ArtifactError(str(e)) from None
    payload = {"schema_version": SCHEMA_VERSION, "manifest": build_manifest(model, **provenance),
               "state_dict": state}
    return save_atomic(payload, path, what="LAQ artifact")


def validate_manifest(manifest: dict, expect: Optional[dict] = None) -> list[str]:
    """Problems of a manifest (missing fields, bad sizes, and every mismatch with ``expect``: a dict of manifest
    keys or ``LAQConfig`` fields -> expected value)."""
    problems = []
    for key in ("laq_config", "codebook_size", "code_seq_len", "code_dim", "image_size", "quantizer",
                "weights_hash"):
        if key not in manifest:
            problems.append(f"manifest field {key!r} is missing")
    for key in ("codebook_size", "code_seq_len", "code_dim", "image_size"):
        if key in manifest and not (isinstance(manifest[key], int) and manifest[key] > 0):
            problems.append(f"manifest {key}={manifest[key]!r} must be a positive int")
    cfg = manifest.get("laq_config", {}) or {}
    for key, want in (expect or {}).items():
        have = manifest[key] if key in manifest else cfg.get(key, "<absent>")
        if have != want:
            problems.append(f"{key}: artifact has {have!r}, expected {want!r}")
    return problems


def load_laq_artifact(path: str | os.PathLike, expect: Optional[dict] = None, map_location: Any = "cpu",
                      check_hash: bool = True) -> tuple[LAQModel, dict]:
    """Load ``laq_artifact.pt`` (or a Stage-1 run directory holding ``artifacts/laq_artifact.pt``) -> (model in eval
    mode, manifest). Raises ``FileNotFoundError`` / ``ArtifactError`` naming every problem; never loads weights
    non-strictly."""
    p = Path(path)
    if p.is_dir():
        cands = [p / "artifacts" / ARTIFACT_NAME, p / ARTIFACT_NAME]
        p = next((c for c in cands if c.exists()), cands[0])
    if not p.exists():
        raise FileNotFoundError(f"{p}: no LAQ artifact; a finished Stage-1 run writes artifacts/{ARTIFACT_NAME}")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - report what the file is
        raise ArtifactError(f"{p}: not a readable LAQ artifact ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or "schema_version" not in payload:
        raise ArtifactError(f"{p}: not a LAQ artifact (no schema_version)")
    if payload["schema_version"] != SCHEMA_VERSION:
        raise ArtifactError(f"{p}: schema_version={payload['schema_version']!r} is unknown; this code reads "
                            f"{SCHEMA_VERSION!r}")
    manifest, state = payload.get("manifest", {}), payload.get("state_dict", {})
    problems = validate_manifest(manifest, expect)
    if problems:
        raise ArtifactError(f"{p}: manifest does not match:\n  - " + "\n  - ".join(problems))
    cfg_fields = set(LAQConfig.__dataclass_fields__)
    config = LAQConfig(**{k: v for k, v in manifest["laq_config"].items() if k in cfg_fields})
    model = LAQModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mism = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in sorted(set(state) & set(expected))
            if state[k].shape != expected[k].shape]
    if missing or unexpected or mism:
        raise ArtifactError(f"{p}: weights do not fit the manifest's architecture: missing {missing[:10]}, "
                            f"unexpected {unexpected[:10]}, mis-shaped {mism[:10]}")
    try:
        check_finite(state, f"{p}: refusing this LAQ artifact")
    except NonFiniteWeightsError as e:
        raise ArtifactError(f"{e}; set model.laq.artifact to the artifact of a finished, finite Stage-1 run") from None
    model.load_state_dict(state, strict=True)
    if check_hash and weights_hash(state) != manifest["weights_hash"]:
        raise ArtifactError(f"{p}: weights_hash mismatch (manifest {manifest['weights_hash']}, file "
                            f"{weights_hash(state)}); the file was modified after writing")
    model.eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    model.manifest = manifest  # type: ignore[attr-defined]
    return model, manifest


def arch_of(manifest: dict) -> dict:
    return {k: manifest.get("laq_config", {}).get(k) for k in ARCH_KEYS}
