"""``train_policy(cfg, run)``: the Stage-2 fit that ``notebooks/11_train_policy.ipynb`` calls.

Order (every check that can fail does so before any data pipeline exists):
1. load the frozen LAQ from ``model.laq.artifact`` (missing / wrong / incompatible artifact -> ``LAQArtifactError``);
2. build the policy module (all heads eager);
3. with ``training.resume_from``: compare the checkpoint with the fresh module (``ResumeMismatchError``);
4. build the data module (``hlrp_core.data.build_datamodule(cfg)``), position it at step x batch on resume;
5. fit (step-based validation, ``ckpt/last.ckpt`` + periodic checkpoints), a final validation when the last step
   was not validated, export ``artifacts/stage2_artifact.pt``; return the latest validation metrics.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Optional

import torch

from .policy_artifact import export_stage2_artifact
from .policy_labels import LatentLabeller, load_laq_labeller
from .policy_module import PolicyModule, check_policy_checkpoint


def _accelerator(cfg: Any) -> str:
    a = cfg.training.accelerator
    if a == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if a == "cuda" else a


def _precision(cfg: Any, accelerator: str) -> str:
    p = cfg.training.precision
    if p == "auto":
        return "bf16-mixed" if accelerator == "gpu" else "32-true"
    return p


def build_policy_module(cfg: Any, run: Any = None, labeller: Optional[LatentLabeller] = None,
                        backbone: Any = None, out_dir: Optional[str] = None) -> PolicyModule:
    """Steps 1-2: the frozen LAQ (from ``model.laq.artifact`` unless a labeller is given) and the module."""
    if labeller is None:
        labeller = load_laq_labeller(cfg.model.laq.artifact)
    return PolicyModule(cfg, labeller, run=run, backbone=backbone, out_dir=out_dir)


def _default_datamodule(cfg: Any) -> Any:
    from ..data import build_datamodule  # the data adapter (DATA_ADAPTER.md section 2 batches)

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


def train_policy(cfg: Any, run: Any = None, datamodule: Any = None, labeller: Optional[LatentLabeller] = None,
                 backbone: Any = None, out_dir: Optional[str] = None) -> dict:
    """Fit the Stage-2 policy; returns the latest validation metrics plus ``artifact``/``stage2/*`` entries."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    out = Path(run.dir) if run is not None else Path(out_dir or ".")
    say = run.log.info if run is not None else print
    torch.set_float32_matmul_precision("high")
    if _accelerator(cfg) == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_policy_module(cfg, run=run, labeller=labeller, backbone=backbone, out_dir=str(out))
    resume = cfg.training.resume_from
    start_step = 0
    if resume:
        ckpt = check_policy_checkpoint(resume, module)
        start_step = int(ckpt.get("global_step", 0))
        say(f"[Resume] {resume}: compatible; continuing at step {start_step}")
        del ckpt
    dm = datamodule if datamodule is not None else _default_datamodule(cfg)
    if start_step and hasattr(dm, "set_start_index"):
        _pin_start_index(dm, start_step * cfg.data.loader.batch_size)

    t = cfg.training
    acc = _accelerator(cfg)
    ckpt_cb = ModelCheckpoint(dirpath=str(out / "ckpt"), save_last=True, save_top_k=-1 if t.checkpoint.keep_last_n < 0
                              else t.checkpoint.keep_last_n, every_n_train_steps=t.checkpoint.every_n_train_steps,
                              filename="step{step:06d}", auto_insert_metric_name=False)
    trainer = L.Trainer(
        accelerator=acc, devices=1, precision=_precision(cfg, acc), max_steps=t.max_steps, max_epochs=-1,
        val_check_interval=t.validation.check_interval, check_val_every_n_epoch=None,
        limit_val_batches=t.validation.limit_batches or 1.0, num_sanity_val_steps=t.validation.num_sanity_val_steps,
        gradient_clip_val=t.gradient_clip_val or None, log_every_n_steps=t.log_every_n_steps,
        logger=CSVLogger(str(out), name="lightning_logs", version=""), callbacks=[ckpt_cb],
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out),
    )
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    if module.last_val_step != trainer.global_step:
        trainer.validate(module, datamodule=dm, verbose=False)
    wall = time.time() - t0
    artifact = export_stage2_artifact(module.policy, module.labeller.identity, out, int(trainer.global_step))
    csv = out / "lightning_logs" / "metrics.csv"
    if csv.exists():
        shutil.copyfile(csv, out / "timeseries.csv")
    metrics = dict(module.last_val_metrics)
    metrics.update({"stage2/global_step": int(trainer.global_step), "stage2/fit_wall_s": wall,
                    "stage2/artifact": str(artifact)})
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
