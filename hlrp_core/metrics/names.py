"""Metric names shared by training loggers, the dashboard, ladders, analysis notebooks and tests.

Every value that ``evaluate_codes`` / ``evaluate_vectors`` / ``stage1`` write is a flat scalar under one of these
names. A 95% confidence interval of metric ``m`` is written as ``m + LO`` and ``m + HI`` (``acc_lo``, ``acc_hi``).
Per-position variants use :func:`pos` (``acc_pos0``); sequence-level (joint code tuple) variants use :func:`seq`
(``unique_ratio_seq``). Input-ablation deltas use :func:`ablation` (``ablation_shuffled_images_delta``). A caller
that logs several heads/stages may prefix every key (``val/acc``); ``verdict(..., prefix="val/")`` strips it.

See ``docs/METRICS.md`` for the formulas.
"""

from __future__ import annotations

# --- CI suffixes -----------------------------------------------------------------------------------------------------
LO = "_lo"
HI = "_hi"

# --- sizes / protocol ------------------------------------------------------------------------------------------------
N_ITEMS = "n_items"                # N evaluated items
N_EPISODES = "n_episodes"          # distinct eval episodes (the bootstrap cluster unit)
N_CODES = "n_codes"                # K, codebook size (per position)
N_POSITIONS = "n_positions"        # S, code positions per item
EPISODE_OVERLAP = "episode_overlap"  # eval episodes that also appear in training (must be 0)
N_BOOT = "n_boot"
HEAD = "head"                      # "token" | "vector" (string, not a scalar metric)

# --- §1 histograms ---------------------------------------------------------------------------------------------------
KL = "kl"                          # KL(p~ || q~) pooled over positions, pseudo-count alpha
KL_ALPHA = "kl_alpha"
JS = "js"                          # JS(p, q) pooled over positions, nats
JS_FLOOR = "js_floor"              # split-half floor JS(GT_A, GT_B)
JS_SPLIT = "js_split"              # JS(pred_A, GT_B)
JS_EXCESS = "js_excess"            # JS_SPLIT - JS_FLOOR
JS_FLOOR_THEORY = "js_floor_theory"  # (K-1)(1/N_p+1/N_q)/8 large-sample approximation

# --- §2 accuracy / baselines -----------------------------------------------------------------------------------------
ACC = "acc"                        # token accuracy pooled over positions
SEQ_EXACT = "seq_exact"            # all S codes correct
LIFT = "lift"                      # ACC - MAJORITY_ACC (the primary metric of a token head)
SEQ_LIFT = "seq_lift"              # SEQ_EXACT - majority tuple share
MAJORITY_ACC = "majority_acc"      # max_k p_k (pooled = mean over positions of per-position majority)
MARGINAL_ACC = "marginal_acc"      # sum_k p_k^2
UNIFORM_ACC = "uniform_acc"        # 1/K
CE = "ce"                          # cross-entropy of the logits, nats
UNCOND_CE = "uncond_ce"            # H(p): best unconditional model
UNIFORM_CE = "uniform_ce"          # ln K
IG = "ig"                          # UNCOND_CE - CE
IG_RATIO = "ig_ratio"              # IG / H(p)


def topk(k: int) -> str:
    """Top-k hit rate name (``top5_hit``)."""
    return f"top{k}_hit"


def topk_majority(k: int) -> str:
    """Blind top-k baseline: sum of the k largest GT shares (``top5_majority``)."""
    return f"top{k}_majority"


# --- §2 nearest-code decoding (vector head with a codebook) ---------------------------------------------------------
NEAREST_ACC = "nearest_acc"
NEAREST_LIFT = "nearest_lift"
MARGIN_MEDIAN = "margin_median"    # median of d(y^, e_gt) - min_{j != gt} d(y^, e_j); < 0 = correct decode
NEAR_MISS_SHARE = "near_miss_share"  # share with |margin| < 10% of the median inter-code distance

# --- §3 vectors ------------------------------------------------------------------------------------------------------
MSE = "mse"
MAE = "mae"
COSINE = "cosine"
R2 = "r2"                          # vs the (train) mean predictor; the primary metric of a vector head
MEAN_MSE = "mean_mse"              # MSE of the mean-vector predictor
MEAN_COSINE = "mean_cosine"        # mean cos(y_bar_train, y)

