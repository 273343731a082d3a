"""``train_policy(cfg, run)``: the Stage-2 fit that ``notebooks/11_train_policy.ipynb`` calls.

Order (every check that can fail does so before any data pipeline exists):
1. load the frozen LAQ from ``model.laq.artifact`` (missing / wrong / incompatible artifact -> ``LAQArtifactError``);
2. build the policy module (all heads eager);
3. with ``training.resume_from``: compare the checkpoint with the fresh module (``ResumeMismatchError``);
4. build the data module (``hlrp_core.data.build_datamodule(cfg)``), position it at step x batch on resume;
5. fit with the shared trainer (``trainer.build_trainer``: step-based validation, ``ckpt/last.ckpt`` + periodic
   checkpoints, ``timeseries.csv``, heartbeat, metrics.json, RAM guard, batch mix), a final validation when the last
   step was not validated (and the RAM guard did not stop the fit), export ``artifacts/stage2_artifact.pt``; return
   the latest validation metrics.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ...storage import OutputWriteError
from ..callbacks import RamGuardCallback
from ..interrupts import TrainingDiverged, fail_run, finish_fit
from .artifact import export_stage2_artifact
from .labels import LatentLabeller, load_laq_labeller, smoke_laq_artifact
from .module import PolicyModule, check_policy_checkpoint
from ..resume import resume_segment
from ..trainer import build_trainer, resolve_accelerator


def build_policy_module(cfg: Any, run: Any = None, labeller: Optional[LatentLabeller] = None,
                        backbone: Any = None, out_dir: Optional[str] = None) -> PolicyModule:
    """Steps 1-2: the frozen LAQ (from ``model.laq.artifact`` unless a labeller is given) and the module. A smoke
    run (``cfg.smoke``) without an artifact labels with a random-init LAQ (``smoke_laq_artifact``), logged loudly."""
    if labeller is None:
        path = cfg.model.laq.artifact
        if not path and cfg.smoke:
            path = str(smoke_laq_artifact(cfg, run.dir if run is not None else (out_dir or ".")))
            msg = (f"[Smoke] model.laq.artifact is empty: labelling with a RANDOM-INIT LAQ written to {path}; "
                   "the numbers of this run say nothing about Stage 2 (give a Stage-1 artifact for a real run)")
            (run.log if run is not None else logging.getLogger("hlrp.policy")).warning(msg)
        labeller = load_laq_labeller(path)
        if cfg.model.laq.label_ablation == "shuffled":
            from .label_ablation import ShuffledLabeller

            labeller = ShuffledLabeller(labeller, seed=int(cfg.seed))
            (run.log if run is not None else logging.getLogger("hlrp.policy")).warning(
                "[Ablation] model.laq.label_ablation=shuffled: labels are permuted across each batch (a control "
                "run; its verdict must be random-like)")
    return PolicyModule(cfg, labeller, run=run, backbone=backbone, out_dir=out_dir)


def _default_datamodule(cfg: Any) -> Any:
    from ...data import build_datamodule  # the data adapter (docs/DATA.md, batch contract batches)

    return build_datamodule(cfg)


def _pin_start_index(dm: Any, index: int) -> None:
    """Resume for index-addressed streams (``set_start_index``): the next train sample is ``step x batch``, also
    after Lightning restores the data module's (possibly stale) ``state_dict`` from the checkpoint. Data modules
    whose ``state_dict`` carries the true position (the real adapter) have no ``set_start_index`` and are left to
    Lightning."""
    dm.set_start_index(index)
    restore = dm.load_state_dict

    def load_state_dict(state: dict) -> None:
        restore(state)
        dm.set_start_index(index)

    dm.load_state_dict = load_state_dict


class _DirRun:
    """The part of ``hlrp_core.runs.Run`` the shared trainer and its callbacks use, for calls without a run (tests,
    library use): a directory, the ``hlrp.policy`` logger, ``record`` merging into ``<dir>/metrics.json``."""

    def __init__(self, out: Path):
        self.dir, self.log = out, logging.getLogger("hlrp.policy")

    def record(self, metrics: dict, final: bool = False) -> dict:
        from ...runs import record_metrics

        return record_metrics(self.dir, metrics, final=final)

    def heartbeat(self) -> None:
        pass


def train_policy(cfg: Any, run: Any = None, datamodule: Any = None, labeller: Optional[LatentLabeller] = None,
                 backbone: Any = None, out_dir: Optional[str] = None, extra_callbacks: Sequence[Any] = (),
                 **trainer_overrides: Any) -> dict:
    """Fit the Stage-2 policy with the shared trainer (``build_trainer``: checkpoints, ``timeseries.csv``,
    heartbeat, metrics.json, RAM guard, batch mix); returns the latest validation metrics plus
    ``artifact``/``stage2/*`` entries (and ``stopped_reason`` when the RAM guard stopped the fit)."""
    import lightning as L

    out = Path(run.dir) if run is not None else Path(out_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    rec = run if run is not None else _DirRun(out)
    say = rec.log.info
    torch.set_float32_matmul_precision("high")
    if resolve_accelerator(cfg.training) == "cpu" and cfg.training.num_threads <= 0:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_policy_module(cfg, run=run, labeller=labeller, backbone=backbone, out_dir=str(out))
    resume = cfg.training.resume_from
    start_step = 0
    if resume:
        ckpt = check_policy_checkpoint(resume, module)
        start_step = int(ckpt.get("global_step", 0))
        say(f"[Resume] {resume}: compatible; continuing at step {start_step}")
        resume_segment(run, start_step)  # same run dir: trim timeseries.csv, record the segment
        del ckpt
    dm = datamodule if datamodule is not None else _default_datamodule(cfg)
    if start_step and hasattr(dm, "set_start_index"):
        _pin_start_index(dm, start_step * cfg.data.loader.batch_size)

    trainer = build_trainer(cfg, rec, extra_callbacks, **trainer_overrides)
    t0 = time.time()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except (TrainingDiverged, OutputWriteError) as exc:  # FAILED with the reason, not a bare traceback
        fail_run(run, str(exc))
        raise
    finish_fit(trainer, run)  # a stop request (signal, RAM guard, stop_request file) -> FAILED + RunStopped
    stopped = next((c.stopped_reason for c in trainer.callbacks if isinstance(c, RamGuardCallback)), None)
    if module.last_val_step != trainer.global_step and not stopped:
        trainer.validate(module, datamodule=dm, verbose=False)
    wall = time.time() - t0
    from ..loggers import close_loggers

    close_loggers(trainer, rec)  # finish wandb (prints `wandb sync`), final figures/curves.png
    artifact = export_stage2_artifact(module.policy, module.labeller.identity, out, int(trainer.global_step))
    metrics = dict(module.last_val_metrics)
    metrics.update({"stage2/global_step": int(trainer.global_step), "stage2/fit_wall_s": wall,
                    "stage2/artifact": str(artifact)})
    if stopped:
        metrics["stopped_reason"] = stopped
    say(f"[Policy] done: step={trainer.global_step} wall={wall:.1f}s artifact={artifact}")
    return metrics


SUMMARY_KEYS = ["val/loss", "val/token_accuracy", "val/token_accuracy_ci_low", "val/token_accuracy_ci_high",
                "val/token_accuracy_majority_baseline", "val/token_accuracy_majority_baseline_ci_high",
                "val/token_accuracy_lift", "val/token_accuracy_vote", "val/sequence_accuracy", "val/sequence_accuracy_majority_baseline",
                "val/num_items", "val/latent_vector_stats/cosine_mean", "val/latent_vector_stats/variance_ratio",
                "perf/steps_per_sec", "perf/samples_per_sec", "stage2/global_step", "stage2/fit_wall_s"]


def summary(metrics: dict) -> str:
    """A short text table of the headline Stage-2 numbers plus a one-line verdict on the majority baseline."""
    lines = [f"{k:<50} {metrics[k]:.4f}" if isinstance(metrics[k], float) else f"{k:<50} {metrics[k]}"
             for k in SUMMARY_KEYS if k in metrics]
    acc, hi = metrics.get("val/token_accuracy"), metrics.get("val/token_accuracy_majority_baseline_ci_high")
    if acc is not None and hi is not None:
        verdict = "beats" if acc > hi else "does NOT beat"
        lines.append(f"token accuracy {acc:.3f} {verdict} the majority baseline's 95% Wilson upper bound {hi:.3f}")
    return "\n".join(lines)
