"""The "is this learning?" verdict: ``learning`` / ``collapsed`` / ``random-like`` / ``inconclusive``.

Input: the flat metric dict of ``evaluate_codes`` / ``evaluate_vectors`` (or a ``metrics.json`` row holding the same
names), optionally extended with input-ablation deltas (``ablation_<name>_delta[_lo|_hi]``) and a paired
latest-vs-first comparison (``trend_diff[_lo|_hi]``). "CI > x" means the lower 95% bound is > x, "CI < x" the
upper bound is < x. Thresholds are fields of :class:`VerdictThresholds` (docs/METRICS.md §8).

Rule (stage 2 / any token or vector head), first match wins. Primary metric P: token head ``lift`` (accuracy
minus the majority-code accuracy, i.e. the strongest blind baseline); vector head ``r2`` (vs the mean predictor).

1. **inconclusive (insufficient data)**: n_episodes < ``min_episodes`` (30); or, when codes are scored,
   n_items < ``min_items_per_code`` (10) x K; or eval episodes overlap training; or P has no CI.
   Collapse indicators that fired anyway are listed in the evidence.
2. **collapsed**: pooled, any position or the sequence tuple shows top-1 share of predictions CI >
   max(0.5, GT top-1 share + 0.3); or unique ratio CI < 0.25; or perplexity ratio CI < 0.25; or (vector head)
   variance ratio CI < 0.1.
3. **learning**: P CI > 0; **and**, when input ablations are given, at least one ablation drop
   Delta = P(true) - P(ablated) has CI > 0 (without ablations the evidence says "input sensitivity untested";
   ``require_ablation=True`` makes them mandatory); **and**, when ``trend_diff`` is given, its CI lower bound is
   > -``plateau_tolerance`` (improving or on a plateau, not degrading). Because P is measured against the
   majority code / the mean vector, a model that only reproduces the GT marginal has P <= 0 (its accuracy is
   sum p_k^2 <= max p_k; its R^2 is about -1) and can never pass this clause. Histogram JS excess over the
   split-half floor is reported, not required.
4. **random-like**: P CI contains or lies below 0 **and** is tight enough to exclude a practically relevant
   effect (upper bound < ``random_tolerance`` for P: 0.02 lift / 0.02 R^2), **and** no ablation drop has CI > 0.
5. **inconclusive**: anything else (lift without input sensitivity, sensitivity without lift, a CI too wide to
   tell learning from random). The evidence lists the failed clauses and the N needed to resolve the primary
   metric (CI half-width scales as 1/sqrt(N)).

Stage 1 (LAQ, ``head="stage1"``):

1. inconclusive (insufficient data) as above (n_episodes).
2. collapsed: codes used <= 1 in some position, or perplexity of the predicted codes <= ``stage1_min_ppl``
   (1.5), or ``replaced_rising`` == 1 (replaced-code count rose over the last 3 events).
3. learning: copy ratio CI < 1, Delta PSNR CI > 0, and action alignment above its control: the paired
   difference to an untrained LAQ (``probe_r2_vs_untrained`` / ``action_nmi_vs_untrained``) CI > 0, else the
   excess over the shuffled control (``probe_r2_excess`` / ``action_nmi_excess``) > ``stage1_min_excess``.
   Without any action metric: "inconclusive: reconstructs and uses its latents; action alignment untested".
4. random-like: Delta PSNR CI contains 0 (the decoder ignores the latent), whatever the copy ratio shows.
5. inconclusive otherwise.

Loss alone never yields "learning".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..config.verdict import VerdictRules
from . import names as n


@dataclass
class VerdictThresholds(VerdictRules):
    """The rule's thresholds: the ``training.verdict.*`` fields (``VerdictRules``, where each is documented), with
    ``random_tolerance`` given per primary metric (lift, R^2, information gain).

    Args:
        random_tolerance: ``{primary metric name: largest effect still called random-like}``.
    """

    random_tolerance: dict = field(
        default_factory=lambda: dict.fromkeys((n.LIFT, n.R2, n.IG), VerdictRules.random_tolerance))


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _fin(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.4g}"


class _Metrics:
    """Read access with prefix stripping and NaN for missing keys."""

    def __init__(self, metrics: Mapping[str, Any], prefix: str):
        self.m = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}

    def has(self, name: str) -> bool:
        return name in self.m and math.isfinite(_f(self.m[name]))

    def __call__(self, name: str) -> float:
        return _f(self.m.get(name))

    def ci(self, name: str) -> tuple[float, float, float]:
        return self(name), self(name + n.LO), self(name + n.HI)

    def ablations(self) -> list[str]:
        return sorted(k[len(n.ABLATION_PREFIX):-len(n.ABLATION_SUFFIX)] for k in self.m
                      if k.startswith(n.ABLATION_PREFIX) and k.endswith(n.ABLATION_SUFFIX))

    def groups(self) -> list[str]:
        """Suffixes of the collapse groups present: '' (pooled), '_pos0', ..., '_seq'."""
        out = [""]
        s = 0
        while n.pos(n.TOP1_SHARE_PRED, s) in self.m or n.pos(n.UNIQUE_RATIO, s) in self.m:
            out.append(f"_pos{s}")
            s += 1
        if n.seq(n.UNIQUE_RATIO) in self.m:
            out.append("_seq")
        return out


def _clause(details: list, clause: str, metric: str, value: float, lo: float, hi: float, op: str,
            threshold: float, passed: bool) -> dict:
    d = {"clause": clause, "metric": metric, "value": value, "lo": lo, "hi": hi, "op": op,
         "threshold": threshold, "passed": bool(passed)}
    details.append(d)
    return d


def _describe(d: dict) -> str:
    ci = f" [{_fmt(d['lo'])}, {_fmt(d['hi'])}]" if _fin(d["lo"], d["hi"]) else ""
    margin = ""
    if _fin(d["threshold"]):
        bound = d["lo"] if d["op"] == ">" else d["hi"]
        if _fin(bound):
            margin = f", margin {_fmt(bound - d['threshold'])}"
    return f"{d['metric']}={_fmt(d['value'])}{ci} {d['op']} {_fmt(d['threshold'])}{margin}"


def _n_needed(n_items: float, value: float, lo: float, hi: float, target_half_width: float) -> float:
    hw = (hi - lo) / 2
    if not _fin(n_items, hw) or hw <= 0 or target_half_width <= 0:
        return float("nan")
    return float(math.ceil(n_items * (hw / target_half_width) ** 2))


def _collapse_clauses(m: _Metrics, th: VerdictThresholds, details: list) -> list[dict]:
    fired = []
    for g in m.groups():
        v, lo, hi = m.ci(n.TOP1_SHARE_PRED + g)
        gt_top = m(n.TOP1_SHARE_GT + g)
        if _fin(lo):
            thr = max(th.collapse_top1_floor, (gt_top if _fin(gt_top) else 0.0) + th.collapse_top1_margin)
            d = _clause(details, "collapsed", n.TOP1_SHARE_PRED + g, v, lo, hi, ">", thr, lo > thr)
            if d["passed"]:
                fired.append(d)
        for name, thr in ((n.UNIQUE_RATIO, th.collapse_unique_ratio), (n.PPL_RATIO, th.collapse_ppl_ratio)):
            v, lo, hi = m.ci(name + g)
            if _fin(hi):
                d = _clause(details, "collapsed", name + g, v, lo, hi, "<", thr, hi < thr)
                if d["passed"]:
                    fired.append(d)
    v, lo, hi = m.ci(n.VAR_RATIO)
    if _fin(hi):
        d = _clause(details, "collapsed", n.VAR_RATIO, v, lo, hi, "<", th.collapse_var_ratio,
                    hi < th.collapse_var_ratio)
        if d["passed"]:
            fired.append(d)
    return fired


def verdict(
    metrics: Mapping[str, Any],
    *,
    head: str | None = None,
    primary: str | None = None,
    thresholds: VerdictThresholds | None = None,
    prefix: str = "",
) -> tuple[str, str, dict]:
    """Apply the rule of the module docstring to one checkpoint's metrics.

    Args:
        metrics: Flat dict (``evaluate_codes`` / ``evaluate_vectors`` output, plus optional ablation / trend keys).
        head: ``token``, ``vector`` or ``stage1``; default ``metrics["head"]``, else token.
        primary: Primary metric name (default ``lift`` for token, ``r2`` for vector).
        thresholds: Rule thresholds.
        prefix: Key prefix to strip (``val/``).

    Returns:
        (word, evidence, details): one of ``names.VERDICTS``; a one-line evidence string (which metric beat which
        floor, by how much, with what CI); ``{"clauses": [...], "primary": name, "n_needed": float}``.
    """
    th = thresholds or VerdictThresholds()
    m = _Metrics(metrics, prefix)
    head = head or str(m.m.get(n.HEAD) or "token")
    if head == "stage1":
        return _verdict_stage1(m, th)
    P = primary or n.PRIMARY.get(head, n.LIFT)
    details: list[dict] = []
    info = {"clauses": details, "primary": P, "head": head, "n_needed": float("nan")}

    def done(word: str, evidence: str) -> tuple[str, str, dict]:
        return word, f"{word}: {evidence}", info

    # 1. insufficient data
    short = []
    n_ep, n_items, k = m(n.N_EPISODES), m(n.N_ITEMS), m(n.N_CODES)
    if _fin(n_ep):
        d = _clause(details, "insufficient", n.N_EPISODES, n_ep, n_ep, n_ep, "<", th.min_episodes,
                    n_ep < th.min_episodes)
        if d["passed"]:
            short.append(f"n_episodes={int(n_ep)} < {th.min_episodes}")
    if _fin(n_items, k):
        need = th.min_items_per_code * k
        d = _clause(details, "insufficient", n.N_ITEMS, n_items, n_items, n_items, "<", need, n_items < need)
        if d["passed"]:
            short.append(f"n_items={int(n_items)} < {_fmt(th.min_items_per_code)}*K={int(need)}")
            info["n_needed"] = need
    if m(n.EPISODE_OVERLAP) > 0:
        short.append(f"episode_overlap={int(m(n.EPISODE_OVERLAP))} eval episodes also in training")
    pv, plo, phi = m.ci(P)
    if not _fin(pv, plo, phi):
        short.append(f"{P} has no CI")
    collapse = _collapse_clauses(m, th, details)
    if short:
        note = ("; collapse indicators fired anyway: " + ", ".join(_describe(d) for d in collapse)) if collapse else ""
        return done(n.INCONCLUSIVE, "insufficient data: " + "; ".join(short) + note)

    # 2. collapsed
    if collapse:
        return done(n.COLLAPSED, "; ".join(_describe(d) for d in collapse[:3]))

    # 3. learning
    base = {n.LIFT: f" (majority_acc {_fmt(m(n.MAJORITY_ACC))}, acc {_fmt(m(n.ACC))})",
            n.R2: f" (vs mean predictor; mse {_fmt(m(n.MSE))} vs {_fmt(m(n.MEAN_MSE))})"}.get(P, "")
    p_clause = _clause(details, "learning", P, pv, plo, phi, ">", 0.0, plo > 0)
    abl = m.ablations()
    abl_clauses = []
    for a in abl:
        v, lo, hi = m.ci(n.ablation(a))
        abl_clauses.append(_clause(details, "input-sensitive", n.ablation(a), v, lo, hi, ">", 0.0,
                                   _fin(lo) and lo > 0))
    abl_ok = any(d["passed"] for d in abl_clauses) if abl else not th.require_ablation
    trend_ok, trend_txt = True, ""
    if m.has(n.TREND_DIFF + n.LO):
        v, lo, hi = m.ci(n.TREND_DIFF)
        d = _clause(details, "not-degrading", n.TREND_DIFF, v, lo, hi, ">", -th.plateau_tolerance,
                    lo > -th.plateau_tolerance)
        trend_ok, trend_txt = d["passed"], "; " + _describe(d)
    extras = []
    if m.has(n.JS_EXCESS):
        extras.append(f"js_excess={_fmt(m(n.JS_EXCESS))} [{_fmt(m(n.JS_EXCESS + n.LO))}, "
                      f"{_fmt(m(n.JS_EXCESS + n.HI))}] (reported)")
    if m.has(n.IG):
        extras.append(f"ig={_fmt(m(n.IG))} nats")
    if m.has(n.NEAREST_LIFT) and P != n.NEAREST_LIFT:
        extras.append(f"nearest_lift={_fmt(m(n.NEAREST_LIFT))}")
    abl_txt = ("; " + "; ".join(_describe(d) for d in abl_clauses)) if abl else "; input sensitivity untested"
    extra_txt = ("; " + "; ".join(extras)) if extras else ""
    if p_clause["passed"] and abl_ok and trend_ok:
        return done(n.LEARNING, _describe(p_clause) + base + abl_txt + trend_txt + extra_txt)

    # 4. random-like
    tol = th.random_tolerance.get(P, 0.02)
    tight = _fin(phi) and phi < tol
    no_sens = not any(d["passed"] for d in abl_clauses)
    if plo <= 0 and tight and no_sens:
        d = _clause(details, "random-like", P, pv, plo, phi, "<", tol, True)
        return done(n.RANDOM_LIKE, _describe(d) + base + abl_txt + extra_txt)

    # 5. inconclusive
    failed = []
    if not p_clause["passed"]:
        failed.append(f"{P} CI not > 0: " + _describe(p_clause))
    if plo <= 0 and not tight:
        need = _n_needed(n_items, pv, plo, phi, max(tol - pv, tol / 2) if pv <= 0 else pv)
        info["n_needed"] = need
        failed.append(f"CI too wide to call random-like (upper {_fmt(phi)} >= tolerance {_fmt(tol)}); "
                      f"about N={_fmt(need)} items needed")
    if p_clause["passed"] and not abl_ok:
        failed.append("no input-ablation drop with CI > 0" if abl else "ablations required but not given")
    if plo <= 0 and not no_sens:
        failed.append("input-sensitive but no lift over the blind baseline")
    if not trend_ok:
        failed.append("degrading" + trend_txt)
    return done(n.INCONCLUSIVE, "; ".join(failed) + extra_txt)


def _verdict_stage1(m: _Metrics, th: VerdictThresholds) -> tuple[str, str, dict]:
    details: list[dict] = []
    info = {"clauses": details, "primary": n.DELTA_PSNR, "head": "stage1", "n_needed": float("nan")}

    def done(word: str, evidence: str) -> tuple[str, str, dict]:
        return word, f"{word}: {evidence}", info

    n_ep = m(n.N_EPISODES)
    if _fin(n_ep) and n_ep < th.min_episodes:
        _clause(details, "insufficient", n.N_EPISODES, n_ep, n_ep, n_ep, "<", th.min_episodes, True)
        return done(n.INCONCLUSIVE, f"insufficient data: n_episodes={int(n_ep)} < {th.min_episodes}")

    fired = []
    s = 0
    used_keys = [n.pos(n.CODES_USED, s) for s in range(64) if m.has(n.pos(n.CODES_USED, s))] or (
        [n.CODES_USED] if m.has(n.CODES_USED) else [])
    for key in used_keys:
        d = _clause(details, "collapsed", key, m(key), float("nan"), float("nan"), "<=", 1.0, m(key) <= 1)
        if d["passed"]:
            fired.append(d)
    if m.has(n.PPL_PRED):
        d = _clause(details, "collapsed", n.PPL_PRED, m(n.PPL_PRED), float("nan"), float("nan"), "<=",
                    th.stage1_min_ppl, m(n.PPL_PRED) <= th.stage1_min_ppl)
        if d["passed"]:
            fired.append(d)
    if m(n.REPLACED_RISING) == 1:
        fired.append(_clause(details, "collapsed", n.REPLACED_RISING, 1.0, float("nan"), float("nan"), "==", 1.0,
                             True))
    if fired:
        return done(n.COLLAPSED, "; ".join(_describe(d) for d in fired))

    v, lo, hi = m.ci(n.COPY_RATIO)
    rho = _clause(details, "learning", n.COPY_RATIO, v, lo, hi, "<", 1.0, _fin(hi) and hi < 1)
    v, lo, hi = m.ci(n.DELTA_PSNR)
    dpsnr = _clause(details, "learning", n.DELTA_PSNR, v, lo, hi, ">", 0.0, _fin(lo) and lo > 0)
    align = None
    for key in (n.PROBE_R2_VS_UNTRAINED, n.ACTION_NMI_VS_UNTRAINED):
        if m.has(key + n.LO):
            v, lo, hi = m.ci(key)
            d = _clause(details, "aligned", key, v, lo, hi, ">", 0.0, lo > 0)
            align = d if align is None or d["passed"] else align
    if align is None or not align["passed"]:
        for key in (n.PROBE_R2_EXCESS, n.ACTION_NMI_EXCESS):
            if m.has(key + n.LO) or m.has(key):
                v, lo, hi = m.ci(key)
                bound = lo if _fin(lo) else v
                d = _clause(details, "aligned (vs shuffled control)", key, v, lo, hi, ">", th.stage1_min_excess,
                            bound > th.stage1_min_excess)
                if align is None or d["passed"]:
                    align = d
    core = [rho, dpsnr]
    if all(d["passed"] for d in core):
        if align is None:
            return done(n.INCONCLUSIVE, "reconstructs and uses its latents; action alignment untested ("
                        + "; ".join(_describe(d) for d in core) + ")")
        if align["passed"]:
            return done(n.LEARNING, "; ".join(_describe(d) for d in core + [align]))
    if _fin(dpsnr["lo"], dpsnr["hi"]) and dpsnr["lo"] <= 0 <= dpsnr["hi"]:
        return done(n.RANDOM_LIKE, "decoder ignores the latent: " + _describe(dpsnr)
                    + "; " + _describe(rho))
    failed = [_describe(d) for d in core + ([align] if align else []) if not d["passed"]]
    return done(n.INCONCLUSIVE, "failed: " + "; ".join(failed) if failed else "no rule matched")