# --- §4 collapse -----------------------------------------------------------------------------------------------------
UNIQUE_RATIO = "unique_ratio"      # unique_pred / unique_gt
UNIQUE_PRED = "unique_pred"
UNIQUE_GT = "unique_gt"
ENTROPY_PRED = "entropy_pred"
ENTROPY_GT = "entropy_gt"
ENTROPY_RATIO = "entropy_ratio"    # H(q)/H(p)
PPL_RATIO = "ppl_ratio"            # PPL(q)/PPL(p)
TOP1_SHARE_PRED = "top1_share_pred"  # max_k q_k
TOP1_SHARE_GT = "top1_share_gt"      # max_k p_k
CODE_USAGE = "code_usage"          # share of the K codes used by the predictions
PPL_PRED = "ppl_pred"
VAR_RATIO = "var_ratio"            # sum Var_items(y^) / sum Var_items(y)
SEED_VAR = "seed_var"              # mean_items Var_seeds(y^) / sum Var_items(y)

# --- §5 Stage 1 ------------------------------------------------------------------------------------------------------
ACTION_NMI = "action_nmi"
ACTION_NMI_SHUFFLED = "action_nmi_shuffled"
ACTION_NMI_EXCESS = "action_nmi_excess"
PROBE_R2 = "probe_r2"
PROBE_R2_SHUFFLED = "probe_r2_shuffled"
PROBE_R2_EXCESS = "probe_r2_excess"
WITHIN_CODE_SPREAD = "within_code_spread"
COPY_RATIO = "copy_ratio"
CLOSER_TO_FUTURE = "closer_to_future"
DELTA_PSNR = "delta_psnr"
REPLACED_RISING = "replaced_rising"   # 1 if the replaced-code count rose over the last 3 events

# --- trend / verdict -------------------------------------------------------------------------------------------------
TREND_DIFF = "trend_diff"          # paired bootstrap (latest - first checkpoint) on the primary metric
TREND_RHO = "trend_rho"            # Spearman rho of the primary metric vs step
TREND_P = "trend_p"
VERDICT = "verdict"
VERDICT_EVIDENCE = "verdict_evidence"

#: The four verdict words.
LEARNING = "learning"
COLLAPSED = "collapsed"
RANDOM_LIKE = "random-like"
INCONCLUSIVE = "inconclusive"
VERDICTS = (LEARNING, COLLAPSED, RANDOM_LIKE, INCONCLUSIVE)

#: Primary metric per head (spec §8).
PRIMARY = {"token": LIFT, "vector": R2}


def pos(name: str, s: int) -> str:
    """Per-position variant (``acc_pos0``)."""
    return f"{name}_pos{s}"


def seq(name: str) -> str:
    """Sequence-level (joint code tuple) variant (``unique_ratio_seq``)."""
    return f"{name}_seq"


def lo(name: str) -> str:
    return name + LO


def hi(name: str) -> str:
    return name + HI


def ablation(name: str) -> str:
    """Paired drop of the primary metric under an input ablation, metric(true) - metric(ablated)."""
    return f"ablation_{name}_delta"


ABLATION_PREFIX = "ablation_"
ABLATION_SUFFIX = "_delta"

#: Input ablations of spec §6 (names used by training code when it re-scores corrupted inputs).
SHUFFLED_IMAGES = "shuffled_images"
SHUFFLED_INSTRUCTIONS = "shuffled_instructions"
BLANK_IMAGES = "blank_images"
SHUFFLED_CONDITIONING = "shuffled_conditioning"

# --- Stage 1 verdict inputs (added) ----------------------------------------------------------------------------------
CODES_USED = "codes_used"                    # distinct codes used on the eval set (per position: pos(CODES_USED, s))
PROBE_R2_VS_UNTRAINED = "probe_r2_vs_untrained"    # paired diff, probe R^2 (trained - untrained LAQ)
ACTION_NMI_VS_UNTRAINED = "action_nmi_vs_untrained"  # paired diff, NMI (trained - untrained LAQ)
