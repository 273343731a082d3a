"""The experiment loggers beside the CSV time series (docs/FEEDBACK.md sections 1-2): wandb (offline-first) and
TensorBoard, both with their files inside the run directory.

- ``logging.use_wandb=true``: Lightning's ``WandbLogger`` in ``logging.wandb_mode`` (``offline`` by default: no
  login, no network; ``wandb sync`` uploads later). Run name = the run directory's name; run id =
  :func:`wandb_run_id`, derived from the name of the run directory that owns the training (the directory a
  ``training.resume_from`` checkpoint lives in, else this run's), so a resumed or requeued run continues the same wandb
  run. The resolved config is the wandb config; files go to ``<run>/wandb/``.
- ``logging.tensorboard=true``: ``TensorBoardLogger`` writing ``<run>/tensorboard/events.out.tfevents.*`` (the
  resolved config as a text summary ``config``).

The CSV time series stays the first logger (``trainer.logger``), so code that logs through ``trainer.logger`` keeps
writing ``timeseries.csv``; :class:`LoggerBridge` copies the verdict entries to the other loggers after each
validation. :func:`close_loggers` (``trainer.Fit.close``, the end of ``fit_laq`` / ``fit_policy``) finishes the wandb
run and prints the ``wandb sync`` command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any, Optional

import lightning as L

log = logging.getLogger("hlrp.training")
WANDB_DIR = "wandb"
TB_DIR = "tensorboard"
_ID_MAX = 64  # wandb run ids are at most 64 characters here (keeps the offline folder names short too)


def owner_run_dir(run_dir: str | os.PathLike, resume_from: str = "") -> Path:
    """The run directory whose training this is: the one holding the ``resume_from`` checkpoint
    (``<dir>/ckpt/<name>.ckpt`` next to ``<dir>/config.yaml``), else ``run_dir``."""
    if resume_from:
        ck = Path(resume_from).expanduser()
        for parent in list(ck.parents)[:3]:
            if (parent / "config.yaml").exists() and (parent / "status").exists():
                return parent
    return Path(run_dir)


def wandb_run_id(run_dir: str | os.PathLike, resume_from: str = "") -> str:
    """A stable wandb run id from the owning run directory's name (letters, digits, ``-``, ``_``); a name longer
    than 64 characters keeps its head plus an 8-character hash of the whole name."""
    name = owner_run_dir(run_dir, resume_from).resolve().name
    rid = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "run"
    if len(rid) > _ID_MAX:
        rid = rid[:_ID_MAX - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return rid


def _config_dict(cfg: Any) -> dict:
    try:
        return dataclasses.asdict(cfg)
    except TypeError:
        return dict(cfg) if isinstance(cfg, dict) else {}


def _resume_path(cfg: Any) -> str:
    rf = getattr(cfg.training, "resume_from", "") or ""
    if not rf:
        return ""
    try:
        from ..paths import resolve

        return str(resolve(rf))
    except Exception:  # noqa: BLE001 - the id falls back to this run's name; resume itself reports bad paths
        return str(rf)


def wandb_logger(cfg: Any, run: Any):
    """Lightning's ``WandbLogger`` for this run (``logging.wandb_*``); ``None`` when ``wandb_mode=disabled``."""
    lg = cfg.logging
    if lg.wandb_mode == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    run_dir = Path(run.dir)
    rid = wandb_run_id(run_dir, _resume_path(cfg))
    group = lg.wandb_group or run_dir.parent.name
    tags = list(dict.fromkeys([*lg.wandb_tags, *([cfg.experiment.preset] if cfg.experiment.preset else [])]))
    settings = wandb.Settings(
        console="off",          # cell output already goes to unified.log; wrapping stdout would fight papermill
        x_disable_stats=True,   # no system-metrics sampler thread on shared CPUs (RSS is in the time series)
        disable_git=True, save_code=False, silent=True, init_timeout=120,
    )
    (run_dir / WANDB_DIR).mkdir(exist_ok=True)
    wl = WandbLogger(name=run_dir.name, save_dir=str(run_dir), id=rid, project=lg.wandb_project, group=group,
                     tags=tags, mode=lg.wandb_mode, config=_config_dict(cfg), settings=settings,
                     job_type=cfg.model.name)
    wl._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb 0.30 warns that it has no effect
    if lg.wandb_mode == "offline":  # offline runs are joined by id at `wandb sync`; `resume` only warns there
        wl._wandb_init.pop("resume", None)
    return wl


