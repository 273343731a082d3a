"""Stage-2 Lightning module: the latent policy trained against online frozen-LAQ labels (docs/MODELS.md section 2).

Per batch: frames -> frozen LAQ (eval, no_grad) -> codes [B,S] + raw vectors [B,S,D]; the policy sees the first
frame and the instruction. Logged: ``train/loss`` + sub-losses + ``train/lr``; at each validation (the whole fixed
val set, not batch 0) ``val/loss``, ``val/token_accuracy`` (nearest-codebook decoding of flow samples drawn with a
fixed noise seed in ``latent_flow``), ``val/token_accuracy_majority_baseline`` with Wilson intervals,
``val/sequence_accuracy``, ``val/latent_vector_stats/*``, ``val/action_stats/*``, ``val/dataset_mix_*``,
``perf/samples_per_sec`` / ``perf/steps_per_sec``; ``[Val][BatchMix]`` lines; sample panels;
``val_predictions/step_XXXXXX.npz``. Heartbeat, ``[Train][BatchMix]`` lines, metrics.json and the RAM guard are the
shared trainer's callbacks (``trainer.build_trainer``); the optimizer is ``optim.build_optimizer``.

Resume is exact: every head is built in ``__init__``, training noise is drawn from a generator keyed by
(seed, global step), and the checkpoint carries a versioned ``hlrp_policy`` block (config, LAQ identity, tokenizer
hash, loss definition) that ``check_policy_checkpoint`` compares before any data pipeline is built.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from ...metrics.predictions import save_predictions
from ...models.policy.modeling import LatentPolicy, action_mse, count_parameters
from ...models.policy.processing import tokenizer_hash
from . import stats as ST
from ..optim import build_optimizer
from ..resume import IncompatibleCheckpointError, data_position
from ..run_handle import RunHandle
from .artifact import HPARAMS_SCHEMA, LOSS_DEFINITION, library_versions, state_dict_diff
from .labels import LatentLabeller
from .figures import sample_records, write_samples

log = logging.getLogger("hlrp.policy")


class ResumeMismatchError(IncompatibleCheckpointError):
    """A checkpoint that does not fit the configured policy; the message lists key/shape and config diffs."""


def _policy_meta(cfg: Any, policy: LatentPolicy, labeller: LatentLabeller) -> dict:
    return {
        "hparams_schema_version": HPARAMS_SCHEMA,
        "policy": asdict(cfg.model.policy),
        "laq": {k: labeller.identity.get(k) for k in ("hash", "K", "S", "D")},
        "tokenizer_hash": tokenizer_hash(policy.tokenizer),
        "loss_definition": LOSS_DEFINITION,
        "batch_size": int(cfg.data.loader.batch_size),
        "versions": library_versions(),
    }


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def meta_diff(found: dict, expected: dict) -> list[str]:
    """Differing keys of two ``hlrp_policy`` blocks (``versions`` ignored), each ``key: checkpoint=X, now=Y``."""
    a = _flat({k: v for k, v in found.items() if k != "versions"})
    b = _flat({k: v for k, v in expected.items() if k != "versions"})
    return [f"{k}: checkpoint={a.get(k)!r}, now={b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class PolicyModule(L.LightningModule):
    """Args:
        cfg: the resolved ``Config``.
        labeller: the frozen LAQ labeller (``labels.load_laq_labeller``) or a stand-in.
        run: the run handle (``run_handle.RunHandle``: its directory takes samples and val_predictions, its log the
            lines); None = the ``hlrp.policy`` log and the current directory.
        backbone: optional prebuilt ``(vlm, tokenizer, vlm_config)``.
    """

    def __init__(self, cfg: Any, labeller: LatentLabeller, run: Optional[RunHandle] = None, backbone: Any = None):
        super().__init__()
        self.cfg = cfg
        self.pcfg = cfg.model.policy
        self.policy = LatentPolicy(self.pcfg, labeller.spec, labeller.codebook, backbone=backbone)
        object.__setattr__(self, "_labeller", labeller)  # never a submodule: the LAQ stays out of state_dict
        object.__setattr__(self, "_run", run)
        self.out_dir = Path(run.dir) if run is not None else Path(".")
        self.meta = _policy_meta(cfg, self.policy, labeller)
        self._val: dict[str, list] = {}
        self._val_first_batch: Optional[dict] = None
        self._step_times: list[float] = []
        self._t_batch = 0.0
        self.last_val_metrics: dict = {}
        self.last_val_step = -1
        self._pylog = run.log if run is not None else log

    # ----------------------------------------------------------------------------------------------- plumbing
    @property
    def labeller(self) -> LatentLabeller:
        return self._labeller

    def info(self, msg: str) -> None:
        self._pylog.info(msg)

    def on_fit_start(self) -> None:
        self.labeller.to(self.device)
        total, trainable = count_parameters(self.policy)
        self.info(f"[Policy] mode={self.pcfg.mode} backbone={self.pcfg.backbone} params={total} trainable={trainable} "
                  f"laq={self.labeller.identity.get('hash')} K={self.labeller.spec.codebook_size} "
                  f"S={self.labeller.spec.code_seq_len} D={self.labeller.spec.code_dim}")

    def on_validation_start(self) -> None:
        self.labeller.to(self.device)

    def _gen(self, key: int) -> torch.Generator:
        return torch.Generator().manual_seed(int(key) & 0x7FFFFFFFFFFF)

    def _labels(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        codes, vectors = self.labeller.label(batch["frames"])
        return codes.to(self.device), vectors.to(self.device)

    # ------------------------------------------------------------------------------------------------- losses
    def compute_losses(self, batch: dict, codes: torch.Tensor, vectors: torch.Tensor,
                       generator: Optional[torch.Generator]) -> tuple[dict, torch.Tensor, Any]:
        """Returns ({name: loss}, pooled, code logits or None)."""
        inp = self.policy.inputs(batch["frames"], batch["language"], device=self.device)
        pooled = self.policy.encode(**inp)
        mode = self.pcfg.mode
        losses: dict[str, torch.Tensor] = {}
        logits = None
        if mode in ("latent_flow", "multitask"):
            losses["flow_loss"] = self.policy.flow_loss(pooled, vectors, generator=generator)
        if mode == "codes":
            logits = self.policy.code_head(pooled)
            losses["code_loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
        if mode in ("actions", "multitask"):
            pred = self.policy.action_head(pooled)
            losses["action_loss"] = action_mse(pred, batch["action"].to(self.device), batch.get("action_dim"))
        w_lat, w_act = self.pcfg.latent_loss_weight, self.pcfg.action_loss_weight
        total = 0.0
        for k, v in losses.items():
            total = total + (w_act if k == "action_loss" and mode == "multitask" else
                             (w_lat if k != "action_loss" else 1.0)) * v
        losses["loss"] = total
        return losses, pooled, logits

    # --------------------------------------------------------------------------------------------------- train
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._t_batch = time.perf_counter()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        codes, vectors = self._labels(batch)
        gen = self._gen(self.cfg.seed * 1_000_003 + self.global_step)
        losses, _, _ = self.compute_losses(batch, codes, vectors, gen)
        bs = len(batch["language"])
        for k, v in losses.items():
            self.log(f"train/{k}", v.detach(), on_step=True, on_epoch=False, batch_size=bs, prog_bar=k == "loss")
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=bs)
        tv = self.cfg.training.train_visualization
        if tv.enabled and tv.every_n_steps and self.global_step % tv.every_n_steps == 0:
            self._write_samples("train", batch, codes, vectors, None, None)
        return losses["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._step_times.append(time.perf_counter() - self._t_batch)

    def perf_metrics(self) -> dict:
        """Throughput over the recorded train steps after a 3-step warm-up (validation time excluded)."""
        t = self._step_times[3:] if len(self._step_times) > 6 else self._step_times
        if not t:
            return {}
        sps = len(t) / max(sum(t), 1e-9)
        out = {"perf/steps_per_sec": sps, "perf/samples_per_sec": sps * self.cfg.data.loader.batch_size,
               "perf/step_time_s": sum(t) / len(t)}
        if torch.cuda.is_available() and self.device.type == "cuda":
            out["perf/peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return out

    # ---------------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val = {k: [] for k in ("gt_codes", "pred_codes", "gt_vectors", "pred_vectors", "episode_id",
                                     "dataset_name", "frame_idx", "loss", "n", "pred_action", "gt_action",
                                     "action_dim", "sub", "vote_codes")}
        self._val_first_batch = None

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        codes, vectors = self._labels(batch)
        gen = self._gen(self.pcfg.val_flow_seed * 7919 + batch_idx)
        losses, pooled, logits = self.compute_losses(batch, codes, vectors, gen)
        n = len(batch["language"])
        V = self._val
        V["loss"].append(float(losses["loss"]) * n)
        V["sub"].append({k: float(v) * n for k, v in losses.items() if k != "loss"})
        V["n"].append(n)
        V["gt_codes"].append(codes.cpu().numpy())
        V["gt_vectors"].append(vectors.cpu().numpy())
        pred_vec = None
        if self.pcfg.mode in ("latent_flow", "multitask"):
            pred_vec = self.policy.sample_latents(pooled, generator=self._gen(self.pcfg.val_flow_seed + batch_idx))
            pred_codes = self.policy.decode_codes(pred_vec)
            V["pred_vectors"].append(pred_vec.cpu().numpy())
            V["pred_codes"].append(pred_codes.cpu().numpy())
            nv = self.pcfg.val_vote_samples
            if nv > 0:
                votes = torch.stack([self.policy.decode_codes(self.policy.sample_latents(
                    pooled, generator=self._gen((self.pcfg.val_flow_seed + 1 + j) * 104729 + batch_idx)))
                    for j in range(nv)])                                                  # (nv, B, S)
                V["vote_codes"].append(torch.mode(votes, dim=0).values.cpu().numpy())
        elif self.pcfg.mode == "codes":
            pred_codes = logits.argmax(-1)
            V["pred_codes"].append(pred_codes.cpu().numpy())
            V["pred_vectors"].append(self.policy.codebook[pred_codes].cpu().numpy())
        else:
            pred_codes = None
        if self.policy.action_head is not None:
            V["pred_action"].append(self.policy.action_head(pooled).cpu().numpy())
            V["gt_action"].append(batch["action"].cpu().numpy())
            ad = batch.get("action_dim")
            V["action_dim"].append(ad.cpu().numpy() if ad is not None else np.full(n, batch["action"].shape[1]))
        V["episode_id"].extend([str(e) for e in batch.get("episode_id", ["?"] * n)])
        V["dataset_name"].extend([str(e) for e in batch.get("dataset_name", ["?"] * n)])
        fi = batch.get("frame_idx")
        V["frame_idx"].extend([int(x) for x in fi] if fi is not None else [-1] * n)
        if self._val_first_batch is None:
            self._val_first_batch = {"batch": batch, "codes": codes, "vectors": vectors,
                                     "pred_codes": pred_codes, "pred_vec": pred_vec}

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val.get("n"):
            return
        m = self.validation_metrics()
        step = int(self.global_step)
        for k, v in m.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.log(k, float(v), on_step=False, on_epoch=True)
        self.info(ST.batch_mix_line("Val", step, self._val["dataset_name"]))
        self.info(f"[Val] step={step} loss={m['val/loss']:.4f} token_acc={m.get('val/token_accuracy', float('nan')):.3f} "
                  f"vote={m.get('val/token_accuracy_vote', float('nan')):.3f} "
                  f"majority={m.get('val/token_accuracy_majority_baseline', float('nan')):.3f} "
                  f"seq_acc={m.get('val/sequence_accuracy', float('nan')):.3f} n={int(sum(self._val['n']))}")
        self._save_predictions(step)
        if self.cfg.training.validation.visualization.enabled and self._val_first_batch is not None:
            fb = self._val_first_batch
            self._write_samples("val", fb["batch"], fb["codes"], fb["vectors"], fb["pred_codes"], fb["pred_vec"])
        self.last_val_metrics = {**m, "val/step": step}  # MetricsJsonCallback records these into metrics.json
        self.last_val_step = step

    def validation_metrics(self) -> dict:
        V = self._val
        N = sum(V["n"])
        m: dict[str, float] = {"val/loss": sum(V["loss"]) / N}
        for k in (V["sub"][0] if V["sub"] else {}):
            m[f"val/{k}"] = sum(s[k] for s in V["sub"]) / N
        gt_codes = np.concatenate(V["gt_codes"])
        if V["pred_codes"]:
            m.update(ST.code_accuracy_stats(gt_codes, np.concatenate(V["pred_codes"]),
                                            self.labeller.spec.codebook_size))
        if V["vote_codes"]:
            vote = ST.code_accuracy_stats(gt_codes, np.concatenate(V["vote_codes"]), self.labeller.spec.codebook_size)
            for k in ("token_accuracy", "token_accuracy_ci_low", "token_accuracy_ci_high", "sequence_accuracy"):
                m[f"val/{k.replace('token_accuracy', 'token_accuracy_vote').replace('sequence_accuracy', 'sequence_accuracy_vote')}"] = vote[f"val/{k}"]
        if V["pred_vectors"]:
            gv, pv = np.concatenate(V["gt_vectors"]), np.concatenate(V["pred_vectors"])
            m.update(ST.vector_stats(pv, gv, "val/latent_vector_stats/"))
            m["val/latent_vector_mse"] = m["val/latent_vector_stats/mse"]
        if V["pred_action"]:
            pa, ga = ST.masked_action_arrays(np.concatenate(V["pred_action"]), np.concatenate(V["gt_action"]),
                                             np.concatenate(V["action_dim"]))
            m.update(ST.vector_stats(pa, ga, "val/action_stats/"))
            m["val/action_mse"] = m["val/action_stats/mse"]
        m.update(ST.dataset_mix_stats(V["dataset_name"]))
        m.update(self.perf_metrics())
        return m

    def _save_predictions(self, step: int) -> Path:
        V = self._val
        K = self.labeller.spec
        empty_codes = np.zeros((0, K.code_seq_len), np.int64)
        arrays = {
            "gt_codes": np.concatenate(V["gt_codes"]),
            "pred_codes": np.concatenate(V["pred_codes"]) if V["pred_codes"] else empty_codes,
            "gt_vectors": np.concatenate(V["gt_vectors"]),
            "pred_vectors": np.concatenate(V["pred_vectors"]) if V["pred_vectors"] else np.zeros((0,)),
            "episode_ids": np.array(V["episode_id"]), "dataset_names": np.array(V["dataset_name"]),
            "frame_idx": np.array(V["frame_idx"], dtype=np.int64),
            "codebook": self.policy.codebook.cpu().numpy(), "step": np.array(step),
            "mode": np.array(self.pcfg.mode),
        }
        path = save_predictions(self.out_dir, step, arrays)   # atomic (the one writer of val_predictions/)
        return path

    def _write_samples(self, split: str, batch: dict, codes, vectors, pred_codes, pred_vec) -> None:
        vis = self.cfg.training.validation.visualization if split == "val" else self.cfg.training.train_visualization
        try:
            recs = sample_records(batch, codes.cpu().numpy(), None if pred_codes is None else pred_codes.cpu().numpy(),
                                  None if pred_vec is None else pred_vec.cpu().numpy(), vectors.cpu().numpy(),
                                  vis.num_samples)
            write_samples(self.out_dir / "samples" / split / f"step_{int(self.global_step):06d}", batch["frames"], recs)
        except Exception as e:  # visualisation must never kill a run
            self.info(f"[Samples] {split} panels failed: {type(e).__name__}: {e}")

    # ---------------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        opt, sched = build_optimizer(self.policy, self.cfg.training)
        return {"optimizer": opt, "lr_scheduler": sched}

    # ------------------------------------------------------------------------------------------- checkpoints
    def check_checkpoint(self, path: str) -> dict:
        """The resume pre-flight (``resume.prepare_resume``): ``path`` against this freshly built module."""
        return check_policy_checkpoint(path, self)  # raises ResumeMismatchError before any data exists

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hlrp_policy"] = self.meta
        data_position(self, checkpoint)  # the data module's saved state continues at step x batch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        found = checkpoint.get("hlrp_policy")
        if found is None:
            raise ResumeMismatchError("checkpoint has no hlrp_policy block: it was not written by the Stage-2 policy")
        diffs = meta_diff(found, self.meta)
        if diffs:
            raise ResumeMismatchError("checkpoint config differs from this run:\n  - " + "\n  - ".join(diffs))


def check_policy_checkpoint(path: str, module: PolicyModule) -> dict:
    """Pre-flight for ``training.resume_from``: read the checkpoint on CPU and compare its ``hlrp_policy`` block
    and its state dict (keys and shapes) with the freshly built module; raise ONE ``ResumeMismatchError`` listing
    counts, the first keys and the differing config fields, with the fix. Returns the checkpoint dict."""
    from ...paths import resolve

    p = resolve(path)
    if not p.exists():
        raise ResumeMismatchError(f"training.resume_from={path!r}: no such checkpoint ({p})")
    from ..resume import load_checkpoint

    try:
        ckpt = load_checkpoint(p)  # a directory, truncated or foreign file -> an error naming the file and the knob
    except IncompatibleCheckpointError as exc:
        raise ResumeMismatchError(str(exc)) from None
    problems = []
    found = ckpt.get("hlrp_policy")
    if found is None:
        problems.append("the checkpoint has no hlrp_policy block (not a Stage-2 policy checkpoint)")
    elif found.get("hparams_schema_version") != HPARAMS_SCHEMA:
        problems.append(f"hparams_schema_version {found.get('hparams_schema_version')!r} is not {HPARAMS_SCHEMA}")
    diffs = meta_diff(found, module.meta) if found else []
    sd_diff = state_dict_diff(ckpt.get("state_dict", {}), module.state_dict())
    if problems or diffs or sd_diff:
        msg = [f"cannot resume from {p}:"] + [f"  {x}" for x in problems]
        if diffs:
            msg.append(f"  {len(diffs)} config fields differ:")
            msg += [f"    - {d}" for d in diffs]
        if sd_diff:
            msg.append("  state dict differs:\n" + sd_diff)
        msg.append("  fix: set the differing fields back to the checkpoint's values, or start a new run without "
                   "training.resume_from (weights-only init is a separate, explicit step)")
        raise ResumeMismatchError("\n".join(msg))
    return ckpt
