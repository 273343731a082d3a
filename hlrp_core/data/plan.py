"""The sampling plan of one run: which datasets, where they live, their split slices, gaps, weights and seeds, built
from ``dataset_info.json`` alone (no shard is read here; docs/data_at_scale.md).

``open_datasets(d, seed, cache_dir)`` returns one :class:`OpenDataset` per kept entry; errors that need only the
config and dataset_info.json (unknown dataset, missing split, empty slice, overlapping splits) are raised here.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..config.data import DataConfig, per_dataset_seed, resolve_weights, split_episodes
from . import registry as reg
from .index import ShardedSplit
from .sampler import DatasetDraw
from .sources import DataSourceError, ResolvedSource, data_root_of, resolve_source

log = logging.getLogger(__name__)


def gap_steps(entry: Any, spec: reg.DatasetSpec) -> tuple[int, int]:
    """(k_min, k_max) of a dataset entry: from ``pair_offset_seconds`` via the registry's Hz when given (k =
    max(1, round(dt * Hz))), else ``pair_offset_steps`` / ``pair_offset_max_steps``."""
    if entry.pair_offset_seconds:
        if not spec.control_hz:
            raise DataSourceError(f"data.dataset.oxe.datasets[{entry.name}].pair_offset_seconds: the registry has no "
                                  "control frequency for this dataset; give pair_offset_steps instead")
        ks = [max(1, round(float(x) * float(spec.control_hz))) for x in entry.pair_offset_seconds]
        return ks[0], ks[-1]
    k = int(entry.pair_offset_steps)
    return k, int(entry.pair_offset_max_steps or k)


def split_code(split: str) -> int:
    return 0 if split == "train" else 1 + zlib.crc32(split.encode()) % 999


@dataclass
class OpenDataset:
    """One dataset of the mix.

    Args:
        id: Position in the mix.
        name, spec, src: Registry name, spec and resolved source.
        weight: Resolved mixing weight.
        seed: Per-dataset seed (``data.effective.seed.<name>``).
        k_min, k_max: Gap range.
        train, val: The lazily indexed splits.
        train_lo, train_hi, val_lo, val_hi: Slice bounds (episode positions) of the train / val selection.
        unsuccessful: Episode positions skipped by ``data.adapter.success_only`` (registry ``success_key``).
        skipped: Episode positions found too short for k_min (counted per dataset, skipped deterministically).
    """

    id: int
    name: str
    spec: reg.DatasetSpec
    src: ResolvedSource
    weight: float
    seed: int
    k_min: int
    k_max: int
    train: ShardedSplit
    val: ShardedSplit
    train_lo: int
    train_hi: int
    val_lo: int
    val_hi: int
    skipped: set = field(default_factory=set)
    unsuccessful: set = field(default_factory=set)
    report: dict = field(default_factory=dict)

    def split(self, which: str) -> ShardedSplit:
        return self.train if which == "train" else self.val

    def draw(self, unit: str, success_only: bool = False) -> DatasetDraw:
        cum = None
        if unit == "step":
            T = np.asarray(self.train.lengths[self.train_lo:self.train_hi], np.float64)
            if success_only:
                T[np.asarray(self.train.failed[self.train_lo:self.train_hi]) > 0] = 0
            cum = np.cumsum(np.maximum(0.0, T - self.k_min))
        return DatasetDraw(self.train_lo, self.train_hi, self.k_min, self.k_max, self.seed, cum)


def _slice(spec_str: str, n: int) -> tuple[int, int]:
    r = split_episodes(spec_str, n)
    return r.start, r.stop


def open_datasets(d: DataConfig, seed: int, cache_dir: Optional[Path], unit: str) -> list[OpenDataset]:
    """Resolve every kept dataset of ``d`` from its dataset_info.json; raises ``DataSourceError`` with the fix."""
    t = d.adapter.tf
    root = data_root_of(d)
    entries = d.dataset.oxe.datasets
    warnings: list[str] = []
    pre = resolve_weights(entries, None, warnings)
    opened: dict[str, tuple] = {}
    sizes: dict[str, float] = {}
    for e in entries:
        if e.name not in pre and not (e.weight is None or isinstance(e.weight, str)):
            continue  # weight 0: dropped before anything is read
        try:
            spec = reg.get(e.name)
        except reg.UnknownDatasetError as exc:
            raise DataSourceError(f"data.dataset.oxe.datasets[{e.name}]: {exc}") from None
        t0 = time.perf_counter()
        src = resolve_source(spec, t.tfds_read, root, d.adapter.versions.get(e.name, ""))
        splits = {}
        for split_spec, role in ((e.train_split, "train_split"), (e.val_split, "val_split")):
            base = split_spec.split("[")[0].strip()
            if base not in src.splits:
                raise DataSourceError(f"data.dataset.oxe.datasets[{e.name}].{role}={split_spec!r}: {src.path} has "
                                      f"no split {base!r} (it has {sorted(src.splits)})")
            splits[role] = splits.get(base) or ShardedSplit(e.name, src, base, cache_dir)
            splits[base] = splits[role]
        tr, va = splits["train_split"], splits["val_split"]
        k_min, k_max = gap_steps(e, spec)
        tlo, thi = _slice(e.train_split, tr.num_episodes)
        vlo, vhi = _slice(e.val_split, va.num_episodes)
        where = f"data.dataset.oxe.datasets[{e.name}]"
        if thi <= tlo:
            raise DataSourceError(f"{where}.train_split={e.train_split!r} selects 0 of {tr.num_episodes} episodes "
                                  f"in {src.path}; use absolute counts such as 'train[:20]'")
        if vhi <= vlo:
            raise DataSourceError(f"{where}.val_split={e.val_split!r} selects 0 of {va.num_episodes} episodes in "
                                  f"{src.path} (percent slices of small datasets round to 0, F5); use an absolute "
                                  "slice such as 'train[-2:]' or drop the dataset (weight: 0)")
        if tr is va and max(tlo, vlo) < min(thi, vhi):
            msg = (f"{where}: val_split={e.val_split!r} and train_split={e.train_split!r} share "
                   f"{min(thi, vhi) - max(tlo, vlo)} episodes in {src.path}")
            if not d.adapter.allow_split_overlap:
                raise DataSourceError(msg + "; use disjoint slices or data.adapter.allow_split_overlap=true")
            log.warning(msg + " (accepted: data.adapter.allow_split_overlap=true)")
        if unit == "step":
            if not tr.lengths_known(tlo, thi):
                raise DataSourceError(
                    f"data.adapter.tf.sampling.unit=step needs every episode length of {e.name} {e.train_split}, and "
                    f"the index cache does not have them yet; run `hlrp data verify --datasets {e.name}` once (it "
                    "records the lengths), or use unit=episode (the default)")
            T = np.asarray(tr.lengths[tlo:thi], np.int64)
            sizes[e.name] = float(np.maximum(0, T - k_min).sum())
        else:
            sizes[e.name] = float(thi - tlo)  # episode counts from dataset_info.json: the same cold or warm
        opened[e.name] = (spec, src, tr, va, k_min, k_max, (tlo, thi, vlo, vhi), time.perf_counter() - t0)
    weights = resolve_weights(entries, {n: s for n, s in sizes.items()
                                        if next(x for x in entries if x.name == n).approx_num_pairs is None},
                              warnings)
    for w in warnings:
        log.warning(w)
    if not weights:
        raise DataSourceError("every dataset has weight 0 (or no eligible pairs); nothing to sample")
    out: list[OpenDataset] = []
    for e in entries:
        if e.name not in weights:
            log.info("dataset %s dropped (weight 0)", e.name)
            continue
        spec, src, tr, va, k_min, k_max, (tlo, thi, vlo, vhi), secs = opened[e.name]
        ds = OpenDataset(len(out), e.name, spec, src, weights[e.name], per_dataset_seed(seed, e), k_min, k_max,
                         tr, va, tlo, thi, vlo, vhi)
        ds.report = {
            "dataset": e.name, "path": src.path, "version": src.version, "source": src.how,
            "weight": round(weights[e.name], 6), "weight_from": "approx_num_pairs" if e.approx_num_pairs is not None
            else ("eligible pairs" if unit == "step" else "episodes (dataset_info.json)"),
            "train_episodes": thi - tlo, "val_episodes": vhi - vlo, "shards": len(tr.files), "k": [k_min, k_max],
            "approx_num_pairs": e.approx_num_pairs, "resolve_s": round(secs, 4),
            "index_cache": str(tr.cache_path) if tr.cache_path else None}
        out.append(ds)
    return out


def log_startup(self) -> None:
    """Log a loader's startup report (one line per dataset) and its effective knobs."""
    log.info("data loader: %d dataset(s), batch %d, image %d, threads %d, batches in flight %d, episode cache "
             "%.0f MiB, unit %s, startup %.2f s, rank %d of %d", len(self.dataset_names), self.batch_size,
             self.size, self.threads, self.in_flight, self.cache.max_bytes / 2 ** 20, self.unit, self.startup_s,
             self.rank, self.world_size)
    for r in self.report:
        log.info("  %-40s %-12s %s v%s train %d val %d shards %d weight %.4f (%s) first %.3fs", r["dataset"],
                 r["source"], r["path"], r["version"], r["train_episodes"], r["val_episodes"], r["shards"],
                 r["weight"], r["weight_from"], r["first_element_s"])
    log.info("data effective knobs: %s", {k: v for k, v in self.effective.items()
                                          if not k.startswith(("weight.", "thread_share.", "seed."))})
    if self.effective.get("ram_budget_clamp"):
        log.warning("data loader budget: %s", self.effective["ram_budget_clamp"])