def tensorboard_logger(cfg: Any, run: Any):
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(run.dir), name=TB_DIR, version="", default_hp_metric=False)


def extra_loggers(cfg: Any, run: Any) -> list:
    """The configured loggers besides the CSV time series (wandb, TensorBoard)."""
    out = []
    if cfg.logging.use_wandb:
        wl = wandb_logger(cfg, run)
        if wl is not None:
            out.append(wl)
    if cfg.logging.tensorboard:
        out.append(tensorboard_logger(cfg, run))
    return out


def _is_wandb(lg: Any) -> bool:
    return type(lg).__name__ == "WandbLogger"


def _is_tb(lg: Any) -> bool:
    return type(lg).__name__ == "TensorBoardLogger"


class LoggerBridge(L.Callback):
    """Config text into TensorBoard at the start; after each validation the verdict's numbers (``verdict/*``, which
    the verdict callback logs through ``trainer.logger`` = the CSV) into every other logger; on an exception the
    wandb run is finished as failed (a notebook kernel must not keep it open for the next run)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._last_step: Optional[int] = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        for lg in trainer.loggers[1:]:
            if _is_tb(lg):
                from ..config import to_yaml

                lg.experiment.add_text("config", "```\n" + to_yaml(self.cfg) + "\n```", global_step=0)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or len(trainer.loggers) < 2:
            return
        from .verdict import VerdictCallback

        vc = next((c for c in trainer.callbacks if isinstance(c, VerdictCallback)), None)
        items = getattr(vc, "last", None) or {}
        step = int(trainer.global_step)
        if items.get("verdict/step") != step or self._last_step == step:
            return
        self._last_step = step
        nums = {k: float(v) for k, v in items.items()
                if k.startswith("verdict/") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        for lg in trainer.loggers[1:]:
            lg.log_metrics(nums, step=step)

    def on_exception(self, trainer, pl_module, exception) -> None:
        finish_wandb(trainer, exit_code=1)


class CurvesCallback(L.Callback):
    """Rewrite ``figures/curves.png`` after every validation (global rank 0, after the verdict callback)."""

    def __init__(self, run: Any):
        self.run = run

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        from .curves import write_curves

        write_curves(self.run, trainer)


def finish_wandb(trainer: Any, exit_code: int = 0) -> Optional[Any]:
    """Finish this trainer's wandb run (if any); returns the logger."""
    for lg in getattr(trainer, "loggers", []):
        if _is_wandb(lg) and getattr(lg, "_experiment", None) is not None:
            try:
                lg._experiment.finish(exit_code=exit_code)
            except Exception as exc:  # noqa: BLE001 - never lose a finished training to a logger hiccup
                log.warning("wandb finish failed: %s: %s", type(exc).__name__, exc)
            return lg
    return None


def offline_run_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """``<run>/wandb/offline-run-*`` folders, oldest first (one per process that logged to the run)."""
    d = Path(run_dir) / WANDB_DIR
    return sorted(d.glob("offline-run-*")) if d.is_dir() else []


def sync_command(run_dir: str | os.PathLike) -> str:
    """The command that uploads this run's offline wandb files (all its processes, same run id)."""
    dirs = offline_run_dirs(run_dir)
    return f"wandb sync {Path(run_dir) / WANDB_DIR}/offline-run-*" if dirs else ""


