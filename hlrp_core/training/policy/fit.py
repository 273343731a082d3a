"""``fit_policy(cfg, run)``: the Stage-2 fit that ``notebooks/11_train_policy.ipynb`` calls; the same shape as
``laq.fit.fit_laq`` (docs/ARCHITECTURE.md, the training wings).

Order (every check that can fail does so before any data pipeline exists):
1. load the frozen LAQ from ``model.laq.artifact`` (missing / wrong / incompatible artifact -> ``LAQArtifactError``);
2. build the policy module (all heads eager);
3. the shared ``trainer.fit_module``: with ``training.resume_from`` the checkpoint is compared with the fresh module
   (``ResumeMismatchError``), then the data module (``hlrp_core.data.build_datamodule(cfg)``), the fit with the shared
   trainer (step-based validation, ``ckpt/last.ckpt`` + periodic checkpoints, ``timeseries.csv``, heartbeat,
   metrics.json, RAM guard, batch mix) and a final validation when the last step was not validated (and the RAM
   guard did not stop the fit);
4. export ``artifacts/stage2_artifact.pt``; return the latest validation metrics.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import torch

from ..callbacks import run_statistics
from ..run_handle import RunHandle
from ..trainer import fit_module, resolve_accelerator
from .artifact import export_stage2_artifact
from .labels import LatentLabeller, load_laq_labeller, smoke_laq_artifact
from .module import PolicyModule


def build_policy_module(cfg: Any, run: Optional[RunHandle] = None, labeller: Optional[LatentLabeller] = None,
                        backbone: Any = None) -> PolicyModule:
    """Steps 1-2: the frozen LAQ (from ``model.laq.artifact`` unless a labeller is given) and the module. A smoke
    run (``cfg.smoke``) without an artifact labels with a random-init LAQ (``smoke_laq_artifact``), logged loudly."""
    say = run.log if run is not None else logging.getLogger("hlrp.policy")
    if labeller is None:
        path = cfg.model.laq.artifact
        if not path and cfg.smoke:
            path = str(smoke_laq_artifact(cfg, run.dir if run is not None else "."))
            say.warning(f"[Smoke] model.laq.artifact is empty: labelling with a RANDOM-INIT LAQ written to {path}; "
                        "the numbers of this run say nothing about Stage 2 (give a Stage-1 artifact for a real run)")
        labeller = load_laq_labeller(path)
        if cfg.model.laq.label_ablation == "shuffled":
            from .label_ablation import ShuffledLabeller

            labeller = ShuffledLabeller(labeller, seed=int(cfg.seed))
            say.warning("[Ablation] model.laq.label_ablation=shuffled: labels are permuted across each batch (a "
                        "control run; its verdict must be random-like)")
    return PolicyModule(cfg, labeller, run=run, backbone=backbone)


def fit_policy(cfg: Any, run: RunHandle, datamodule: Any = None, extra_callbacks: Sequence[Any] = (), *,
               labeller: Optional[LatentLabeller] = None, backbone: Any = None, **trainer_overrides: Any) -> dict:
    """Train the Stage-2 policy; returns the latest validation metrics plus ``stage2/global_step``,
    ``stage2/fit_wall_s``, ``stage2/artifact`` and ``stopped_reason`` (when the RAM guard stopped the fit).
    ``labeller`` / ``backbone`` replace the frozen LAQ / the configured backbone (tests, library use)."""
    import lightning as L

    torch.set_float32_matmul_precision("high")
    if resolve_accelerator(cfg.training) == "cpu" and cfg.training.num_threads <= 0:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_policy_module(cfg, run, labeller=labeller, backbone=backbone)
    fit = fit_module(cfg, run, module, datamodule, extra_callbacks, **trainer_overrides)
    trainer = fit.trainer
    fit.close(run)
    artifact = export_stage2_artifact(module.policy, module.labeller.identity, run.dir, int(trainer.global_step),
                                      run_statistics(run.dir))
    metrics = dict(module.last_val_metrics)
    metrics.update({"stage2/global_step": int(trainer.global_step), "stage2/fit_wall_s": fit.wall_s,
                    "stage2/artifact": str(artifact)})
    if fit.stopped:
        metrics["stopped_reason"] = fit.stopped
    run.log.info(f"[Policy] done: step={trainer.global_step} wall={fit.wall_s:.1f}s artifact={artifact}")
    return metrics
