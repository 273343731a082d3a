"""Exact resume, one path for both stages (``prepare_resume``): a pre-flight check of a checkpoint against a freshly
built module (before any data loads), and the data position / RNG bookkeeping that makes the next batch and the loss
curve continue exactly (docs/MODELS.md 2.9).

Checkpoints written by hlrp modules carry ``hlrp`` = {``hparams_schema_version``, ``config`` (the resolved run
config), ``arch`` (the model's architecture dict), ``data_position``, ``rng``}.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import flatten, to_dict
from ..inputs import checkpoint_problem
from ..paths import resolve

HPARAMS_SCHEMA_VERSION = 1
#: Config sections whose differences are listed in a resume diff (the rest is run bookkeeping).
DIFF_PREFIXES = ("model.", "data.preprocess.")


class IncompatibleCheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed into this config; the message lists every difference and the fix."""


def load_checkpoint(path: str | os.PathLike, knob: str = "training.resume_from") -> dict:
    """The checkpoint dict; a missing, truncated or foreign file raises ``IncompatibleCheckpointError`` naming the
    file and ``knob``."""
    problem = checkpoint_problem(path, knob)
    if problem:
        raise IncompatibleCheckpointError(problem)
    try:
        ckpt = torch.load(resolve(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a damaged archive raises whatever its reader hits
        raise IncompatibleCheckpointError(
            f"{knob}={str(path)!r}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}); it is "
            "truncated or was not written by torch.save; point it at another checkpoint") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise IncompatibleCheckpointError(f"{knob}={str(path)!r}: not a Lightning checkpoint (no state_dict); "
                                          "point it at <old run>/ckpt/last.ckpt")
    return ckpt


def state_diff(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> dict[str, list]:
    """missing (in model, not in ckpt), unexpected (in ckpt only), mismatched [(key, ckpt shape, model shape)]."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [(k, tuple(found[k].shape), tuple(expected[k].shape)) for k in sorted(set(expected) & set(found))
                  if tuple(found[k].shape) != tuple(expected[k].shape)]
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def config_diff(ckpt_config: Mapping[str, Any] | None, cfg: Any, prefixes=DIFF_PREFIXES) -> dict[str, tuple]:
    """{dotted key: (checkpoint value, current value)} for the architecture-relevant sections."""
    if not ckpt_config:
        return {}
    a, b = flatten(dict(ckpt_config)), flatten(to_dict(cfg))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k.startswith(prefixes) and a.get(k) != b.get(k)}


def format_incompatibility(path: str, cdiff: dict, sdiff: dict, n: int = 10) -> str:
    lines = [f"cannot resume from {path}: the checkpoint was written by a different model shape."]
    if cdiff:
        lines.append(f"config keys that differ ({len(cdiff)}; checkpoint -> now):")
        lines += [f"  {k}: {v[0]!r} -> {v[1]!r}" for k, v in list(cdiff.items())[:50]]
    for name in ("missing", "unexpected"):
        keys = sdiff[name]
        if keys:
            lines.append(f"{name} tensors ({len(keys)}): " + ", ".join(keys[:n]) + (" ..." if len(keys) > n else ""))
    mm = sdiff["mismatched"]
    if mm:
        lines.append(f"mis-shaped tensors ({len(mm)}; checkpoint vs model): " + ", ".join(
            f"{k} {list(a)} vs {list(b)}" for k, a, b in mm[:n]) + (" ..." if len(mm) > n else ""))
    fix = ", ".join(f"{k}={v[0]}" for k, v in cdiff.items()) if cdiff else "the checkpoint's model.* values"
    lines.append(f"fix: set {fix} to resume this checkpoint, or drop training.resume_from to start a new run.")
    return "\n".join(lines)


def preflight(module: torch.nn.Module, ckpt_path: str, cfg: Any) -> dict:
    """Compare ``ckpt_path`` with ``module`` (freshly built from ``cfg``) on CPU; raise
    ``IncompatibleCheckpointError`` listing config keys and missing/unexpected/mis-shaped tensors. Returns the
    loaded checkpoint (for the data position)."""
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt.get("hlrp", {})
    version = meta.get("hparams_schema_version")
    if version not in (None, HPARAMS_SCHEMA_VERSION):
        raise IncompatibleCheckpointError(
            f"{ckpt_path}: hparams_schema_version={version} is unknown to this code (expects "
            f"{HPARAMS_SCHEMA_VERSION}); resume with the hlrp version that wrote it")
    sdiff = state_diff(module.state_dict(), ckpt.get("state_dict", {}))
    cdiff = config_diff(meta.get("config"), cfg)
    if any(sdiff.values()):
        raise IncompatibleCheckpointError(format_incompatibility(str(ckpt_path), cdiff, sdiff))
    return ckpt


# ----------------------------------------------------------------------------------------------- RNG and data position
def rng_state() -> dict:
    """Torch RNG states only (tensors), so checkpoints stay loadable with ``torch.load(weights_only=True)``, which
    Lightning uses. Training steps reseed from (seed, step) anyway; numpy/python RNGs are not used in a step."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: Mapping[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------- resuming into the same directory
def continue_timeseries(run_dir: str | os.PathLike, step: int, name: str = "timeseries.csv") -> int:
    """Before a resumed segment writes into ``run_dir``: keep the time-series rows of the steps the checkpoint holds
    (``step`` < the checkpoint's global step, plus the rows its validation logged at that step) and drop the rest,
    which the new segment trains again, so the file reads as one uninterrupted run; the full previous file is kept
    as ``segments/timeseries.seg<N>.csv``. Returns the rows dropped. (A kill between the checkpoint and the flush
    of that validation's rows loses those rows: the resumed fit does not validate its start step again.)"""
    import csv

    from ..io import atomic_write_text

    path = Path(run_dir) / name
    if not path.exists():
        return 0
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    def kept(r: dict) -> bool:  # rows of the validation at the checkpoint's step stay: it is not run again
        at = int(float(r["step"])) if r.get("step") else -1
        return at < int(step) or (at == int(step) and not any(v for k, v in r.items() if k.startswith("train/")))

    keep = [r for r in rows if kept(r)]
    seg = Path(run_dir) / "segments"
    seg.mkdir(exist_ok=True)
    n = len(list(seg.glob("timeseries.seg*.csv")))
    os.replace(path, seg / f"timeseries.seg{n}.csv")
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(keep)
    atomic_write_text(path, buf.getvalue())
    return len(rows) - len(keep)


def resume_segment(run: Any, step: int) -> None:
    """The resume hook of both fit functions: into a directory with a time series, trim it to ``step`` and record
    the segment's start step (a resume into a fresh directory has neither and is left alone)."""
    from ..runs import update_segment

    if run is None or not hasattr(run, "dir"):
        return
    dropped = continue_timeseries(run.dir, step)
    update_segment(run.dir, start_step=step)
    if dropped and hasattr(run, "log"):
        run.log.info("resume: kept timeseries.csv up to step %d (%d later rows were trained again)", step, dropped)


def prepare_resume(module: Any, cfg: Any, run: Any) -> str | None:
    """The resume step of both fit functions (``trainer.fit_module``), before any data loads: ``training.resume_from``
    is checked against the freshly built ``module`` (its ``check_checkpoint(path)`` raises naming every difference
    and the fix), then the run directory continues at the checkpoint's step (``resume_segment``). Returns the
    checkpoint path for ``trainer.fit`` (None for a fresh start); the data position and the RNG come back through
    Lightning's restore (``data_position`` pinned the data module's saved state when the checkpoint was written)."""
    if not cfg.training.resume_from:
        return None
    path = str(resolve(cfg.training.resume_from))
    step = int(module.check_checkpoint(path).get("global_step", 0))
    run.log.info("[Resume] %s: compatible; continuing at step %d", path, step)
    resume_segment(run, step)  # same run dir: trim timeseries.csv, record the segment
    return path


def data_position(module: Any, checkpoint: dict) -> dict:
    """For ``on_save_checkpoint`` of both modules: the next train sample is step x batch x world (DDP ranks shard one
    stream). The data module's saved state (it may have prefetched past this step) is pinned to that sample, so
    Lightning's restore continues exactly there. Returns the position (``next_index``, step, batch, world)."""
    trainer = module._trainer
    bs = int(module.cfg.data.loader.batch_size)
    world = int(trainer.world_size) if trainer is not None else 1
    next_index = int(module.global_step) * bs * world
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    key = type(dm).__qualname__ if dm is not None else None
    if key and isinstance(checkpoint.get(key), dict) and "next_index" in checkpoint[key]:
        checkpoint[key]["next_index"] = next_index
    return {"next_index": next_index, "global_step": int(module.global_step), "batch_size": bs, "world_size": world}