def close_loggers(trainer: Any, run: Any) -> None:
    """End of a training: flush every logger, finish wandb (printing the ``wandb sync`` command for an offline run),
    name the TensorBoard folder, and write the final ``figures/curves.png``."""
    if not trainer.is_global_zero:
        return
    for lg in trainer.loggers:
        try:
            lg.save()
        except Exception:  # noqa: BLE001
            pass
    say = getattr(run, "log", log).info
    wl = finish_wandb(trainer)
    if wl is not None:
        cmd = sync_command(run.dir)
        mode = trainer_wandb_mode(wl)
        if cmd and mode == "offline":
            say("[wandb] offline run %s saved in %s; upload it with: %s", getattr(wl, "_id", "?"),
                Path(run.dir) / WANDB_DIR, cmd)
        else:
            say("[wandb] run %s finished (%s)", getattr(wl, "_id", "?"), mode)
    if any(_is_tb(lg) for lg in trainer.loggers):
        say("[TensorBoard] event files in %s; view with: tensorboard --logdir %s", Path(run.dir) / TB_DIR,
            Path(run.dir) / TB_DIR)
    from .curves import write_curves

    write_curves(run, trainer)


def trainer_wandb_mode(wl: Any) -> str:
    return str(getattr(wl, "_wandb_init", {}).get("mode", "offline"))


# ---------------------------------------------------------------- reading an offline run back
# wandb >= 0.2x no longer ships a Python reader of its transaction log (``run-<id>.wandb``); the format is a
# LevelDB-style log (32 KiB blocks of [crc32:4][length:2][type:1][data]) behind a 7-byte ``:W&B`` header, each
# record a ``wandb_internal_pb2.Record``. Decoding it with wandb's own protobuf classes lets tests and ``hlrp runs``
# check an offline run without the network.
_BLOCK, _FULL, _FIRST, _MIDDLE, _LAST = 32768, 1, 2, 3, 4


def _records(path: Path):
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path}: not a wandb transaction log")
    off, buf = 7, b""
    while off + 7 <= len(data):
        if _BLOCK - off % _BLOCK < 7:  # block trailer too short for a header: skip to the next block
            off += _BLOCK - off % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[off:off + 7])
        chunk, off = data[off + 7:off + 7 + length], off + 7 + length
        if kind == 0 and length == 0:
            break
        if kind == _FIRST:
            buf = chunk
            continue
        if kind == _MIDDLE:
            buf += chunk
            continue
        payload = buf + chunk if kind == _LAST else chunk
        buf = b""
        rec = pb.Record()
        rec.ParseFromString(payload)
        yield rec


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(offline_dir: str | os.PathLike) -> dict:
    """``{"id", "name", "project", "group", "tags", "config", "history", "summary", "exited"}`` of one
    ``wandb/offline-run-*`` folder (history = one dict per logged row)."""
    import json

    d = Path(offline_dir)
    path = next(iter(sorted(d.glob("run-*.wandb"))), None)
    if path is None:
        raise FileNotFoundError(f"{d}: no run-*.wandb file")
    out: dict[str, Any] = {"id": "", "name": "", "project": "", "group": "", "tags": [], "config": {},
                           "history": [], "summary": {}, "exited": False}
    for rec in _records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(id=r.run_id, name=r.display_name, project=r.project, group=r.run_group, tags=list(r.tags))
            for it in r.config.update:
                out["config"][_item_key(it)] = json.loads(it.value_json)
        elif kind == "config":
            for it in rec.config.update:
                out["config"][_item_key(it)] = json.loads(it.value_json)
        elif kind == "history":
            out["history"].append({_item_key(it): json.loads(it.value_json) for it in rec.history.item})
        elif kind == "summary":
            for it in rec.summary.update:
                out["summary"][_item_key(it)] = json.loads(it.value_json)
        elif kind == "exit":
            out["exited"] = True
    return out
