"""The thresholds of the "is this learning?" verdict: one torch-free dataclass, the one home of their defaults.

``training.verdict.*`` (``VerdictConfig``, ``config/training.py``) and the rule's own ``VerdictThresholds``
(``hlrp_core/metrics/verdict.py``, where the rule is written; definitions in ``docs/METRICS.md`` §8) both inherit it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VerdictRules:
    """Verdict thresholds.

    Args:
        min_episodes: Fewer held-out episodes -> ``inconclusive`` (insufficient data).
        min_items_per_code: Items needed per code (N >= this x K) for the histogram metrics, else ``inconclusive``.
        collapse_top1_floor: ``collapsed`` when the predicted top-1 share CI lies above max(this, GT top-1 share +
            ``collapse_top1_margin``).
        collapse_top1_margin: See ``collapse_top1_floor``.
        collapse_unique_ratio: ``collapsed`` when the unique-code ratio (pred / GT) CI lies below this.
        collapse_ppl_ratio: ``collapsed`` when the perplexity ratio (pred / GT) CI lies below this.
        collapse_var_ratio: Vector head: ``collapsed`` when the variance ratio CI lies below this.
        random_tolerance: Largest effect of the primary metric (lift, R^2, information gain) still called
            ``random-like``: its upper CI bound must lie below this.
        plateau_tolerance: Latest-minus-first drop of the primary metric still read as a plateau (not degrading).
        require_ablation: Call a run ``learning`` only when an input ablation was run and showed a drop.
        stage1_min_ppl: Stage 1: ``collapsed`` at or below this code perplexity.
        stage1_min_excess: Stage 1: minimum NMI / probe-R^2 excess over the shuffled control when no paired
            comparison with the untrained LAQ is available.
    """

    min_episodes: int = 30
    min_items_per_code: float = 10.0
    collapse_top1_floor: float = 0.5
    collapse_top1_margin: float = 0.3
    collapse_unique_ratio: float = 0.25
    collapse_ppl_ratio: float = 0.25
    collapse_var_ratio: float = 0.1
    random_tolerance: float = 0.02
    plateau_tolerance: float = 0.01
    require_ablation: bool = False
    stage1_min_ppl: float = 1.5
    stage1_min_excess: float = 0.05
