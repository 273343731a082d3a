"""Collapse indicators (docs/METRICS.md §3-§4). Entropies in nats.

| indicator | healthy | collapse signature |
|---|---|---|
| unique ratio unique_pred / unique_gt (equal-size samples) | ~1 | << 1 (>> 1 = noise) |
| entropy / perplexity ratio H(q)/H(p), PPL(q)/PPL(p) | ~1 | -> 0 |
| top-1 share max_k q_k vs max_k p_k | close | q_max -> 1 while p_max moderate |
| per-position diversity (unique count, entropy per slot) | every slot varies | one frozen slot |
| codebook usage (share of K used), PPL/K | data-relative | usage 1/K, PPL -> 1 |
| variance ratio sum Var_items(y^) / sum Var_items(y) | ~1 | -> 0 (>> 1 noise) |
| seed variance mean_items Var_seeds(y^) / sum Var_items(y) | small vs VR | ~VR: output follows noise |

Do not count unique rows of continuous vectors on a grid (always ~1); count unique nearest codes instead.
"""

from __future__ import annotations

import numpy as np

from .histograms import as_positions, histogram


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy in nats of a count or probability vector (equals ``scipy.stats.entropy``)."""
    p = np.asarray(counts, float)
    s = p.sum()
    if s <= 0:
        return float("nan")
    p = p[p > 0] / s
    return float(-np.sum(p * np.log(p)))


def perplexity(counts: np.ndarray) -> float:
    return float(np.exp(entropy(counts)))


def code_entropy(codes: np.ndarray, n_codes: int) -> float:
    return entropy(histogram(codes, n_codes))


def unique_ratio(gt_codes: np.ndarray, pred_codes: np.ndarray) -> float:
    """unique(pred) / unique(gt) over all entries (pass one position or tuple ids for per-slot / sequence)."""
    return float(len(np.unique(pred_codes)) / max(len(np.unique(gt_codes)), 1))


def entropy_ratio(gt_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int) -> float:
    """H(q) / H(p); NaN when the GT is constant (H(p) = 0)."""
    hp = code_entropy(gt_codes, n_codes)
    return float(code_entropy(pred_codes, n_codes) / hp) if hp > 0 else float("nan")


def perplexity_ratio(gt_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int) -> float:
    """PPL(q) / PPL(p) = exp(H(q) - H(p))."""
    return float(np.exp(code_entropy(pred_codes, n_codes) - code_entropy(gt_codes, n_codes)))


def top1_share(codes: np.ndarray, n_codes: int) -> float:
    """max_k share of the most frequent code."""
    h = histogram(codes, n_codes)
    return float(h.max() / h.sum()) if h.sum() > 0 else float("nan")


def per_position_diversity(codes: np.ndarray, n_codes: int) -> dict[str, np.ndarray]:
    """Per slot s of (N, S) codes: ``unique`` count, ``entropy`` (nats) and ``top1_share``, each (S,)."""
    c = as_positions(codes)
    hs = [histogram(c[:, s], n_codes) for s in range(c.shape[1])]
    return {
        "unique": np.array([(h > 0).sum() for h in hs], float),
        "entropy": np.array([entropy(h) for h in hs]),
        "top1_share": np.array([h.max() / h.sum() for h in hs]),
    }


def codebook_usage(codes: np.ndarray, n_codes: int) -> dict[str, float]:
    """Stage-1 codebook usage on the eval set: ``usage`` (share of K used), ``n_used``, ``ppl``, ``ppl_over_k``."""
    h = histogram(codes, n_codes)
    ppl = perplexity(h)
    return {"usage": float((h > 0).mean()), "n_used": float((h > 0).sum()), "ppl": ppl, "ppl_over_k": ppl / n_codes}


def expected_unique(n_codes: int, n: int) -> float:
    """Expected distinct codes among n uniform draws over K: K (1 - (1 - 1/K)^n)."""
    return float(n_codes * (1.0 - (1.0 - 1.0 / n_codes) ** n))


def _flat_items(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    return x.reshape(len(x), -1)


def variance_ratio(gt_vectors: np.ndarray, pred_vectors: np.ndarray) -> float:
    """VR = sum_dims Var_items(y^) / sum_dims Var_items(y) (items on axis 0; other axes flattened)."""
    vy = _flat_items(gt_vectors).var(axis=0).sum()
    return float(_flat_items(pred_vectors).var(axis=0).sum() / vy) if vy > 0 else float("nan")


def seed_variance(gt_vectors: np.ndarray, pred_samples: np.ndarray) -> float:
    """SV = mean over items of sum_dims Var over noise seeds (y^), divided by sum_dims Var_items(y).

    ``pred_samples``: (n_seeds, N, ...) predictions for the same items under different noise seeds.
    """
    samples = np.asarray(pred_samples, float)
    samples = samples.reshape(samples.shape[0], samples.shape[1], -1)       # (n_seeds, N, D)
    vy = _flat_items(gt_vectors).var(axis=0).sum()
    if vy <= 0 or samples.shape[0] < 2:
        return float("nan")
    return float(samples.var(axis=0, ddof=1).sum(axis=1).mean() / vy)
