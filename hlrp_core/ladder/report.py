"""The ladder table: one row per rung, from the run directories' files only (never from notebooks).

    rep = build_report("data_loader_smoke")        # -> rep.table (DataFrame), rep.markdown, rep.best, rep.files

Columns: rung, changed knob, value, effective value, status, steps/s, samples/s, first batch s, peak RSS MB,
min MemAvailable MB, delta vs baseline (samples/s, %), verdict, runs.

- **Noise band.** The baseline runs ``baseline_repeats`` times; the band is the largest relative deviation of a
  baseline repeat from the baseline mean (at least ``MIN_NOISE``; ``DEFAULT_NOISE`` when there is one repeat).
- **Verdict.** ``faster``/``slower`` when |delta| exceeds the band, otherwise ``tie``. samples/s is the compared
  metric (batch size may differ between rungs, so steps/s is not comparable across them).
- **Best.** The valid (``pass``) rung with the highest samples/s; when it is within the band of the baseline it is
  named as a tie, not a win (the seed's "best" rung was 0.03897 vs 0.03861 steps/s: noise).
- Rungs never launched (``invalid-config``, ``duplicate``) keep their expand reason in the ``note`` column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import runs
from ..io import atomic_write_text
from . import spec as ls
from .run import ladder_out, rung_status, runs_by_rung

MIN_NOISE = 0.02
DEFAULT_NOISE = 0.10
DASH = "—"
#: metric -> keys tried in order (the loader rung writes ladder/*; training notebooks may use their own names)
SOURCES = {
    "steps_per_s": ("ladder/steps_per_s", "perf/steps_per_sec", "train/steps_per_s"),
    "samples_per_s": ("ladder/samples_per_s", "perf/samples_per_sec", "train/samples_per_s"),
    "first_batch_s": ("ladder/first_batch_s", "train/first_batch_s", "perf/first_batch_s"),
    "peak_rss_mb": ("ladder/peak_rss_mb", "mem/peak_rss_mb"),
    "min_available_mb": ("ladder/min_available_mb", "mem/min_available_mb"),
}
COLUMNS = ["rung", "changed knob", "value", "effective value", "status", "steps/s", "samples/s", "first batch s",
           "peak RSS MB", "min MemAvailable MB", "delta vs baseline %", "verdict", "runs", "note"]


@dataclass
class Report:
    name: str
    table: Any                      # pandas.DataFrame with COLUMNS
    markdown: str
    best: str
    noise_band: float
    baseline: dict[str, float]
    files: list[Path] = field(default_factory=list)


def _metric(m: dict, key: str) -> Optional[float]:
    for k in SOURCES[key]:
        v = m.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _mean(xs: list[float]) -> Optional[float]:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def _rung_measure(dirs: list[Path]) -> dict[str, Any]:
    """Aggregate the runs of one rung: mean of the passing runs' metrics; status of the latest run otherwise."""
    statuses = [(d, *rung_status(d)) for d in dirs]
    passing = [d for d, s, _ in statuses if s == "pass"]
    out: dict[str, Any] = {"runs": len(dirs), "passing": passing, "values": {}}
    if passing:
        out["status"], out["detail"] = "pass", ""
    elif statuses:
        out["status"], out["detail"] = statuses[-1][1], statuses[-1][2]
    else:
        out["status"], out["detail"] = "not run", ""
    use = passing or [statuses[-1][0]] if statuses else []
    ms = [runs.load_metrics(d) for d in use]
    for key in SOURCES:
        vals = [_metric(m, key) for m in ms]
        out["values"][key] = _mean([v for v in vals if v is not None])
    out["samples_each"] = [_metric(runs.load_metrics(d), "samples_per_s") for d in passing]
    return out


def noise_band(samples: list[float]) -> float:
    xs = [x for x in samples if x]
    if len(xs) < 2:
        return DEFAULT_NOISE
    m = sum(xs) / len(xs)
    return max(MIN_NOISE, max(abs(x - m) / m for x in xs))


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def ladder_from_study(study: str) -> str:
    """The report notebook's input selector: ``ladders/<name>`` (or ``<name>``, or a path to a ladder directory)
    -> the ladder name/path ``build_report`` takes."""
    study = str(study).rstrip("/")
    try:
        return str(ls.ladder_dir(study))
    except ls.ConfigError:
        return study.split("/")[-1]


def collect(name: str) -> tuple[ls.LadderSpec, list[ls.Rung], dict[str, dict]]:
    spec = ls.load_spec(name)
    rungs = ls.expand(spec)
    by = runs_by_rung(spec.name, [r.rung_id for r in rungs])
    return spec, rungs, {r.rung_id: _rung_measure(by[r.rung_id]) for r in rungs}


