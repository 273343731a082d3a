"""``fit_laq(cfg, run)``: the Stage-1 fit that ``notebooks/10_train_laq.ipynb`` and ``python -m
hlrp_core.training.srun`` call; the same shape as ``policy.fit.fit_policy`` (docs/ARCHITECTURE.md, the training
wings).

Order: seed, build the LAQ module, then the shared ``trainer.fit_module`` (resume pre-flight before any data loads,
the data module, fit, stop requests, a final validation); then ``ckpt/last.ckpt`` and
``artifacts/laq_artifact.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch

from ..callbacks import run_statistics
from ..run_handle import RunHandle
from ..trainer import CKPT_DIR, fit_module
from .artifact import ARTIFACT_NAME, save_laq_artifact
from .module import LAQModule


def fit_laq(cfg: Any, run: RunHandle, datamodule: Any = None, extra_callbacks: Sequence[L.Callback] = (),
            **trainer_overrides: Any) -> dict:
    """Train the Stage-1 LAQ; returns the latest validation metrics plus ``global_step``, ``artifact`` (when
    ``training.save_artifact``) and ``stopped_reason`` (when the RAM guard stopped the fit)."""
    t = cfg.training
    if t.num_threads > 0:
        torch.set_num_threads(t.num_threads)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = LAQModule(cfg, run)
    n_params = sum(p.numel() for p in module.model.parameters())
    run.log.info("LAQ: %d parameters, S=%d K=%d D=%d quantizer=%s", n_params, cfg.model.code_seq_len,
                 cfg.model.codebook_size, cfg.model.code_dim, cfg.model.quantizer)
    fit = fit_module(cfg, run, module, datamodule, extra_callbacks, **trainer_overrides)
    trainer = fit.trainer
    out = dict(module.last_val_metrics)
    out["global_step"] = int(trainer.global_step)
    if trainer.checkpoint_callback is not None:
        trainer.save_checkpoint(str(Path(run.dir) / CKPT_DIR / "last.ckpt"))
    if t.save_artifact:
        path = save_laq_artifact(module.model, Path(run.dir) / "artifacts" / ARTIFACT_NAME,
                                 source_run_dir=str(run.dir), global_step=int(trainer.global_step),
                                 resize_mode=cfg.data.preprocess.resize_mode,
                                 dataset_statistics=run_statistics(run.dir))
        out["artifact"] = str(path)
        run.log.info("LAQ artifact: %s", path)
    if fit.stopped:
        out["stopped_reason"] = fit.stopped
    fit.close(run)
    return out
