"""``CodeInspector``: Stage 1, the pairs assigned to one latent code and their true actions (one widget, same rules
as ``widgets.py``: one ``Image`` redrawn in place, files only read)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import ipywidgets as W
import numpy as np

from ..data import registry as reg
from . import data_views as dv
from . import figures as F
from .widgets import _image, _table_html


def latest_artifact(root: str | os.PathLike | None = None, name: str = "laq_artifact.pt") -> Optional[Path]:
    """The newest ``laq_artifact.pt`` under the outputs root (``<run>/laq_artifact.pt`` or
    ``<run>/artifacts/laq_artifact.pt``), None when no Stage-1 run has written one yet."""
    from ..paths import output_root

    root = Path(root or output_root())
    hits = [p for p in root.rglob(name) if p.is_file()] if root.exists() else []
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


# ====================================================================================================================
class CodeInspector(W.VBox):
    """Stage 1: label pairs (o_t, o_t+k) from a dataset with a LAQ, then pick a code slot and a code to see the
    pairs assigned to it and their true (reduced) actions, plus all pairs' actions coloured by code.

    Args:
        artifact: Path to ``laq_artifact.pt`` (or a Stage-1 run directory holding ``artifacts/laq_artifact.pt``),
            loaded through ``hlrp_core.training.policy.labels.load_laq_labeller`` (CPU, eval mode, frozen).
        labeller: Instead of ``artifact``: any object with ``label(frames uint8 [B,3,2,H,W]) -> (codes [B,S], ...)``
            (an ``LAQModel``, a labeller).
        roots, dataset: Where to read pairs (default: the first embedded dataset found).
        max_pairs: Pairs to label (spread over episodes and frames).
        k: Pair offset (default: the dataset's ``pair_offset_steps``).
    """

    #: Pairs taken from one episode (evenly spaced t); more episodes are read until ``max_pairs`` is reached.
    PAIRS_PER_EPISODE = 4

    def __init__(self, artifact: str | os.PathLike | None = None, *, labeller: Any = None,
                 roots: Optional[Sequence[str | os.PathLike]] = None, dataset: Optional[str] = None,
                 max_pairs: int = 256, k: Optional[int] = None, batch_size: int = 32):
        if labeller is None:
            if artifact is None:
                raise ValueError("CodeInspector needs artifact=<stage-1 run>/artifacts/laq_artifact.pt "
                                 "(or labeller=...)")
            from ..training.policy.labels import load_laq_labeller

            labeller = load_laq_labeller(str(artifact), device="cpu")
        self.labeller = labeller
        found = dv.available_datasets(roots)
        if dataset is None:
            dataset = next(iter(found), None)
        if dataset is None or dataset not in found:
            raise FileNotFoundError(f"dataset {dataset!r} not found under {roots or dv.default_roots()} "
                                    f"(found: {list(found)}); run `make data` first")
        self.reader = dv.EpisodeReader({dataset: found[dataset]})
        self.spec = reg.get(dataset)
        self.k = int(k or self.spec.pair_offset_steps)
        self.pairs, self.actions, self.where, self.codes = self._label(dataset, int(max_pairs), int(batch_size))
        self.shown: dict[str, Any] = {}
        S = self.codes.shape[1]
        self.slot = W.Dropdown(options=list(range(S)), value=0, description="code slot")
        self.code = W.Dropdown(description="code")
        self.image = _image()
        self.scatter = _image()
        self.info = W.HTML()
        self.slot.observe(self._on_slot, names="value")
        self.code.observe(self._redraw, names="value")
        super().__init__([W.HBox([self.slot, self.code]), self.info, self.image, self.scatter])
        self._on_slot()

    def _label(self, dataset: str, max_pairs: int, batch_size: int):
        import torch

        n_ep = self.reader.num_episodes(dataset)
        pairs, actions, where = [], [], []
        per_ep = max(self.PAIRS_PER_EPISODE, -(-max_pairs // max(1, n_ep)))
        for ep in self.reader.iter_episodes(dataset, "train", 0, min(n_ep, -(-max_pairs // per_ep) + 2)):
            e, T = ep.index, len(ep)
            if T <= self.k:
                continue
            for t in np.linspace(0, T - 1 - self.k, num=min(per_ep, T - self.k)).astype(int):
                pairs.append((ep.frames[t], ep.frames[t + self.k]))
                a = dv.reduce_action(self.spec, ep.actions, int(t), self.k)
                actions.append(np.zeros(2, np.float32) if a is None else a)
                where.append((e, int(t)))
            if len(pairs) >= max_pairs:
                break
        pairs, actions, where = pairs[:max_pairs], actions[:max_pairs], where[:max_pairs]
        if not pairs:
            raise ValueError(f"{dataset}: no episode is longer than k={self.k}")
        codes = []
        for i in range(0, len(pairs), batch_size):
            chunk = np.stack([np.stack(p) for p in pairs[i:i + batch_size]])      # [B, 2, H, W, 3]
            frames = torch.from_numpy(chunk).permute(0, 4, 1, 2, 3).contiguous()   # [B, 3, 2, H, W] uint8
            out = self.labeller.label(frames)
            c = out[0] if isinstance(out, (tuple, list)) else out
            codes.append(np.asarray(c.detach().cpu() if hasattr(c, "detach") else c).reshape(len(frames), -1))
        return pairs, np.stack(actions), where, np.concatenate(codes).astype(int)

    def _on_slot(self, _change=None) -> None:
        col = self.codes[:, self.slot.value]
        values, counts = np.unique(col, return_counts=True)
        order = np.argsort(-counts)
        self.code.unobserve(self._redraw, names="value")
        self.code.options = [(f"{int(values[i])} ({int(counts[i])} pairs)", int(values[i])) for i in order]
        self.code.value = int(values[order[0]])
        self.code.observe(self._redraw, names="value")
        self._redraw()

    def _redraw(self, _change=None) -> None:
        s, c = self.slot.value, self.code.value
        col = self.codes[:, s]
        idx = np.flatnonzero(col == c)
        acts = self.actions[idx]
        title = f"{self.spec.name}: slot {s}, code {c}: {len(idx)} of {len(col)} pairs (k={self.k})"
        self.image.value = F.to_png(F.plot_code_examples([self.pairs[i] for i in idx], list(acts), title=title))
        self.scatter.value = F.to_png(F.plot_code_action_scatter(col, self.actions, highlight=c,
                                                                 title=f"true actions by code (slot {s})"))
        mean = acts.mean(axis=0) if len(acts) else np.zeros(self.actions.shape[1])
        std = acts.std(axis=0) if len(acts) else np.zeros(self.actions.shape[1])
        self.shown = {"slot": s, "code": c, "n_pairs": int(len(idx)), "pairs": [self.where[i] for i in idx],
                      "action_mean": mean.tolist(), "action_std": std.tolist()}
        self.info.value = _table_html({"pairs with this code": f"{len(idx)} of {len(col)}",
                                       "codes used in this slot": len(np.unique(col)),
                                       "true action mean": np.array2string(mean, precision=3),
                                       "true action std": np.array2string(std, precision=3),
                                       "examples (episode, t)": ", ".join(f"({e},{t})" for e, t in
                                                                          self.shown["pairs"][:8])})