def build_report(name: str, out_dir: str | Path | None = None, include_smoke: bool = True, run: Any = None,
                 figures: bool = True) -> Report:
    """Build the table and write ``ladder_report.csv``, ``ladder_report.md`` and bar plots.

    Files go to ``run.dir`` when a ``hlrp_core.runs.Run`` is given (the report notebook), else to ``out_dir``
    (default ``outputs/ladders/<name>/report/``).
    """
    import pandas as pd

    spec, rungs, meas = collect(name)
    base = meas[rungs[0].rung_id]
    base_samples = [x for x in base["samples_each"] if x]
    band = noise_band(base_samples)
    base_mean = _mean(base_samples)
    rows = []
    for r in rungs:
        m = meas[r.rung_id]
        if r.status != ls.OK and not m["passing"]:
            status = r.status if r.status == ls.INVALID else f"duplicate of {r.duplicate_of}"
            note, vals = r.reason, {k: None for k in SOURCES}
        else:
            status, note, vals = m["status"], m["detail"], m["values"]
            if r.status != ls.OK:  # measured anyway (--include-duplicates, or run before a re-expand)
                note = f"{r.status}: {r.reason}" + (f"; {note}" if note else "")
        eff = ", ".join(str(v) for v in r.effective.values()) if r.effective else DASH
        delta, verdict = None, DASH
        if status == "pass" and base_mean and vals["samples_per_s"] is not None:
            if r.index == 0:
                delta, verdict = 0.0, f"baseline (noise ±{band * 100:.1f}%, {len(base_samples)} runs)"
            else:
                delta = (vals["samples_per_s"] - base_mean) / base_mean
                verdict = "tie" if abs(delta) <= band else ("faster" if delta > 0 else "slower")
        rows.append({"rung": r.rung_id, "changed knob": r.knob or "(baseline)", "value": r.value or "(baseline)",
                     "effective value": eff if r.knob else "(baseline)", "status": status,
                     "steps/s": vals["steps_per_s"], "samples/s": vals["samples_per_s"],
                     "first batch s": vals["first_batch_s"], "peak RSS MB": vals["peak_rss_mb"],
                     "min MemAvailable MB": vals["min_available_mb"],
                     "delta vs baseline %": None if delta is None else round(delta * 100, 1), "verdict": verdict,
                     "runs": m["runs"], "note": note})
    table = pd.DataFrame(rows, columns=COLUMNS)
    valid = table[(table["status"] == "pass") & table["samples/s"].notna()]
    if valid.empty:
        best = "no valid rung has passed yet"
    else:
        top = valid.sort_values("samples/s", ascending=False).iloc[0]
        ties = [r for r in valid["rung"] if r != top["rung"] and
                abs(valid.set_index("rung").loc[r, "samples/s"] - top["samples/s"]) <= band * top["samples/s"]]
        d = top["delta vs baseline %"]
        if top["rung"] == rungs[0].rung_id:
            best = f"best: the baseline {top['rung']} ({top['samples/s']:.1f} samples/s); no rung beats it beyond noise"
        elif d is not None and abs(d) <= band * 100:
            best = (f"best: {top['rung']} ({top['samples/s']:.1f} samples/s, {d:+.1f}% vs baseline), but within the "
                    f"baseline noise band ±{band * 100:.1f}%: a tie, not a win")
        else:
            best = f"best: {top['rung']} ({top['samples/s']:.1f} samples/s, {d:+.1f}% vs baseline, noise ±{band * 100:.1f}%)"
        if ties:
            best += f"; tied with {', '.join(ties)} (within noise)"
    md = _markdown(spec, table, best, band)
    out = Path(run.dir) if run is not None else Path(out_dir or ladder_out(spec.name) / "report")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    csv_path = out / "ladder_report.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    md_path = out / "ladder_report.md"
    atomic_write_text(md_path, md + "\n")
    files += [csv_path, md_path]
    if figures:
        files += _figures(table, band, base_mean, spec.name, out, run)
    return Report(spec.name, table, md, best, band, {"samples_per_s": base_mean or 0.0}, files)


def _markdown(spec: ls.LadderSpec, table: Any, best: str, band: float) -> str:
    head = [f"## Ladder `{spec.name}`", "", f"notebook `{spec.notebook}`, baseline `{' '.join(spec.baseline)}`", "",
            f"**{best}**", "", f"Noise band (baseline repeats): ±{band * 100:.1f}% samples/s.", ""]
    cols = [c for c in COLUMNS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            nd = 1 if c in ("peak RSS MB", "min MemAvailable MB", "samples/s", "delta vs baseline %") else 3
            s = _fmt(None if (isinstance(v, float) and math.isnan(v)) else v, nd)
            cells.append(s.replace("|", "/")[:160] if c == "note" else s)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + lines)


def _figures(table: Any, band: float, base_mean: Optional[float], name: str, out: Path, run: Any) -> list[Path]:
    import matplotlib

    if run is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = []
    ok = table[table["samples/s"].notna()]
    for col, fname, title in (("samples/s", "ladder_samples_per_s", "samples/s (steady state)"),
                              ("peak RSS MB", "ladder_peak_rss", "peak RSS (MB)"),
                              ("first batch s", "ladder_first_batch", "time to first batch (s)")):
        fig, ax = plt.subplots(figsize=(8, 0.45 * max(3, len(ok)) + 1))
        colors = ["#888888" if r.endswith("baseline") else
                  {"faster": "#2a9d4b", "slower": "#c0392b"}.get(v, "#4a78b5") for r, v in zip(ok["rung"],
                                                                                             ok["verdict"])]
        ax.barh(list(ok["rung"]), list(ok[col]), color=colors, zorder=2)
        if col == "samples/s" and base_mean:
            ax.axvspan(base_mean * (1 - band), base_mean * (1 + band), color="#dddddd", zorder=0,
                       label=f"baseline ±{band * 100:.0f}% (noise)")
            ax.legend(loc="lower right")
        ax.invert_yaxis()
        ax.set_xlabel(title)
        ax.set_title(f"{name}: {title}")
        if run is not None:
            paths.append(run.save_figure(fig, fname))
        else:
            (out / "figures").mkdir(exist_ok=True)
            p = out / "figures" / f"{fname}.png"
            fig.savefig(p, dpi=90, bbox_inches="tight")
            paths.append(p)
            plt.close(fig)  # in a notebook the figure stays open so the cell shows it
    return paths
