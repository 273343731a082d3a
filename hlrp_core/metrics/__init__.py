"""hlrp_core.metrics: "is this learning?" metrics, baselines, confidence intervals and a verdict.

Pure numpy/scipy (no torch, no TF), so training code, analysis notebooks and tests can all call it. Formulas,
baselines and floors: ``docs/METRICS.md``. Metric names: :mod:`hlrp_core.metrics.names`.

Typical use at a validation::

    from hlrp_core import metrics
    m = metrics.evaluate_codes(gt_codes, pred_logits=logits, episode_ids=ep,
                               ablations={"shuffled_images": logits_shuffled})
    word, evidence, details = metrics.verdict(m)
    run.record({**{k: v for k, v in m.items()}, "verdict": word, "verdict_evidence": evidence})
"""

from . import baselines, classification, collapse, histograms, kmeans, names, predictions, stage1, stats, vectors
from .baselines import (
    majority_accuracy,
    majority_predictor,
    majority_topk,
    marginal_accuracy,
    marginal_sampler,
    mean_vector_baseline,
    unconditional_ce,
    uniform_accuracy,
    uniform_ce,
    uniform_topk,
)
from .classification import (
    cross_entropy,
    decoding_margin,
    margin_summary,
    nearest_code_decode,
    per_position_accuracy,
    sequence_exact_match,
    token_accuracy,
    topk_hit_rate,
    topk_nearest_hits,
)
from .collapse import (
    codebook_usage,
    entropy,
    entropy_ratio,
    expected_unique,
    per_position_diversity,
    perplexity,
    perplexity_ratio,
    seed_variance,
    top1_share,
    unique_ratio,
    variance_ratio,
)
from .evaluate import evaluate_codes, evaluate_vectors
from .histograms import (
    episode_halves,
    histogram,
    js_codes,
    js_divergence,
    js_floor_theory,
    kl_codes,
    kl_divergence,
    per_position_js,
    split_half_js,
)
from .stage1 import (
    action_nmi,
    action_nmi_shuffled,
    linear_probe,
    linear_probe_r2,
    linear_probe_r2_shuffled,
    stage1_action_metrics,
    stage1_reconstruction_metrics,
    within_code_spread,
)
from .stats import (
    CI,
    EpisodeResampler,
    PairedResult,
    bootstrap_log_slope,
    cluster_bootstrap,
    paired_bootstrap,
    seed_mean_ci,
    trend_test,
    wilson_interval,
)
from .vectors import cosine, mae, mse, r2_score
from .verdict import VerdictThresholds, verdict

__all__ = [name for name in dir() if not name.startswith("_")]
