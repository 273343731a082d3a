"""Stage-2 sample records: a PNG panel per sample (first frame + instruction, dataset, episode/frame, gt vs pred
codes or a vector summary) and one JSON list with the same fields. ``gt_codes`` are always kept, also when the
prediction is a vector (the seed's latent_flow fix). ``summary``: the headline numbers as text (notebook 11)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np


def sample_records(batch: dict, gt_codes: np.ndarray, pred_codes: Optional[np.ndarray],
                   pred_vectors: Optional[np.ndarray], gt_vectors: Optional[np.ndarray], n: int) -> list[dict]:
    """JSON-able records for the first ``n`` items of a batch."""
    out = []
    frame_idx = batch.get("frame_idx")
    for i in range(min(n, len(batch["language"]))):
        rec: dict[str, Any] = {
            "index": i,
            "dataset_name": str(batch.get("dataset_name", ["?"] * (i + 1))[i]),
            "episode_id": str(batch.get("episode_id", ["?"] * (i + 1))[i]),
            "frame_idx": int(frame_idx[i]) if frame_idx is not None else None,
            "language": str(batch["language"][i]),
            "gt_codes": [int(c) for c in np.asarray(gt_codes[i]).reshape(-1)],
        }
        if pred_codes is not None:
            rec["pred_codes"] = [int(c) for c in np.asarray(pred_codes[i]).reshape(-1)]
        if pred_vectors is not None:
            pv = np.asarray(pred_vectors[i], dtype=np.float64).reshape(-1)
            rec["pred_vector_l2"] = float(np.linalg.norm(pv))
            if gt_vectors is not None:
                gv = np.asarray(gt_vectors[i], dtype=np.float64).reshape(-1)
                rec["gt_vector_l2"] = float(np.linalg.norm(gv))
                rec["vector_mse"] = float(((pv - gv) ** 2).mean())
                rec["vector_cosine"] = float(pv @ gv / max(np.linalg.norm(pv) * np.linalg.norm(gv), 1e-12))
        out.append(rec)
    return out


def write_samples(out_dir: str | os.PathLike, frames: Any, records: list[dict]) -> list[Path]:
    """``out_dir/sample_XX.png`` per record + ``out_dir/records.json``; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    f = frames.detach().cpu().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    for rec in records:
        i = rec["index"]
        img = f[i, :, 0] if f.ndim == 5 else f[i]
        img = np.transpose(img, (1, 2, 0))
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 1)
        fig, ax = plt.subplots(1, 2, figsize=(6, 3), gridspec_kw={"width_ratios": [1, 1.3]})
        ax[0].imshow(img)
        ax[0].set_axis_off()
        ax[0].set_title("first frame", fontsize=8)
        lines = [f"instr: {rec['language'][:40]}", f"dataset: {rec['dataset_name']}",
                 f"episode: {rec['episode_id'][-28:]}", f"frame: {rec['frame_idx']}", f"gt:   {rec['gt_codes']}"]
        if "pred_codes" in rec:
            lines.append(f"pred: {rec['pred_codes']}")
        if "vector_mse" in rec:
            lines.append(f"vec mse {rec['vector_mse']:.3f} cos {rec['vector_cosine']:.2f}")
        ax[1].text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7, family="monospace")
        ax[1].set_axis_off()
        p = d / f"sample_{i:02d}.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        paths.append(p)
    tmp = d / "records.json.tmp"
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, d / "records.json")
    return paths


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
