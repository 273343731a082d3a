"""JupyterLab widgets: one line each in a notebook.

    DatasetExplorer()                 # browse the embedded data (or any root with TFDS datasets)
    RunDashboard()                    # the runs under outputs/: status, curves, verdict, samples, config diff
    CodeInspector(artifact="...")     # Stage 1: pairs assigned to one latent code, with their true actions

Rules: each view redraws ONE ``ipywidgets.Image`` (PNG bytes of a fresh matplotlib ``Figure``) and a few ``HTML``
labels in place through ``observe``; there is no ``Output`` widget that grows (jupyter-widgets/ipywidgets#2304).
The widgets only read files (datasets, run directories, artifacts): they never start training and never hold a
GPU. Every widget exposes its state as plain attributes (``.image.value``, ``.info.value``, ``.shown``) so tests
drive it programmatically: set a control's value, check what changed.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import ipywidgets as W
import numpy as np

from ..analysis import runs_table as rt
from ..data import registry as reg
from ..metrics.predictions import current_verdict
from . import data_views as dv
from . import figures as F


def _table_html(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><td style='padding-right:1em'><b>{html.escape(str(k))}</b></td>"
                    f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table style='font-size:90%'>{cells}</table>"


def _image() -> W.Image:
    return W.Image(format="png", layout=W.Layout(max_width="100%"))


# ====================================================================================================================
class DatasetExplorer(W.VBox):
    """Pick a dataset, an episode, a frame t (slider with play) and an offset k; shows o_t and o_t+k side by side
    with the instruction, the reduced (summed) action, the state and the dataset's schema facts. A second view
    samples a batch from a mix and shows realised dataset shares vs target weights.

    Args:
        roots: Directories holding ``<tfds_dir>/<version>`` datasets (default: the embedded data, the mirror).
        datasets: Restrict to these registry names (default: every registry dataset found under ``roots``).
        weights: Target mix weights {name: weight} for the mix view (default: equal weights over ``datasets``).
        sample_batch: Callable returning the ``dataset_name`` of each sample of one batch (e.g. from the data
            loader). Default: draw ``batch_size`` samples with the data adapter's deterministic key sampler when it
            is importable, else by the weights with numpy.
        batch_size: Samples per mix batch.
        loader: A data adapter ``PairLoader`` (``hlrp_core.data.loader.PairLoader(cfg, with_val=False)``): the mix
            view then draws real train batches and uses the loader's resolved weights as targets.
    """

    def __init__(self, roots: Optional[Sequence[str | os.PathLike]] = None, datasets: Optional[Sequence[str]] = None,
                 weights: Optional[dict[str, float]] = None,
                 sample_batch: Optional[Callable[[], Sequence[str]]] = None, batch_size: int = 64,
                 loader: Any = None):
        if loader is not None:
            weights, sample_batch = dv.loader_mix(loader)
        found = dv.available_datasets(roots)
        if datasets is not None:
            found = {n: p for n, p in found.items() if n in set(datasets)}
        self.reader = dv.EpisodeReader(found)
        self.weights = dict(weights or {n: 1.0 for n in found})
        self._sample_batch = sample_batch
        self.batch_size = int(batch_size)
        self._draws = 0
        self.shown: dict[str, Any] = {}
        self.mix_table = None

        self.dataset = W.Dropdown(options=list(found), description="dataset")
        self.split = W.Dropdown(options=[], description="split")
        self.episode = W.IntSlider(min=0, max=0, description="episode", continuous_update=False)
        self.frame = W.IntSlider(min=0, max=0, description="frame t", continuous_update=False)
        self.play = W.Play(min=0, max=0, interval=400, description="play")
        W.jslink((self.play, "value"), (self.frame, "value"))
        self.k = W.IntSlider(value=1, min=1, max=30, description="k", continuous_update=False)
        self.image = _image()
        self.info = W.HTML()
        self.facts = W.HTML()
        self.sample_button = W.Button(description="sample a batch from the mix", layout=W.Layout(width="auto"))
        self.mix_image = _image()
        self.mix_info = W.HTML("press the button to sample a batch")

        if not found:
            self.info.value = ("<b>no datasets found</b> under " + html.escape(", ".join(
                str(r) for r in (roots or dv.default_roots()))) + ". Run <code>make data</code> "
                "(<code>hlrp data make-demo</code>) first.")
        self.dataset.observe(self._on_dataset, names="value")
        self.split.observe(self._on_split, names="value")
        for w in (self.episode, self.frame, self.k):
            w.observe(self._redraw, names="value")
        self.sample_button.on_click(lambda _b: self.sample_mix())
        pair_box = W.VBox([W.HBox([self.dataset, self.split]), W.HBox([self.episode, self.k]),
                           W.HBox([self.play, self.frame]), self.image, self.info, self.facts])
        mix_box = W.VBox([self.sample_button, self.mix_image, self.mix_info])
        tabs = W.Tab(children=[pair_box, mix_box])
        tabs.set_title(0, "pairs")
        tabs.set_title(1, "mix")
        super().__init__([tabs])
        if found:
            self._on_dataset()

    # ------------------------------------------------------------------ callbacks
    def _on_dataset(self, _change=None) -> None:
        name = self.dataset.value
        spec = reg.get(name)
        self.facts.value = _table_html(dv.schema_facts(spec))
        splits = self.reader.splits(name)
        with self.hold_trait_notifications():
            self.split.unobserve(self._on_split, names="value")
            self.split.options = splits
            self.split.value = "train" if "train" in splits else splits[0]
            self.split.observe(self._on_split, names="value")
            self.k.value = max(1, spec.pair_offset_steps)
        self._on_split()

    def _on_split(self, _change=None) -> None:
        n = self.reader.num_episodes(self.dataset.value, self.split.value)
        self.episode.unobserve(self._redraw, names="value")
        self.episode.max = max(0, n - 1)
        self.episode.value = min(self.episode.value, self.episode.max)
        self.episode.observe(self._redraw, names="value")
        self._redraw()

    def _redraw(self, _change=None) -> None:
        name, split = self.dataset.value, self.split.value
        if not name or not split:
            return
        spec = reg.get(name)
        ep = self.reader.read(name, self.episode.value, split)
        T = len(ep)
        self.frame.unobserve(self._redraw, names="value")
        last_t = max(0, T - 2)
        self.play.max = self.frame.max = last_t
        if self.frame.value > last_t:
            self.frame.value = last_t
        self.frame.observe(self._redraw, names="value")
        t = self.frame.value
        k = max(1, min(self.k.value, T - 1 - t)) if T > 1 else 0
        action = dv.reduce_action(spec, ep.actions, t, k)
        state = ep.states[t] if ep.states is not None else None
        fig = F.plot_pair(ep.frames[t], ep.frames[min(t + k, T - 1)], t=t, k=k, instruction=ep.instruction,
                          action=action, state=state, title=f"{name} / {split} / episode {ep.index} ({T} steps)")
        self.image.value = F.to_png(fig)
        self.shown = {"dataset": name, "split": split, "episode": ep.index, "t": t, "k": k, "steps": T,
                      "instruction": ep.instruction, "action": None if action is None else action.tolist(),
                      "state": None if state is None else state.tolist(), "metadata": ep.metadata}
        self.info.value = _table_html({
            "episode": f"{ep.index} of {self.episode.max + 1} ({T} steps)", "pair": f"t={t}, k={k}",
            "instruction": ep.instruction or "(none)",
            "summed action": "(none / masked)" if action is None else np.array2string(action, precision=3),
            "state at t": "(none)" if state is None else np.array2string(state, precision=3),
            **{f"meta: {k_}": v for k_, v in ep.metadata.items()}})

    # ------------------------------------------------------------------ the mix view
    def _default_batch(self) -> list[str]:
        names = list(self.weights)
        w = np.array([max(0.0, float(self.weights[n])) for n in names])
        p = w / w.sum() if w.sum() > 0 else np.full(len(names), 1.0 / max(1, len(names)))
        try:
            from ..data.sampler import uniform  # the adapter's counter-based uniform draws (deterministic)

            u = np.asarray(uniform(0, 0, np.arange(self._draws * self.batch_size,
                                                   (self._draws + 1) * self.batch_size, dtype=np.uint64)))
        except Exception:  # the sampler's API is the data adapter's: fall back to numpy
            u = np.random.default_rng(self._draws).random(self.batch_size)
        idx = np.searchsorted(np.cumsum(p), np.clip(u, 0, 1 - 1e-12), side="right")
        return [names[min(i, len(names) - 1)] for i in idx]

    def sample_mix(self):
        """Draw one batch and show realised shares vs target weights. Returns the share table."""
        names = list(self._sample_batch() if self._sample_batch else self._default_batch())
        self._draws += 1
        self.mix_table = dv.mix_shares(names, self.weights)
        self.mix_image.value = F.to_png(F.plot_mix_shares(self.mix_table))
        self.mix_info.value = (f"batch {self._draws}: {len(names)} samples; "
                               f"max |realised - target| = {float((self.mix_table.realised - self.mix_table.target).abs().max()):.3f}")
        return self.mix_table


# ====================================================================================================================
class RunDashboard(W.VBox):
    """The runs under an outputs root: filter by study and status, pick a run, see its status and failure class,
    config diff against a chosen baseline (run or preset), curves from ``timeseries.csv``, the verdict, its figures
    and latest sample panels. ``Refresh`` re-reads the files (nothing refreshes by itself).

    Args:
        root: Outputs root (default ``outputs/`` or ``$HLRP_OUTPUT_ROOT``).
        stale_after_s: Heartbeat age after which a RUNNING run is shown as LOST.
    """

    ALL = "(all)"
    NONE = "(none)"

    def __init__(self, root: str | os.PathLike | None = None, stale_after_s: float = rt.STALE_AFTER_S):
        from ..paths import output_root

        self.root = Path(root or output_root())
        self.stale_after_s = stale_after_s
        self.rows: list[rt.RunRow] = []
        self._verdicts: dict = {}                 # (run dir, steps) -> current_verdict (scoring is not free)
        self.shown: dict[str, Any] = {}
        self.study = W.Dropdown(description="study")
        self.status = W.Dropdown(description="status",
                                 options=[self.ALL, "DONE", "FAILED", "RUNNING", "LOST"], value=self.ALL)
        self.run = W.Dropdown(description="run", layout=W.Layout(width="60%"))
        self.baseline = W.Dropdown(description="baseline", layout=W.Layout(width="60%"))
        self.refresh_button = W.Button(description="refresh", icon="refresh")
        self.table = W.HTML()
        self.info = W.HTML()
        self.diff = W.HTML()
        self.image = _image()           # curves
        self.figure = W.Dropdown(description="figure")
        self.figure_image = _image()    # figures/*.png and samples/*.png
        self.figure_info = W.HTML()
        self.refresh_button.on_click(lambda _b: self.refresh())
        for w in (self.study, self.status):
            w.observe(self._on_filter, names="value")
        self.run.observe(self._redraw, names="value")
        self.baseline.observe(self._redraw_diff, names="value")
        self.figure.observe(self._redraw_figure, names="value")
        super().__init__([W.HBox([self.study, self.status, self.refresh_button]), self.table, self.run, self.info,
                          self.image, self.baseline, self.diff, self.figure, self.figure_image, self.figure_info])
        self.refresh()

    # ------------------------------------------------------------------ data
    def refresh(self) -> None:
        """Re-read every run directory and redraw (keeps the selections that still exist)."""
        self.rows = rt.collect_runs(self.root, stale_after_s=self.stale_after_s)
        studies = sorted({r.study for r in self.rows})
        with self.hold_trait_notifications():
            self.study.unobserve(self._on_filter, names="value")
            keep = self.study.value
            self.study.options = [self.ALL, *studies]
            self.study.value = keep if keep in self.study.options else self.ALL
            self.study.observe(self._on_filter, names="value")
        presets = [f"preset: {p}" for p in _presets()]
        runs = [r.run for r in self.rows]
        keep_b = self.baseline.value
        self.baseline.unobserve(self._redraw_diff, names="value")
        self.baseline.options = [self.NONE, *presets, *runs]
        self.baseline.value = keep_b if keep_b in self.baseline.options else self.NONE
        self.baseline.observe(self._redraw_diff, names="value")
        self._on_filter()

    def filtered(self) -> list[rt.RunRow]:
        rows = self.rows
        if self.study.value not in (None, self.ALL):
            rows = [r for r in rows if r.study == self.study.value]
        if self.status.value not in (None, self.ALL):
            rows = [r for r in rows if r.status == self.status.value]
        return rows

    def _on_filter(self, _change=None) -> None:
        rows = self.filtered()
        self.table.value = _rows_html(rows) if rows else (
            f"<i>no runs under {html.escape(str(self.root))} match</i>" if self.rows else
            f"<i>no runs under {html.escape(str(self.root))} yet (run <code>make demo</code>)</i>")
        keep = self.run.value
        opts = [(f"{r.run}  [{r.status}]", r.dir) for r in reversed(rows)]  # newest first
        self.run.unobserve(self._redraw, names="value")
        self.run.options = opts
        self.run.value = keep if keep in [v for _, v in opts] else (opts[0][1] if opts else None)
        self.run.observe(self._redraw, names="value")
        self._redraw()

    def _row(self) -> Optional[rt.RunRow]:
        return next((r for r in self.rows if r.dir == self.run.value), None)

    # ------------------------------------------------------------------ views
    def _redraw(self, _change=None) -> None:
        row = self._row()
        if row is None:
            self.info.value, self.diff.value, self.figure_info.value = "", "", ""
            self.image.value = F.to_png(F.message_figure("no run selected"))
            self.figure.options = []
            self.figure_image.value = b""
            self.shown = {}
            return
        metrics = rt.load_metrics(row.dir)
        ts = rt.read_timeseries(row.dir)
        self.image.value = F.to_png(F.plot_run_curves(ts, title=row.run, metrics=metrics))
        # the one scorer (metrics.predictions): the recorded verdict, or the newest predictions scored now
        cur = self._verdicts.get((row.dir, row.steps))
        if cur is None:
            try:
                cur = current_verdict(row.dir, metrics)
            except Exception as e:  # noqa: BLE001 - a broken prediction file must not break the dashboard
                cur = {"verdict": "(not scored)", "verdict_evidence": f"{type(e).__name__}: {e}", "source": "-"}
            self._verdicts[(row.dir, row.steps)] = cur
        verdict, evidence = cur["verdict"], cur["verdict_evidence"]
        if isinstance(evidence, (dict, list)):
            evidence = json.dumps(evidence)[:600]
        self.info.value = _table_html({
            "run": row.run, "study": row.study or ".", "status": row.status, "failure": row.failure or "-",
            "reason": row.reason or "-", "steps reached": row.steps if row.steps is not None else "-",
            "heartbeat age": f"{row.heartbeat_age_s} s" if row.heartbeat_age_s is not None else "-",
            "verdict": verdict, "evidence": evidence or "-", "verdict source": cur.get("source", "-"),
            **{f"metric: {k}": v for k, v in row.metrics.items() if k != "verdict"}, "dir": row.dir})
        self.shown = {"run": row.run, "status": row.status, "failure": row.failure, "verdict": verdict,
                      "steps": row.steps, "curves": list(ts.columns) if len(ts) else []}
        figs = _run_images(Path(row.dir))
        keep = self.figure.value
        self.figure.unobserve(self._redraw_figure, names="value")
        self.figure.options = [(label, str(p)) for label, p in figs]
        self.figure.value = keep if keep in [str(p) for _, p in figs] else (str(figs[0][1]) if figs else None)
        self.figure.observe(self._redraw_figure, names="value")
        self._redraw_figure()
        self._redraw_diff()

    def _redraw_figure(self, _change=None) -> None:
        path = Path(self.figure.value) if self.figure.value else None
        if path is None or not path.is_file():
            self.figure_image.value = b""
            self.figure_info.value = "<i>no figures/ or samples/ in this run</i>"
            self.shown["figure"] = None
            return
        self.figure_image.value = path.read_bytes()
        record = path.with_suffix(".json")
        self.figure_info.value = _table_html(_flat_json(record)) if record.is_file() else html.escape(path.name)
        self.shown["figure"] = path.name

    def _redraw_diff(self, _change=None) -> None:
        row = self._row()
        ref = self.baseline.value
        if row is None or ref in (None, self.NONE):
            self.diff.value = "<i>pick a baseline (a run or a preset) to see the config diff</i>"
            self.shown["diff"] = None
            return
        target = ref[len("preset: "):] if ref.startswith("preset: ") else next(
            (r.dir for r in self.rows if r.run == ref), ref)
        try:
            diff = rt.config_diff(row.dir, target, self.root)
        except Exception as exc:  # a run without config.yaml, an unloadable preset: say so, keep the dashboard
            self.diff.value = f"<b>config diff unavailable</b>: {html.escape(f'{type(exc).__name__}: {exc}')}"
            self.shown["diff"] = None
            return
        self.shown["diff"] = diff
        if not diff:
            self.diff.value = f"<b>config diff vs {html.escape(ref)}</b>: same config"
            return
        self.diff.value = f"<b>config diff vs {html.escape(ref)}</b>" + _table_html(
            {k: f"{v!r}   (baseline {r!r})" for k, (r, v) in diff.items()})


def _presets() -> list[str]:
    from ..config import loader

    return loader.available("experiment")


def _rows_html(rows: list[rt.RunRow]) -> str:
    cols = ["run", "study", "status", "failure", "steps"] + [c for c, _ in rt.KEY_METRICS
                                                              if any(c in r.metrics for r in rows)]
    colour = {"DONE": "#2a2", "FAILED": "#c22", "LOST": "#c72", "RUNNING": "#27c"}
    head = "".join(f"<th style='text-align:left;padding-right:1em'>{c}</th>" for c in cols)
    body = []
    for r in rows:
        d = r.as_dict()
        cells = []
        for c in cols:
            v = d.get(c)
            v = "-" if v is None or v == "" else (f"{v:.4g}" if isinstance(v, float) else v)
            style = f" style='color:{colour.get(r.status, '#000')}'" if c == "status" else ""
            cells.append(f"<td{style}>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table style='font-size:85%'><tr>{head}</tr>{''.join(body)}</table>"


def _run_images(run_dir: Path) -> list[tuple[str, Path]]:
    """Latest sample panels first (``samples/**.png``, newest first), then ``figures/*.png``."""
    out: list[tuple[str, Path]] = []
    samples = sorted((run_dir / "samples").rglob("*.png"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True) \
        if (run_dir / "samples").is_dir() else []
    out += [(f"sample: {p.relative_to(run_dir / 'samples')}", p) for p in samples[:50]]
    figs = sorted((run_dir / "figures").glob("*.png")) if (run_dir / "figures").is_dir() else []
    out += [(f"figure: {p.name}", p) for p in figs]
    return out


def _flat_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"record": f"{path.name} unreadable"}
    if not isinstance(data, dict):
        return {"record": str(data)[:400]}
    return {k: (json.dumps(v)[:200] if isinstance(v, (dict, list)) else v) for k, v in data.items()}
