"""Stage-2 artifact (``artifacts/stage2_artifact.pt``, schema ``hlrp.stage2.v2``) and checkpoint compatibility.

The artifact is a ``torch.save`` of plain data only (``schema_version``, a JSON-able ``manifest`` and
``state_dict`` of CPU tensors), so it loads with ``weights_only=True``. The loader validates the manifest against
the consumer's config and names *every* mismatch in one error; weights load strictly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch

from ...io import atomic_save

STAGE2_SCHEMA = "hlrp.stage2.v2"
#: Bumped whenever the policy's loss definition changes (docs/MODELS.md, Pitfalls: compare curves within one version).
LOSS_DEFINITION = "flow_velocity_mse_std.v1"
HPARAMS_SCHEMA = 1

#: Manifest keys a consumer's config must match.
_CHECKED = ["backbone", "mode", "readout", "image_size", "image_seq_len", "latent_vector_dim", "codebook_size", "code_seq_len",
            "code_dim", "flow_steps", "flow_hidden_dim", "min_period", "max_period", "time_beta_alpha",
            "time_beta_beta", "action_dim", "tokenizer_hash", "dtype", "tiny"]


class Stage2ArtifactError(ValueError):
    """A Stage-2 artifact that cannot be used; the message lists every mismatch."""


def library_versions() -> dict:
    import transformers

    return {"torch": str(torch.__version__), "transformers": str(transformers.__version__)}


def policy_manifest(policy: Any, laq_identity: dict, source_run_dir: str = "", source_step: int = 0,
                    dataset_statistics: Optional[dict] = None) -> dict:
    """The manifest of a ``LatentPolicy`` (model, latent, flow, transforms, LAQ identity, provenance)."""
    from dataclasses import asdict

    from ...models.policy.processing import tokenizer_hash

    pc = policy.pcfg
    spec = policy.spec
    return {
        "backbone": pc.backbone, "mode": pc.mode, "readout": pc.readout, "dtype": pc.dtype, "tiny": asdict(pc.tiny) if pc.backbone == "tiny" else None,
        "image_size": policy.image_size, "image_seq_len": policy.processor.image_seq_len,
        "hidden_size": policy.hidden_size, "latent_vector_dim": spec.flat_dim, "codebook_size": spec.codebook_size,
        "code_seq_len": spec.code_seq_len, "code_dim": spec.code_dim, "flow_steps": pc.flow_steps,
        "flow_hidden_dim": pc.flow_hidden_dim, "min_period": pc.min_period, "max_period": pc.max_period,
        "time_beta_alpha": pc.time_beta_alpha, "time_beta_beta": pc.time_beta_beta, "action_dim": pc.action_dim,
        "standardize_latents": pc.standardize_latents, "tokenizer_hash": tokenizer_hash(policy.tokenizer),
        "transform": policy.processor.manifest(), "laq": dict(laq_identity), "loss_definition": LOSS_DEFINITION,
        "versions": library_versions(), "source_run_dir": str(source_run_dir), "source_global_step": int(source_step),
        "dataset_statistics": dict(dataset_statistics or {}),  # what the training data was normalised with
    }


def validate_manifest(manifest: dict) -> list[str]:
    """Producer-side checks; returns the problems."""
    p = []
    for key in ("image_size", "latent_vector_dim", "codebook_size", "code_seq_len", "code_dim", "flow_steps"):
        if not isinstance(manifest.get(key), int) or manifest[key] <= 0:
            p.append(f"manifest[{key!r}]={manifest.get(key)!r} must be a positive int")
    if not (0 < manifest.get("min_period", 0) < manifest.get("max_period", 0)):
        p.append(f"manifest periods min={manifest.get('min_period')} max={manifest.get('max_period')}: need 0<min<max")
    if not (manifest.get("time_beta_alpha", 0) > 0 and manifest.get("time_beta_beta", 0) > 0):
        p.append("manifest Beta parameters must be > 0")
    if not manifest.get("mode") or not manifest.get("backbone"):
        p.append("manifest mode/backbone must be non-empty")
    return p


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_save(path, lambda tmp: torch.save(obj, tmp))


def export_stage2_artifact(policy: Any, laq_identity: dict, run_dir: str | os.PathLike, step: int,
                           dataset_statistics: Optional[dict] = None) -> Path:
    """Write ``<run_dir>/artifacts/stage2_artifact.pt`` atomically and return its path."""
    manifest = policy_manifest(policy, laq_identity, str(run_dir), step, dataset_statistics)
    problems = validate_manifest(manifest)
    if problems:
        raise Stage2ArtifactError("refusing to write an invalid Stage-2 artifact:\n  - " + "\n  - ".join(problems))
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items() if not k.startswith("_")}
    path = Path(run_dir) / "artifacts" / "stage2_artifact.pt"
    _atomic_torch_save({"schema_version": STAGE2_SCHEMA, "manifest": manifest, "state_dict": state}, path)
    return path


def read_stage2_artifact(path: str | os.PathLike) -> dict:
    """Load and check the container (missing file -> FileNotFoundError; wrong schema -> Stage2ArtifactError)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"Stage-2 artifact not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise Stage2ArtifactError(f"{p}: not a readable Stage-2 artifact ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict) or not {"schema_version", "manifest", "state_dict"} <= set(obj):
        raise Stage2ArtifactError(f"{p}: expected a dict with schema_version/manifest/state_dict")
    if obj["schema_version"] != STAGE2_SCHEMA:
        raise Stage2ArtifactError(f"{p}: schema {obj['schema_version']!r} is unknown; this code reads "
                                  f"{STAGE2_SCHEMA!r} only")
    problems = validate_manifest(obj["manifest"])
    if problems:
        raise Stage2ArtifactError(f"{p}: invalid manifest:\n  - " + "\n  - ".join(problems))
    return obj


