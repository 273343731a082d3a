"""The frame-pair loader: episode index -> deterministic sample keys -> encoded frames -> decoded uint8 batches.

Public API::

    with open_loader(cfg, split="train") as loader:      # split="val": one pass over the fixed val set
        for batch in loader: ...
    dm = build_datamodule(cfg)                            # lightning.LightningDataModule (persistent train, cached val)

The batch contract (keys, types, shapes) is written down once, in ``docs/DATA.md``.

Design (docs/data_at_scale.md): the plan (``plan.py``) is built from dataset_info.json alone; an episode is
addressed as (shard, ordinal) and read by byte range from its TFRecord shard (``index.py``: header-only offset
scans cached in shared memory-mapped files), its CRC checked, parsed once (``episode.py``), and its encoded frames and
labels kept in one byte-bounded LRU (``pipeline.py``); only the frames a sample uses are decoded (``batch.py``).
Keys are a pure function of (seed, index) and the data (``sampler.py``). The validation set is a fixed key list
materialised once as encoded bytes. ``close()`` stops and joins every thread within 2 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any, Iterator, Optional

import numpy as np

from ..config.data import DataConfig, effective_knobs, frame_offsets, loader_seed
from .batch import BatchMaker
from .decode import decode_resize
from .episode import Episode, LayoutError, parse_episode, reduce_action
from .pipeline import (EpisodeCache, Pipeline, RamGuardError, StallError, Stopped, Timers, TrainIterable,
                       ValIterable, mem_available_mb, pin, ram_guard)
from .plan import OpenDataset, gap_steps, log_startup, open_datasets, split_code
from .sampler import MAX_ATTEMPTS, DatasetDraw, KeySampler
from .sources import DataSourceError
from .tfrecord import CorruptShardError, is_remote, read_record

log = logging.getLogger(__name__)

__all__ = ["PairLoader", "open_loader", "build_datamodule", "RamGuardError", "StallError", "DataSourceError",
           "CorruptShardError", "LayoutError", "mem_available_mb", "gap_steps"]


class PairLoader:
    """Frame-pair batches for one run: a persistent train stream and a fixed, cached validation set.

    Args:
        cfg: A ``Config`` (or a ``DataConfig``) from ``hlrp_core.config.load``.
        split: What iterating the loader itself yields: ``train`` (infinite) or ``val`` (one pass).
        start_index: Global sample index of the first train sample (resume at step s: s * batch size * world size).
        with_val: Materialise the validation set at startup (default: yes).
        rank: This process's data-parallel rank (0 for a single process).
        world_size: Number of data-parallel ranks. Rank r's j-th train batch holds global indices
            ``start + (j * world_size + r) * B ... + B - 1``, so the ranks' batches are disjoint and together form the
            single-process stream of batch ``B * world_size``; ``next_index`` / ``state_dict`` count in that global
            index space (after j batches: ``start + j * B * world_size`` on every rank), so resume stays exact.

    Everything that can fail on the config or dataset_info.json (missing root/dataset, empty split), and the first
    record of every dataset (corrupt shard, layout), fails here, in the constructor, before any thread starts. Use
    as a context manager, or call ``close()``.
    """

    def __init__(self, cfg: Any, split: str = "train", start_index: int = 0, with_val: bool = True,
                 rank: int = 0, world_size: int = 1):
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r}: use 'train' or 'val'")
        if not (int(world_size) >= 1 and 0 <= int(rank) < int(world_size)):
            raise ValueError(f"rank={rank}, world_size={world_size}: need world_size >= 1 and 0 <= rank < world_size")
        self.rank, self.world_size = int(rank), int(world_size)
        self.cfg = cfg
        d: DataConfig = cfg.data if hasattr(cfg, "data") else cfg
        self.d = d
        self.split = split
        t = d.adapter.tf
        self.batch_size = int(d.loader.batch_size)
        self.size = int(d.preprocess.image_size)
        self.mode = d.preprocess.resize_mode
        self.pf = t.pair_frames
        self.effective = effective_knobs(cfg)
        self.threads = int(self.effective["threads"])
        self.in_flight = int(self.effective["batches_in_flight"])
        self.stall_timeout = float(t.mixing.python_prefetch_wait_timeout_s)
        self.pin = bool(d.loader.pin_memory)
        self.unit = t.sampling.unit
        self.verify_crc = bool(d.adapter.verify_crc)
        self.bad_records = d.adapter.bad_records
        self.success_only = bool(d.adapter.success_only)
        self.bad_seen: dict[str, set] = {}
        guard = d.adapter.ram_guard_min_available_mb
        self.batch_floor_mb = guard  # past the first batch the trainer's RamGuardCallback stops (checkpointed)
        tr = getattr(cfg, "training", None)
        if tr is not None and getattr(tr, "ram_guard", None) is not None:
            guard = max(guard, int(tr.ram_guard.min_available_mb))
        self.ram_floor_mb = guard
        self.seed = loader_seed(cfg)
        self.synthetic = bool(t.debug.use_synthetic_data)
        self.timers = Timers()
        self.counts: dict[str, int] = {}
        self.wait_s = 0.0
        self.batches_out = 0
        self.report: list[dict] = []
        self._closed = False
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()
        self._pipe: Optional[Pipeline] = None
        self._io = None  # ThreadPoolExecutor of data.adapter.io_threads (made on first use)
        self.io_threads = int(d.adapter.io_threads)
        self._first_batch = None
        self._t_construct = time.perf_counter()
        self.first_batch_s: Optional[float] = None
        self.next_index = int(start_index)
        self.cache = EpisodeCache(int(self.effective["episode_cache_mb"] * 2 ** 20))
        self.datasets: list[OpenDataset] = []
        self.val_samples: list[dict] = []
        if self.synthetic:
            self.dataset_names = ["synthetic"]
            self.a_max = self.s_max = 2
            self.sampler = None
        else:
            from ..paths import data_root, resolve

            cd = d.adapter.index_cache_dir
            self.datasets = open_datasets(d, self.seed, resolve(cd) if cd else data_root() / ".index_cache",
                                          self.unit)
            self.dataset_names = [x.name for x in self.datasets]
            self.a_max = max(x.spec.action_dims for x in self.datasets)
            self.s_max = max(x.spec.state_dims for x in self.datasets)
            self.sampler = KeySampler([x.draw(self.unit, d.adapter.success_only) for x in self.datasets],
                                      np.array([x.weight for x in self.datasets]), self.seed,
                                      block=t.mixing.mix_block_length,
                                      samples_per_episode=t.sampling.samples_per_episode,
                                      unit=self.unit)
        self.statistics: dict[str, dict] = {}
        self._norm: dict[int, Any] = {}
        if not self.synthetic and d.preprocess.normalize != "none":
            from .stats import normalizers_for

            self.statistics, self._norm = normalizers_for(self.datasets, d.preprocess.normalize)
        self.maker = BatchMaker(self.pf, self.size, self.mode, t.metadata.mode == "full", self.a_max, self.s_max,
                                self.batch_size, self.timers, {x.id for x in self.datasets if x.spec.image_bgr})
        if not self.synthetic:
            self._first_elements()
            if with_val or split == "val":
                self._materialise_val(int(d.adapter.val_samples_per_dataset))
        self.startup_s = time.perf_counter() - self._t_construct
        log_startup(self)

    # ------------------------------------------------------------------ startup
    def _io_pool(self):
        if self._io is None:
            from concurrent.futures import ThreadPoolExecutor

            self._io = ThreadPoolExecutor(max(1, self.io_threads), thread_name_prefix="hlrp-data-io")
        return self._io

    def _prefetch(self, wanted: list[tuple[OpenDataset, str, int]]) -> None:
        """Read the given episodes concurrently (shard scans and record reads are I/O-bound and release the GIL),
        so a cold batch pays about one latency per ``io_threads`` reads; errors surface in the serial pass."""
        keys = dict.fromkeys((ds.id, sp, p) for ds, sp, p in wanted)
        todo = [(self.datasets[di], sp, p) for di, sp, p in keys if not self.cache.contains((di, sp, p))]
        if self.io_threads <= 1 or len(todo) <= 1:
            return
        t0 = time.perf_counter()

        def one(item):
            with contextlib.suppress(Exception):
                self.episode(*item)

        list(self._io_pool().map(one, todo))
        self.timers.add("prefetch_wall", time.perf_counter() - t0)

    def _first_elements(self) -> None:
        """Time to first element: read + parse + decode one frame of each dataset's first train episode."""
        self._prefetch([(ds, "train", ds.train_lo) for ds in self.datasets])
        for ds in self.datasets:
            t0 = time.perf_counter()
            p0 = ds.train_lo
            ep = self.episode(ds, "train", p0)
            try:
                decode_resize(ep.frames[0], self.size, self.mode)
            except Exception as exc:  # noqa: BLE001
                path, off, _ = ds.train.record(p0)
                raise CorruptShardError(
                    f"{path} (record at byte {off}): the first frame of {ds.name} is not a decodable image "
                    f"({type(exc).__name__}); the shard is corrupt: re-sync it or drop the dataset (weight: 0)"
                ) from None
            ds.report["first_element_s"] = round(time.perf_counter() - t0, 4)
            self.report.append(ds.report)

    def _fd(self, path: str) -> Optional[int]:
        if is_remote(path):
            return None
        with self._fd_lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                self._fds[path] = fd
            return fd

    def episode(self, ds: OpenDataset, split: str, pos: int, use_cache: bool = True) -> Episode:
        """Episode ``pos`` of ``ds``'s ``split`` split: one byte-range read (CRC checked) and one parse; cached."""
        key = (ds.id, split, pos)
        if use_cache:
            ep = self.cache.get(key)
            if ep is not None:
                return ep
        sp = ds.split(split)
        t0 = time.perf_counter()
        path, off, n = sp.record(pos)
        t1 = time.perf_counter()
        raw = read_record(path, off, n, self._fd(path), verify=self.verify_crc)
        t2 = time.perf_counter()
        ep = parse_episode(raw, ds.spec, f"{path} (record at byte {off - 12})")
        del raw
        self.timers.add("index", t1 - t0)
        self.timers.add("read", t2 - t1)
        self.timers.add("parse", time.perf_counter() - t2)
        known = sp.length(pos)
        if known and known != ep.T:
            raise CorruptShardError(f"{path}: episode at byte {off - 12} has {ep.T} steps but the index cache says "
                                    f"{known}; delete {sp.cache_path} and re-sync the shard")
        if not known:
            sp.set_length(pos, ep.T)
            if ep.success is False:
                sp.failed[pos] = 1
        if ds.id in self._norm:
            ep.action, ep.state = self._norm[ds.id](ep.action, ep.state)
        if use_cache:
            self.cache.put(key, ep)
        return ep

    def _length(self, ds: OpenDataset, split: str, pos: int) -> int:
        T = ds.split(split).length(pos)
        return T if T else self.episode(ds, split, pos).T

    def _bad(self, ds: OpenDataset, exc: CorruptShardError) -> None:
        """``data.adapter.bad_records=skip``: count and log the bad record (then the sample is redrawn)."""
        self.bad_seen.setdefault(ds.name, set()).add(str(exc).split(";")[0])
        log.warning("skipping a bad record of %s (data.adapter.bad_records=skip): %s", ds.name, exc)

    def _resolve(self, di: int, i: int) -> tuple[OpenDataset, int, int, int, Episode]:
        """(dataset, episode, t, k, episode data) of global train index ``i`` (``KeySampler.resolve``): short
        episodes and, with ``bad_records=skip``, bad records are redrawn deterministically and counted."""
        ds = self.datasets[di]

        def length_of(_, pos: int) -> int:
            try:
                T = self._length(ds, "train", pos)
            except CorruptShardError as exc:
                if self.bad_records != "skip":
                    raise
                self._bad(ds, exc)
                return 0
            if T - 1 < ds.k_min:
                ds.skipped.add(pos)
            if self.success_only and ds.train.failed[pos]:
                ds.unsuccessful.add(pos)
                return 0
            return T

        try:
            pos, t, k, _ = self.sampler.resolve(di, i, length_of)
        except ValueError:
            raise DataSourceError(f"{ds.name}: {MAX_ATTEMPTS} draws in a row found no episode with T >= k+1 = "
                                  f"{ds.k_min + 1} steps (or no readable one); lower pair_offset_steps or drop the "
                                  "dataset") from None
        return ds, pos, t, k, self.episode(ds, "train", pos)

    def _materialise_val(self, n_val: int) -> None:
        """N_val fixed keys per dataset from its val slice (the train sampler's algorithm with a derived seed),
        kept as encoded bytes."""
        t0 = time.perf_counter()
        vseed = (self.seed ^ 0x5A17) & 0x7FFFFFFF
        out = []
        for ds in self.datasets:
            vs = KeySampler([DatasetDraw(ds.val_lo, ds.val_hi, ds.k_min, ds.k_max, ds.seed ^ vseed)], np.ones(1), 0)

            def length_of(_, pos: int, ds=ds) -> int:
                T = self._length(ds, "val", pos)
                if T - 1 < ds.k_min:
                    ds.skipped.add(("val", pos))
                if self.success_only and ds.val.failed[pos]:
                    return 0
                return T

            for j in range(n_val):
                try:
                    pos, t, k, _ = vs.resolve(0, j, length_of)
                except ValueError:
                    raise DataSourceError(f"data.dataset.oxe.datasets[{ds.name}]: no val episode is long enough for "
                                          f"k={ds.k_min} (needs T >= k+1); lower pair_offset_steps or drop the "
                                          "dataset") from None
                out.append(self._sample_meta(ds, "val", pos, t, k, self.episode(ds, "val", pos)))
        self.val_samples = out
        self.val_bytes = sum(sum(len(b) for b in s["jpeg"]) for s in out)
        self.val_build_s = time.perf_counter() - t0

    def _sample_meta(self, ds: OpenDataset, split: str, pos: int, t: int, k: int, ep: Episode) -> dict:
        offs = frame_offsets(self.pf.mode, self.pf.stride, self.pf.n, k)
        a = reduce_action(ep.action, t, k, ds.spec.action_kind)
        path, off, _ = ds.split(split).record(pos)
        return {"ds": ds.id, "name": ds.name, "jpeg": [ep.frames[t + o] for o in offs], "offs": offs,
                "where": f"{path} (record at byte {off - 12})", "episode": int(pos) + split_code(split) * 10 ** 9,
                "episode_id": f"{ds.name}@{ds.src.version}/{ds.split(split).split}/{int(pos)}", "t": int(t),
                "k": int(k), "language": ep.language[t] if ep.language else "", "action": a,
                "action_dim": 0 if ds.spec.action_kind == "none" else int(a.shape[0]), "state": ep.state[t],
                "robot": ep.robot}

    # ------------------------------------------------------------------ batch assembly
    def keys(self, start: int, n: int) -> np.ndarray:
        """Sample keys (dataset_id, episode, t, k) of global indices start..start+n-1 (reads only the episodes
        whose length is not in the index cache yet)."""
        i = np.arange(start, start + n, dtype=np.int64)
        d = self.sampler.dataset_of(i)
        out = np.zeros((n, 4), np.int64)
        for r, (di, ii) in enumerate(zip(d.tolist(), i.tolist())):
            ds, pos, t, k, _ = self._resolve(di, ii)
            out[r] = (di, pos, t, k)
        return out

    def batch_start(self, batch_no: int, start: int = 0) -> int:
        """Global index of the first sample of this rank's ``batch_no``-th train batch from ``start``."""
        return start + (batch_no * self.world_size + self.rank) * self.batch_size

    def _train_batch(self, batch_no: int, start: int, stop: threading.Event, state: dict) -> dict:
        i0 = self.batch_start(batch_no, start)
        if self.synthetic:
            return self.maker.synthetic(i0)
        t0 = time.perf_counter()
        idx = np.arange(i0, i0 + self.batch_size, dtype=np.int64)
        d = self.sampler.dataset_of(idx)
        self.timers.add("sample", time.perf_counter() - t0)
        self._prefetch([(self.datasets[di], "train", self.sampler.episode(di, ii)) for di, ii in
                        zip(d.tolist(), idx.tolist())])
        samples = []
        for di, ii in zip(d.tolist(), idx.tolist()):
            if stop.is_set():
                raise Stopped()
            state["dataset"] = self.datasets[di].name
            ds, pos, t, k, ep = self._resolve(di, ii)
            samples.append(self._sample_meta(ds, "train", pos, t, k, ep))
        state["dataset"] = "(decoding)"
        return self.maker.collate(samples, idx, stop)

    # ------------------------------------------------------------------ iteration
    def _start(self) -> Pipeline:
        if self._closed:
            raise RuntimeError("the loader is closed")
        if self._pipe is None:
            start = self.next_index
            self._pipe = Pipeline(lambda j, stop, st: self._train_batch(j, start, stop, st), self.threads,
                                  self.in_flight, self.stall_timeout)
        return self._pipe

    def next_train(self) -> dict:
        """The next train batch (starts the worker threads on first use)."""
        if self._first_batch is not None:
            return self._first_batch
        ram_guard(self.batch_floor_mb if self.batches_out else self.ram_floor_mb, on_stop=self.close)
        pipe = self._start()
        t0 = time.perf_counter()
        batch = pipe.get()
        self.wait_s += time.perf_counter() - t0
        if self.first_batch_s is None:
            self.first_batch_s = time.perf_counter() - self._t_construct
        self.next_index += self.batch_size * self.world_size
        self.batches_out += 1
        for n in batch["dataset_name"]:
            self.counts[n] = self.counts.get(n, 0) + 1
        if self.pin:
            batch = pin(batch)
        if self.d.adapter.tf.iterator.cache_first_train_batch:
            self._first_batch = batch
        return batch

    def val_batches(self, limit: int = 0) -> Iterator[dict]:
        """One pass over the fixed validation set (decoded on the calling thread; nothing is rebuilt)."""
        if self.synthetic:
            for j in range(max(1, limit or 1)):
                yield self.maker.synthetic(j * self.batch_size)
            return
        n = len(self.val_samples)
        for j, b0 in enumerate(range(0, n, self.batch_size)):
            if limit and j >= limit:
                return
            ram_guard(self.batch_floor_mb, on_stop=self.close)
            chunk = self.val_samples[b0: b0 + self.batch_size]
            yield self.maker.collate(chunk, np.arange(b0, b0 + len(chunk)))

    def browse_batch(self, per_dataset: int = 2) -> dict:
        """A batch with the first ``per_dataset`` fixed validation samples of every dataset (for browsing)."""
        chosen, seen = [], {}
        for smp in self.val_samples:
            if seen.get(smp["ds"], 0) < per_dataset:
                seen[smp["ds"]] = seen.get(smp["ds"], 0) + 1
                chosen.append(smp)
        return self.maker.collate(chosen, np.arange(len(chosen)))

    def num_val_batches(self) -> int:
        return max(1, -(-len(self.val_samples) // self.batch_size)) if not self.synthetic else 1

    @property
    def train(self) -> "TrainIterable":
        return TrainIterable(self)

    @property
    def val(self) -> "ValIterable":
        return ValIterable(self)

    def __iter__(self):
        return iter(self.train) if self.split == "train" else self.val_batches()

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        """{"next_index": global index of the next train sample, "seed": ...}: enough to resume exactly."""
        return {"next_index": int(self.next_index), "seed": int(self.seed), "batch_size": self.batch_size,
                "world_size": self.world_size, "unit": self.unit}

    def load_state_dict(self, state: dict) -> None:
        self.seek(int(state["next_index"]))

    def seek(self, index: int) -> None:
        """Continue the train stream at global sample index ``index`` (drops prefetched batches)."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        self._first_batch = None
        self.next_index = int(index)

    # ------------------------------------------------------------------ observability / lifecycle
    def stats(self) -> dict:
        """Per-stage seconds (summed over threads), realised shares, cache bytes, input-wait seconds, short
        episodes skipped and bad records skipped per dataset."""
        tot = sum(self.counts.values()) or 1
        return {"stage_s": {k: round(v, 4) for k, v in self.timers.s.items()},
                "realised_share": {k: round(v / tot, 4) for k, v in sorted(self.counts.items())},
                "target_share": {x.name: round(x.weight, 4) for x in self.datasets},
                "episode_cache_mb": round(self.cache.bytes / 2 ** 20, 2),
                "episode_cache_hit_rate": round(self.cache.hits / max(1, self.cache.hits + self.cache.misses), 4),
                "val_set_mb": round(getattr(self, "val_bytes", 0) / 2 ** 20, 2),
                "val_samples": len(self.val_samples), "batches": self.batches_out,
                "input_wait_s": round(self.wait_s, 4), "first_batch_s": self.first_batch_s,
                "startup_s": round(self.startup_s, 3), "threads": self.threads, "sampling_unit": self.unit,
                "short_episodes_skipped": {x.name: len(x.skipped) for x in self.datasets},
                "unsuccessful_episodes_skipped": {x.name: len(x.unsuccessful) for x in self.datasets
                                                  if x.spec.success_key},
                "bad_records_skipped": {k: len(v) for k, v in self.bad_seen.items()},
                "shards_scanned": {x.name: x.train.scanned_shards() for x in self.datasets}}

    def threads_alive(self) -> list[threading.Thread]:
        return [] if self._pipe is None else [t for t in self._pipe.workers if t.is_alive()]

    def close(self, timeout: float = 2.0) -> None:
        """Stop and join every worker thread (within ``timeout`` s), drop buffers, close file handles."""
        if self._pipe is not None:
            self._pipe.close(timeout)
            self._pipe = None
        if self._io is not None:
            self._io.shutdown(wait=True, cancel_futures=True)
            self._io = None
        with self._fd_lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
        self.cache.clear()
        self._first_batch = None
        self._closed = True

    def __enter__(self) -> "PairLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # backstop only; close() is the contract
        with contextlib.suppress(Exception):
            if not self._closed:
                self.close(timeout=0.5)


def open_loader(cfg: Any, split: str = "train", start_index: int = 0) -> PairLoader:
    """``with open_loader(cfg, split="train") as loader: for batch in loader: ...``; closes (joins threads) on exit.

    ``split="train"`` iterates forever from global sample index ``start_index``; ``split="val"`` makes one pass over
    the fixed validation set.
    """
    return PairLoader(cfg, split=split, start_index=start_index)


def __getattr__(name):  # build_datamodule / PairDataModule live in datamodule.py (it imports lightning)
    if name in ("build_datamodule", "PairDataModule"):
        from . import datamodule

        return getattr(datamodule, name)
    raise AttributeError(name)
