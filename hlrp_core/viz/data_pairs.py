"""Figures of the data adapter: frame pairs per dataset (``notebooks/00_browse_data.ipynb``) and the loader benchmark
(``notebooks/01_data_throughput.ipynb``). Inputs are a batch dict of the loader's contract or ``run_bench``'s dict."""

from __future__ import annotations

from typing import Any

import numpy as np


def pairs_figure(batch: dict, max_rows: int = 60, cols: int = 2):
    """One row per sample: frame t | frame t+k (| more frames), titled with dataset, instruction, k and action."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frames = batch["frames"].numpy() if hasattr(batch["frames"], "numpy") else np.asarray(batch["frames"])
    B, _, T = frames.shape[:3]
    n = min(B, max_rows)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols * T, figsize=(2.0 * cols * T, 2.15 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        r, c0 = i // cols, (i % cols) * T
        ad = int(batch["action_dim"][i]) if "action_dim" in batch else 0
        act = ("[" + ", ".join(f"{float(x):.3g}" for x in batch["action"][i, :min(ad, 4)]) + (", ...]" if ad > 4
                                                                                              else "]")) if ad else "masked"
        k = int(batch["offset"][i]) if "offset" in batch else int(batch["sample_key"][i, 3])
        lang = batch.get("language", [""] * B)[i][:38]
        for j in range(T):
            ax = axes[r, c0 + j]
            ax.imshow(frames[i, :, j].transpose(1, 2, 0))
            if j == 0:
                ax.set_title(f"{batch['dataset_name'][i][:26]}\n{lang!r}\nk={k} a={act}", fontsize=6, loc="left")
            else:
                ax.set_title(f"t+{int(batch['frame_offset'][i, j]) if 'frame_offset' in batch else k}", fontsize=6)
    fig.tight_layout()
    return fig


def bench_figure(res: dict[str, Any]):
    """Left: loader pairs/s vs the decode bound B, bare decode and the tf.data reference. Right: RSS after each
    validation cycle."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    names = ["loader", "bound B", "bare decode"]
    vals = [res.get("pairs_per_s", 0), res.get("decode_bound_pairs_per_s", 0), res.get("bare_decode_pairs_per_s", 0)]
    if "reference_pairs_per_s" in res:
        names.append("tf.data ref")
        vals.append(res["reference_pairs_per_s"])
    a.bar(names, vals, color=["C0", "C1", "C2", "C3"][: len(vals)])
    a.set_ylabel("pairs/s")
    a.set_title(f"{res.get('num_datasets')} datasets, batch {res.get('batch_size')}, {res.get('image_size')} px, "
                f"{res.get('threads')} threads: R = {res.get('ratio')}", fontsize=9)
    rss = res.get("rss_after_val_cycles_mb") or []
    b.plot(range(1, len(rss) + 1), rss, marker="o")
    b.set_xlabel("validation cycle")
    b.set_ylabel("RSS (MB)")
    b.set_title(f"peak RSS {res.get('peak_rss_mb')} MB, first batch {res.get('first_batch_s')} s", fontsize=9)
    fig.tight_layout()
    return fig