def manifest_mismatches(found: dict, expected: dict) -> list[str]:
    """Every checked key whose value differs: ``key: artifact=X, config=Y``."""
    out = []
    for key in _CHECKED:
        a, b = found.get(key), expected.get(key)
        if a != b:
            out.append(f"{key}: artifact={a!r}, expected={b!r}")
    fl, el = found.get("laq", {}), expected.get("laq", {})
    for key in ("hash", "K", "S", "D"):
        if fl.get(key) != el.get(key):
            out.append(f"laq.{key}: artifact={fl.get(key)!r}, expected={el.get(key)!r}")
    return out


def load_stage2_artifact(path: str | os.PathLike, policy: Optional[Any] = None,
                         laq_identity: Optional[dict] = None) -> dict:
    """Read an artifact; with ``policy`` (a freshly built ``LatentPolicy``) also check the manifest against it
    (every mismatch listed in one ``Stage2ArtifactError``) and load the weights strictly (missing/unexpected keys
    and shape mismatches listed). Returns the artifact dict."""
    obj = read_stage2_artifact(path)
    if policy is None:
        return obj
    expected = policy_manifest(policy, laq_identity or obj["manifest"].get("laq", {}))
    mism = manifest_mismatches(obj["manifest"], expected)
    if mism:
        raise Stage2ArtifactError(f"{path}: the artifact does not match this policy config ({len(mism)} "
                                  "mismatches):\n  - " + "\n  - ".join(mism))
    diff = state_dict_diff(obj["state_dict"], policy.state_dict())
    if diff:
        raise Stage2ArtifactError(f"{path}: weights do not fit the policy:\n" + diff)
    policy.load_state_dict(obj["state_dict"], strict=True)
    return obj


def state_dict_diff(found: dict, expected: dict, first_n: int = 10) -> str:
    """'' when keys and shapes agree; otherwise counts and the first N missing / unexpected / shape-mismatched
    keys (with both shapes)."""
    from ..resume import state_diff

    d = state_diff(expected, found)
    missing, unexpected = d["missing"], d["unexpected"]
    shapes = [f"{k}: checkpoint {a} vs model {b}" for k, a, b in d["mismatched"]]
    if not (missing or unexpected or shapes):
        return ""
    lines = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            lines.append(f"  {len(items)} {title}: " + "; ".join(items[:first_n]) + (" ..." if len(items) > first_n else ""))
    return "\n".join(lines)
