"""Constructed validation-prediction files with a known verdict, in the Stage-1 and Stage-2 modules' npz formats
(the calibration suite, tests/unit/test_verdict_calibration.py, and the callback tests use them).

Stage 1 (keys of ``laq.module.LAQModule._save_outputs``): ``aligned`` (codes = the action class, the decoder uses them:
``learning``), ``collapsed`` (one code), ``ignored`` (random codes, Delta PSNR centred on 0: ``random-like``).
Stage 2 (keys of ``policy.module.PolicyModule._save_predictions``): ``perfect`` / ``improving`` (``learning``), ``marginal``
(draws from the GT marginal: ``random-like``), ``constant`` (one code: ``collapsed``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hlrp_core.metrics.predictions import save_predictions

N_EP, PER_EP, K, S, D = 40, 8, 8, 1, 8
P_GT = np.array([0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])


def stage1_npz(run_dir: Path, step: int, kind: str, seed: int = 0, replacement: tuple[int, int] | None = None
               ) -> Path:
    """A LAQ validation file; ``replacement`` = (events so far, codes replaced at the last event)."""
    rng = np.random.default_rng(seed)
    N = N_EP * PER_EP
    act_id = rng.integers(0, K, N)
    actions = np.eye(K)[act_id][:, :3] + 0.01 * rng.normal(size=(N, 3))
    actions = np.concatenate([actions, act_id[:, None] / K], 1).astype(np.float32)
    copy = rng.uniform(0.02, 0.04, N)
    if kind == "aligned":
        codes = act_id[:, None]
        recon, shuf = 0.2 * copy, 0.9 * copy
    elif kind == "collapsed":
        codes = np.zeros((N, S), np.int64)
        recon, shuf = 0.9 * copy, 0.9 * copy
    elif kind == "ignored":  # decoder ignores the latent, codes random
        codes = rng.integers(0, K, (N, S))
        recon = 0.8 * copy
        shuf = recon * np.exp(rng.normal(0, 0.03, N))       # Delta PSNR centred on 0
    else:
        raise ValueError(kind)
    latents = (np.eye(K)[codes[:, 0]][:, None, :] + 0.05 * rng.normal(size=(N, S, D))).astype(np.float32)
    untrained = rng.normal(size=(N, S, D)).astype(np.float32)
    extra = {} if replacement is None else {"replacement_events": np.array(replacement[0]),
                                            "replacement_last": np.array(replacement[1])}
    return save_predictions(run_dir, step, dict(
        codes=codes, latents=latents, vectors=latents, actions=actions,
        episode_ids=np.repeat([f"ep{i}" for i in range(N_EP)], PER_EP), dataset_names=np.array(["d"] * N),
        recon_mse=recon.astype(np.float32), copy_mse=copy.astype(np.float32), shuffled_mse=shuf.astype(np.float32),
        untrained_latents=untrained, **extra))


def stage2_npz(run_dir: Path, step: int, kind: str, mode: str = "codes", seed: int = 0, keep: float = 1.0,
               pred_seed: int | None = None) -> Path:
    """A policy validation file. ``improving``: each item predicted right with probability ``keep``, else a draw
    from the marginal; the items (GT, episodes) depend on ``seed`` only, the predictions on ``pred_seed``."""
    rng = np.random.default_rng(seed)
    N = N_EP * PER_EP
    gt = rng.choice(K, size=(N, S), p=P_GT)
    codebook = rng.normal(size=(K, D)).astype(np.float32)
    prng = np.random.default_rng(seed + 1 if pred_seed is None else pred_seed)
    if kind == "perfect":
        pred = gt.copy()
    elif kind == "improving":
        pred = np.where(prng.random(gt.shape) < keep, gt, prng.choice(K, size=gt.shape, p=P_GT))
    elif kind == "marginal":
        pred = prng.choice(K, size=(N, S), p=P_GT)
    elif kind == "constant":
        pred = np.full((N, S), 3)
    else:
        raise ValueError(kind)
    arrays = {"gt_codes": gt, "gt_vectors": codebook[gt], "episode_ids": np.repeat(np.arange(N_EP), PER_EP),
              "dataset_names": np.array(["d"] * N), "frame_idx": np.arange(N), "codebook": codebook,
              "step": np.array(step), "mode": np.array(mode)}
    if mode == "codes":
        arrays.update(pred_codes=pred, pred_vectors=np.zeros((0,)))
    else:
        arrays.update(pred_codes=np.zeros((0, S), np.int64),
                      pred_vectors=codebook[pred] + 0.01 * prng.normal(size=(N, S, D)).astype(np.float32))
    return save_predictions(run_dir, step, arrays)
