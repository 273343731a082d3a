"""The frame-pair loader: episode index -> deterministic sample keys -> encoded frames -> decoded uint8 batches.

Public API::

    with open_loader(cfg, split="train") as loader:      # split="val": one pass over the fixed val set
        for batch in loader: ...
    dm = build_datamodule(cfg)                            # lightning.LightningDataModule (persistent train, cached val)

Batch contract (DATA_ADAPTER.md section 2; the one place it is written down in code), B = batch size:

=================  ===========================  =================================================================
key                type / shape                 meaning
=================  ===========================  =================================================================
``frames``         torch.uint8 [B,3,T,H,W]      T = frames selected by ``pair_frames`` (2 for endpoints); H = W =
                                                ``data.preprocess.image_size``; aspect kept (letterbox by default)
``frame_offset``   int64 [B,T]                  offset of each frame from t (0 ... k; repeats k as padding when T
                                                varies with k in ``all``/``stride`` modes)
``episode_id``     list[str]                    ``"<dataset>@<version>/<split>/<record index>"`` (stable)
``frame_idx``      int64 [B]                    start step t
``offset``         int64 [B]                    gap k of each sample
``language``       list[str]                    instruction at t ("" when none)
``dataset_name``   list[str]                    registry name (``dataset_type`` is the same list)
``dataset_id``     int64 [B]                    position of the dataset in ``loader.dataset_names``
``action``         float32 [B,A_max]            reducer over [t, t+k) (``delta`` sum, ``absolute`` a[t+k]-a[t]),
                                                zero-padded to the mix's max action width
``action_dim``     int64 [B]                    valid leading entries of ``action`` (0 = masked)
``initial_state``  float32 [B,S_max]            state at t, zero-padded (diagnostic only)
``state_dim``      int64 [B]                    valid leading entries of ``initial_state``
``robot``          list[str]                    robot name (robonet) or ""
``sample_key``     int64 [B,4]                  (dataset_id, episode, t, k); episode = record index in its split
                                                (+ 10^9 x split code for non-``train`` splits)
``index``          int64 [B]                    global sample index i (train) / val position (val)
=================  ===========================  =================================================================

With ``metadata.mode=dataset_only`` the batch holds only ``frames``, ``dataset_name``, ``dataset_type``,
``dataset_id``, ``sample_key`` and ``index``.

Design (DATA_ADAPTER section 6): one shared pool of ``data.adapter.threads`` worker threads builds whole batches
(in order, ``batches_in_flight`` ahead); episodes are read by byte offset from their TFRecord shard, parsed once,
and only the selected camera's JPEG bytes are kept in one byte-bounded LRU cache (never decoded frames); only the
frames a sample uses are decoded (PIL, DCT-scaled when the source is >= 2x the target). The validation set is a
fixed key list materialised once as encoded bytes. ``close()`` stops and joins every thread within 2 s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from ..config.data import (DataConfig, effective_knobs, frame_offsets, num_frames, resolve_weights, split_episodes,
                           usable_cores)
from . import registry as reg
from .decode import decode_resize
from .index import (CorruptShardError, SplitIndex, build_split_index, frames_of, parse_example, read_record,
                    reduce_action)
from .sampler import DatasetDraw, KeySampler, uniform
from .sources import DataSourceError, ResolvedSource, data_root_of, resolve_source

log = logging.getLogger(__name__)

__all__ = ["PairLoader", "PairDataModule", "open_loader", "build_datamodule", "RamGuardError", "StallError",
           "DataSourceError", "CorruptShardError", "mem_available_mb"]


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


class RamGuardError(MemoryError):
    """MemAvailable fell below the configured floor; the loader stopped cleanly. The message is the reason."""


class StallError(TimeoutError):
    """No batch within ``python_prefetch_wait_timeout_s``; names the dataset the workers were reading."""


def mem_available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


def _split_code(split: str) -> int:
    return 0 if split == "train" else 1 + zlib.crc32(split.encode()) % 999


# ----------------------------------------------------------------------------------------------------------------
@dataclass
class _Dataset:
    id: int
    name: str
    spec: reg.DatasetSpec
    src: ResolvedSource
    weight: float
    seed: int
    k_min: int
    k_max: int
    train_split: str
    val_split: str
    train_pos: np.ndarray  # eligible train episodes (positions in the split index)
    val_pos: np.ndarray
    report: dict = field(default_factory=dict)


class _EpisodeCache:
    """Byte-bounded LRU of {episode: [JPEG bytes of the selected camera per step]} (encoded only, P2/P5)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max(0, int(max_bytes))
        self.bytes = 0
        self.hits = self.misses = 0
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return v

    def put(self, key, frames: list[bytes]) -> None:
        size = sum(len(f) for f in frames)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._d:
                return
            self._d[key] = frames
            self.bytes += size
            while self.bytes > self.max_bytes and self._d:
                _, old = self._d.popitem(last=False)
                self.bytes -= sum(len(f) for f in old)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.bytes = 0


class _Timers:
    def __init__(self):
        self._lock = threading.Lock()
        self.s: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        with self._lock:
            self.s[name] = self.s.get(name, 0.0) + dt


# ----------------------------------------------------------------------------------------------------------------
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

    Everything that can fail on bad data (missing root/dataset, corrupt shard, empty split) fails here, in the
    constructor, before any thread starts. Use as a context manager, or call ``close()``.
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
        self.full_meta = t.metadata.mode == "full"
        self.effective = effective_knobs(d)
        self.threads = int(self.effective["threads"])
        self.in_flight = int(self.effective["batches_in_flight"])
        self.stall_timeout = float(t.mixing.python_prefetch_wait_timeout_s)
        self.pin = bool(d.loader.pin_memory)
        guard = d.adapter.ram_guard_min_available_mb
        tr = getattr(cfg, "training", None)
        if tr is not None and getattr(tr, "ram_guard", None) is not None:
            guard = max(guard, int(tr.ram_guard.min_available_mb))
        self.ram_floor_mb = guard
        gseed = int(getattr(cfg, "seed", 0) or 0)
        self.seed = (int(t.sampling.seed) + 1000003 * gseed) & 0x7FFFFFFF
        self.synthetic = bool(t.debug.use_synthetic_data)
        self.timers = _Timers()
        self.counts: dict[str, int] = {}
        self.wait_s = 0.0
        self.batches_out = 0
        self.report: list[dict] = []
        self._closed = False
        self._fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()
        self._pipe: Optional[_Pipeline] = None
        self._first_batch = None
        self._t_construct = time.perf_counter()
        self.first_batch_s: Optional[float] = None
        self.next_index = int(start_index)
        budget = d.adapter.ram_budget_mb * 2 ** 20
        self.cache = _EpisodeCache(int(self.effective["episode_cache_mb"] * 2 ** 20))
        self.datasets: list[_Dataset] = []
        self.val_samples: list[dict] = []
        self._budget = budget
        if self.synthetic:
            self.dataset_names = ["synthetic"]
            self.a_max = self.s_max = 2
            self.sampler = None
        else:
            self._open_datasets()
            self.dataset_names = [x.name for x in self.datasets]
            self.a_max = max(x.spec.action_dims for x in self.datasets)
            self.s_max = max(x.spec.state_dims for x in self.datasets)
            self.sampler = KeySampler(
                [DatasetDraw(self._train_idx(x).length[x.train_pos], x.train_pos.astype(np.int64), x.k_min, x.k_max,
                             x.seed) for x in self.datasets],
                np.array([x.weight for x in self.datasets]), self.seed, block=t.mixing.mix_block_length,
                samples_per_episode=t.sampling.samples_per_episode)
            if with_val or split == "val":
                self._materialise_val(int(d.adapter.val_samples_per_dataset))
        self.startup_s = time.perf_counter() - self._t_construct
        self._log_startup()

    # ------------------------------------------------------------------ startup
    def _open_datasets(self) -> None:
        d, t = self.d, self.d.adapter.tf
        root = data_root_of(d)
        entries = d.dataset.oxe.datasets
        cache_dir = d.adapter.index_cache_dir
        from ..paths import data_root, resolve

        cache_path = resolve(cache_dir) if cache_dir else data_root() / ".index_cache"
        srcs, idxs, infos = {}, {}, {}
        sizes: dict[str, float] = {}
        warnings: list[str] = []
        pre = resolve_weights(entries, None, warnings)
        for e in entries:
            if e.name not in pre and not (e.weight is None or isinstance(e.weight, str)):
                continue  # weight 0: dropped before anything is read
            try:
                spec = reg.get(e.name)
            except reg.UnknownDatasetError as exc:
                raise DataSourceError(f"data.dataset.oxe.datasets[{e.name}]: {exc}") from None
            t0 = time.perf_counter()
            src = resolve_source(spec, t.tfds_read, root)
            for split_spec, role in ((e.train_split, "train_split"), (e.val_split, "val_split")):
                base = split_spec.split("[")[0].strip()
                if base not in src.splits:
                    raise DataSourceError(f"data.dataset.oxe.datasets[{e.name}].{role}={split_spec!r}: {src.path} has "
                                          f"no split {base!r} (it has {sorted(src.splits)})")
                if (e.name, base) not in idxs:
                    idxs[(e.name, base)], infos[(e.name, base)] = build_split_index(src, spec, base, cache_path)
            srcs[e.name] = (spec, src, time.perf_counter() - t0)
            k_min = gap_steps(e, spec)[0]
            tr = idxs[(e.name, e.train_split.split("[")[0].strip())]
            pos = np.asarray(split_episodes(e.train_split, tr.num_episodes))
            elig = pos[tr.length[pos] - 1 >= k_min] if len(pos) else pos
            sizes[e.name] = float((tr.length[elig] - k_min).sum()) if len(elig) else 0.0
        weights = resolve_weights(entries, {n: s for n, s in sizes.items()
                                            if next(x for x in entries if x.name == n).approx_num_pairs is None},
                                  warnings)
        for w in warnings:
            log.warning(w)
        if not weights:
            raise DataSourceError("every dataset has weight 0 (or no eligible pairs); nothing to sample")
        for e in entries:
            if e.name not in weights:
                log.info("dataset %s dropped (weight 0)", e.name)
                continue
            spec, src, secs = srcs[e.name]
            trb, vab = e.train_split.split("[")[0].strip(), e.val_split.split("[")[0].strip()
            tr, va = idxs[(e.name, trb)], idxs[(e.name, vab)]
            k_min, k_max = gap_steps(e, spec)
            tpos = np.asarray(split_episodes(e.train_split, tr.num_episodes), np.int64)
            vpos = np.asarray(split_episodes(e.val_split, va.num_episodes), np.int64)
            where = f"data.dataset.oxe.datasets[{e.name}]"
            if len(tpos) == 0:
                raise DataSourceError(f"{where}.train_split={e.train_split!r} selects 0 of {tr.num_episodes} episodes "
                                      f"in {src.path}; use absolute counts such as 'train[:20]'")
            if len(vpos) == 0:
                raise DataSourceError(f"{where}.val_split={e.val_split!r} selects 0 of {va.num_episodes} episodes in "
                                      f"{src.path} (percent slices of small datasets round to 0, F5); use an absolute "
                                      "slice such as 'train[-2:]' or drop the dataset (weight: 0)")
            if trb == vab:
                overlap = np.intersect1d(tpos, vpos)
                if len(overlap):
                    msg = (f"{where}: val_split={e.val_split!r} and train_split={e.train_split!r} share "
                           f"{len(overlap)} episodes in {src.path}")
                    if not self.d.adapter.allow_split_overlap:
                        raise DataSourceError(msg + "; use disjoint slices or data.adapter.allow_split_overlap=true")
                    log.warning(msg + " (accepted: data.adapter.allow_split_overlap=true)")
            t_el = tpos[tr.length[tpos] - 1 >= k_min]
            v_el = vpos[va.length[vpos] - 1 >= k_min]
            if len(t_el) == 0 or len(v_el) == 0:
                which = "train" if len(t_el) == 0 else "val"
                raise DataSourceError(f"{where}: no {which} episode is long enough for k={k_min} (needs T >= k+1); "
                                      f"lower pair_offset_steps or drop the dataset")
            seed = e.seed if e.seed is not None else (self.seed + zlib.crc32(e.name.encode())) & 0x7FFFFFFF
            ds = _Dataset(len(self.datasets), e.name, spec, src, weights[e.name], int(seed), k_min, k_max, trb, vab,
                          t_el, v_el)
            self._idx = idxs
            tinfo = infos[(e.name, trb)]
            ds.report = {
                "dataset": e.name, "path": src.path, "version": src.version, "source": src.how,
                "weight": round(weights[e.name], 6), "train_episodes": int(len(tpos)), "val_episodes": int(len(vpos)),
                "eligible_train_episodes": int(len(t_el)), "ineligible_train_episodes": int(len(tpos) - len(t_el)),
                "eligible_pairs": int((tr.length[t_el] - k_min).sum()), "k": [k_min, k_max],
                "approx_num_pairs": e.approx_num_pairs, "index_cached": tinfo["cached"],
                "index_s": round(tinfo["seconds"], 3), "resolve_s": round(secs, 3)}
            self.datasets.append(ds)
        self._idx = idxs
        # time to first element: read + parse + decode one frame of each dataset's first eligible episode
        for ds in self.datasets:
            t0 = time.perf_counter()
            p0 = int(ds.train_pos[0])
            fr = self._episode_frames(ds, ds.train_split, p0, use_cache=True)
            try:
                decode_resize(fr[0], self.size, self.mode)
            except Exception as exc:  # noqa: BLE001
                idx = self._train_idx(ds)
                raise CorruptShardError(
                    f"{idx.files[int(idx.file_idx[p0])]} (record at byte {int(idx.offset[p0])}): the first frame of "
                    f"{ds.name} is not a decodable image ({type(exc).__name__}); the shard is corrupt: re-sync it "
                    "or drop the dataset (weight: 0)") from None
            ds.report["first_element_s"] = round(time.perf_counter() - t0, 4)
            self.report.append(ds.report)

    def _train_idx(self, ds: _Dataset) -> SplitIndex:
        return self._idx[(ds.name, ds.train_split)]

    def _val_idx(self, ds: _Dataset) -> SplitIndex:
        return self._idx[(ds.name, ds.val_split)]

    def _fd(self, path: str) -> Optional[int]:
        if path.startswith("gs://"):
            return None
        with self._fd_lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                self._fds[path] = fd
            return fd

    def _episode_frames(self, ds: _Dataset, split: str, pos: int, use_cache: bool = True) -> list[bytes]:
        key = (ds.id, split, pos)
        if use_cache:
            fr = self.cache.get(key)
            if fr is not None:
                return fr
        idx = self._idx[(ds.name, split)]
        path = idx.files[int(idx.file_idx[pos])]
        t0 = time.perf_counter()
        raw = read_record(path, int(idx.offset[pos]), int(idx.nbytes[pos]), self._fd(path))
        t1 = time.perf_counter()
        ex = parse_example(raw, f"{path} (record at byte {int(idx.offset[pos])})")
        fr = frames_of(ex, ds.spec, path)
        del ex, raw
        t2 = time.perf_counter()
        self.timers.add("read", t1 - t0)
        self.timers.add("parse", t2 - t1)
        if len(fr) != int(idx.length[pos]):
            raise CorruptShardError(f"{path}: episode at byte {int(idx.offset[pos])} has {len(fr)} frames but the "
                                    f"index says {int(idx.length[pos])}; delete the index cache and re-sync")
        if use_cache:
            self.cache.put(key, fr)
        return fr

    def _materialise_val(self, n_val: int) -> None:
        """N_val fixed keys per dataset from its val episodes (derived seed), kept as encoded bytes."""
        t0 = time.perf_counter()
        vseed = (self.seed ^ 0x5A17) & 0x7FFFFFFF
        out = []
        for ds in self.datasets:
            idx = self._val_idx(ds)
            order = np.argsort(uniform(ds.seed ^ vseed, 11, np.arange(len(ds.val_pos))))
            j = np.arange(n_val)
            pos = ds.val_pos[order[j % len(order)]]
            T = idx.length[pos].astype(np.int64)
            kmax = np.minimum(ds.k_max, T - 1)
            k = np.minimum(ds.k_min + (uniform(ds.seed ^ vseed, 12, j) * (kmax - ds.k_min + 1)).astype(np.int64),
                           kmax)
            tt = np.minimum((uniform(ds.seed ^ vseed, 13, j) * (T - k)).astype(np.int64), T - 1 - k)
            by_ep: dict[int, list[bytes]] = {}
            for p, t_, k_ in zip(pos.tolist(), tt.tolist(), k.tolist()):
                if p not in by_ep:
                    by_ep[p] = self._episode_frames(ds, ds.val_split, p, use_cache=False)
                offs = frame_offsets(self.pf.mode, self.pf.stride, self.pf.n, k_)
                out.append(self._sample_meta(ds, ds.val_split, idx, p, t_, k_, offs,
                                             [by_ep[p][t_ + o] for o in offs]))
            by_ep.clear()
        self.val_samples = out
        self.val_bytes = sum(sum(len(b) for b in s["jpeg"]) for s in out)
        self.val_build_s = time.perf_counter() - t0

    def _sample_meta(self, ds: _Dataset, split: str, idx: SplitIndex, pos: int, t: int, k: int, offs: list[int],
                     jpegs: list[bytes]) -> dict:
        s = int(idx.step_start[pos])
        a = reduce_action(idx, pos, t, k, ds.spec.action_kind)
        where = f"{idx.files[int(idx.file_idx[pos])]} (record at byte {int(idx.offset[pos])})"
        return {"ds": ds.id, "name": ds.name, "jpeg": jpegs, "offs": offs, "where": where,
                "episode": int(pos) + _split_code(split) * 10 ** 9,
                "episode_id": f"{ds.name}@{ds.src.version}/{split}/{int(pos)}", "t": int(t), "k": int(k),
                "language": idx.strings[int(idx.lang_id[s + t])] if len(idx.lang_id) else "",
                "action": a, "action_dim": 0 if ds.spec.action_kind == "none" else int(a.shape[0]),
                "state": idx.state[s + t], "robot": idx.strings[int(idx.robot_id[pos])]}

    def _log_startup(self) -> None:
        log.info("data loader: %d dataset(s), batch %d, image %d, threads %d, batches in flight %d, episode cache "
                 "%.0f MiB, startup %.2f s, rank %d of %d", len(self.dataset_names), self.batch_size, self.size,
                 self.threads, self.in_flight, self.cache.max_bytes / 2 ** 20, self.startup_s, self.rank,
                 self.world_size)
        for r in self.report:
            log.info("  %-40s %-12s %s v%s train %d (eligible %d, pairs %d) val %d  index %.2fs%s  first %.3fs",
                     r["dataset"], r["source"], r["path"], r["version"], r["train_episodes"],
                     r["eligible_train_episodes"], r["eligible_pairs"], r["val_episodes"], r["index_s"],
                     " (cached)" if r["index_cached"] else "", r["first_element_s"])
        log.info("data effective knobs: %s", {k: v for k, v in self.effective.items()
                                              if not k.startswith(("weight.", "thread_share.", "seed."))})

    # ------------------------------------------------------------------ batch assembly
    def _frames_T(self, ks: list[int]) -> int:
        n = num_frames(self.pf.mode, self.pf.stride, self.pf.n, None)
        if n:
            return n
        return max(len(frame_offsets(self.pf.mode, self.pf.stride, self.pf.n, k)) for k in ks)

    def _collate(self, samples: list[dict], index: np.ndarray, stop: Optional[threading.Event] = None) -> dict:
        import torch

        B = len(samples)
        T = self._frames_T([s["k"] for s in samples])
        S = self.size
        t0 = time.perf_counter()
        frames = np.zeros((B, 3, T, S, S), np.uint8)
        offs = np.zeros((B, T), np.int64)
        for b, s in enumerate(samples):
            if stop is not None and stop.is_set():
                raise _Stopped()
            js = s["jpeg"]
            for j in range(T):
                jj = min(j, len(js) - 1)
                if j < len(js):
                    try:
                        decode_resize(js[jj], S, self.mode, out=frames[b, :, j], chw=True)
                    except Exception as exc:  # noqa: BLE001 - a bad image is a corrupt shard, named as such
                        raise CorruptShardError(
                            f"{s.get('where', s['episode_id'])}: frame {s['t'] + s['offs'][jj]} of {s['episode_id']} "
                            f"is not a decodable image ({type(exc).__name__}: {exc}); the shard is corrupt: re-sync "
                            "it or drop the dataset (weight: 0)") from None
                else:
                    frames[b, :, j] = frames[b, :, jj]
                offs[b, j] = s["offs"][jj]
        t1 = time.perf_counter()
        frames_t = torch.from_numpy(frames)
        t2 = time.perf_counter()
        self.timers.add("decode_resize", t1 - t0)
        self.timers.add("layout", t2 - t1)
        names = [s["name"] for s in samples]
        key = np.array([[s["ds"], s["episode"], s["t"], s["k"]] for s in samples], np.int64).reshape(B, 4)
        batch = {"frames": frames_t, "dataset_name": names, "dataset_type": list(names),
                 "dataset_id": torch.from_numpy(key[:, 0].copy()), "sample_key": torch.from_numpy(key),
                 "index": torch.from_numpy(np.asarray(index, np.int64))}
        if self.full_meta:
            act = np.zeros((B, self.a_max), np.float32)
            st = np.zeros((B, self.s_max), np.float32)
            for b, s in enumerate(samples):
                act[b, : s["action"].shape[0]] = s["action"]
                st[b, : s["state"].shape[0]] = s["state"]
            batch.update({
                "frame_offset": torch.from_numpy(offs),
                "episode_id": [s["episode_id"] for s in samples],
                "frame_idx": torch.from_numpy(key[:, 2].copy()), "offset": torch.from_numpy(key[:, 3].copy()),
                "language": [s["language"] for s in samples],
                "action": torch.from_numpy(act),
                "action_dim": torch.tensor([s["action_dim"] for s in samples], dtype=torch.int64),
                "initial_state": torch.from_numpy(st),
                "state_dim": torch.tensor([int(s["state"].shape[0]) for s in samples], dtype=torch.int64),
                "robot": [s["robot"] for s in samples]})
        self.timers.add("collate", time.perf_counter() - t2)
        return batch

    def _synthetic_batch(self, i0: int) -> dict:
        import torch

        B, S = self.batch_size, self.size
        T = self._frames_T([1])
        idx = np.arange(i0, i0 + B, dtype=np.int64)
        key = np.stack([np.zeros(B, np.int64), idx, np.zeros(B, np.int64), np.ones(B, np.int64)], 1)
        return {"frames": torch.zeros((B, 3, T, S, S), dtype=torch.uint8), "frame_offset": torch.zeros((B, T),
                                                                                                       dtype=torch.int64),
                "episode_id": [f"synthetic@0/train/{i}" for i in idx], "frame_idx": torch.zeros(B, dtype=torch.int64),
                "offset": torch.ones(B, dtype=torch.int64), "language": [""] * B,
                "dataset_name": ["synthetic"] * B, "dataset_type": ["synthetic"] * B,
                "dataset_id": torch.zeros(B, dtype=torch.int64), "action": torch.zeros((B, 2)),
                "action_dim": torch.zeros(B, dtype=torch.int64), "initial_state": torch.zeros((B, 2)),
                "state_dim": torch.zeros(B, dtype=torch.int64), "robot": [""] * B,
                "sample_key": torch.from_numpy(key), "index": torch.from_numpy(idx)}

    def keys(self, start: int, n: int) -> np.ndarray:
        """Sample keys (dataset_id, episode, t, k) of global indices start..start+n-1, without reading any data."""
        d, e, t, k = self.sampler.keys(start, n)
        return np.stack([d, e, t, k], 1)

    def batch_start(self, batch_no: int, start: int = 0) -> int:
        """Global index of the first sample of this rank's ``batch_no``-th train batch from ``start``."""
        return start + (batch_no * self.world_size + self.rank) * self.batch_size

    def _train_batch(self, batch_no: int, start: int, stop: threading.Event, state: dict) -> dict:
        i0 = self.batch_start(batch_no, start)
        if self.synthetic:
            return self._synthetic_batch(i0)
        t0 = time.perf_counter()
        d, e, t, k = self.sampler.keys(i0, self.batch_size)
        self.timers.add("sample", time.perf_counter() - t0)
        samples = []
        for di, pos, t_, k_ in zip(d.tolist(), e.tolist(), t.tolist(), k.tolist()):
            if stop.is_set():
                raise _Stopped()
            ds = self.datasets[di]
            state["dataset"] = ds.name
            fr = self._episode_frames(ds, ds.train_split, pos)
            offs = frame_offsets(self.pf.mode, self.pf.stride, self.pf.n, k_)
            samples.append(self._sample_meta(ds, ds.train_split, self._train_idx(ds), pos, t_, k_, offs,
                                             [fr[t_ + o] for o in offs]))
        state["dataset"] = "(decoding)"
        return self._collate(samples, np.arange(i0, i0 + self.batch_size), stop)

    # ------------------------------------------------------------------ iteration
    def _start(self) -> "_Pipeline":
        if self._closed:
            raise RuntimeError("the loader is closed")
        if self._pipe is None:
            start = self.next_index
            self._pipe = _Pipeline(lambda j, stop, st: self._train_batch(j, start, stop, st), self.threads,
                                   self.in_flight, self.stall_timeout)
        return self._pipe

    def next_train(self) -> dict:
        """The next train batch (starts the worker threads on first use)."""
        if self._first_batch is not None:
            return self._first_batch
        self._check_ram()
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
            batch = _pin(batch)
        if self.d.adapter.tf.iterator.cache_first_train_batch:
            self._first_batch = batch
        return batch

    def val_batches(self, limit: int = 0) -> Iterator[dict]:
        """One pass over the fixed validation set (decoded on the calling thread; nothing is rebuilt)."""
        if self.synthetic:
            for j in range(max(1, limit or 1)):
                yield self._synthetic_batch(j * self.batch_size)
            return
        n = len(self.val_samples)
        for j, b0 in enumerate(range(0, n, self.batch_size)):
            if limit and j >= limit:
                return
            self._check_ram()
            chunk = self.val_samples[b0: b0 + self.batch_size]
            yield self._collate(chunk, np.arange(b0, b0 + len(chunk)))

    def browse_batch(self, per_dataset: int = 2) -> dict:
        """A batch with the first ``per_dataset`` fixed validation samples of every dataset (for browsing)."""
        chosen, seen = [], {}
        for smp in self.val_samples:
            if seen.get(smp["ds"], 0) < per_dataset:
                seen[smp["ds"]] = seen.get(smp["ds"], 0) + 1
                chosen.append(smp)
        return self._collate(chosen, np.arange(len(chosen)))

    def num_val_batches(self) -> int:
        return max(1, -(-len(self.val_samples) // self.batch_size)) if not self.synthetic else 1

    def _check_ram(self) -> None:
        if self.ram_floor_mb > 0:
            avail = mem_available_mb()
            if avail < self.ram_floor_mb:
                reason = (f"RAM guard: MemAvailable {avail:.0f} MB < floor {self.ram_floor_mb} MB "
                          "(data.adapter.ram_guard_min_available_mb / training.ram_guard.min_available_mb); "
                          "stopped cleanly before the OOM killer")
                self.close()
                raise RamGuardError(reason)

    @property
    def train(self) -> "_TrainIterable":
        return _TrainIterable(self)

    @property
    def val(self) -> "_ValIterable":
        return _ValIterable(self)

    def __iter__(self):
        return iter(self.train) if self.split == "train" else self.val_batches()

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        """{"next_index": global index of the next train sample, "seed": ...}: enough to resume exactly."""
        return {"next_index": int(self.next_index), "seed": int(self.seed), "batch_size": self.batch_size,
                "world_size": self.world_size}

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
        """Per-stage seconds (summed over threads), realised shares, cache bytes, input-wait seconds."""
        tot = sum(self.counts.values()) or 1
        return {"stage_s": {k: round(v, 4) for k, v in self.timers.s.items()},
                "realised_share": {k: round(v / tot, 4) for k, v in sorted(self.counts.items())},
                "target_share": {x.name: round(x.weight, 4) for x in self.datasets},
                "episode_cache_mb": round(self.cache.bytes / 2 ** 20, 2),
                "episode_cache_hit_rate": round(self.cache.hits / max(1, self.cache.hits + self.cache.misses), 4),
                "val_set_mb": round(getattr(self, "val_bytes", 0) / 2 ** 20, 2),
                "val_samples": len(self.val_samples), "batches": self.batches_out,
                "input_wait_s": round(self.wait_s, 4), "first_batch_s": self.first_batch_s,
                "startup_s": round(self.startup_s, 3), "threads": self.threads}

    def threads_alive(self) -> list[threading.Thread]:
        return [] if self._pipe is None else [t for t in self._pipe.workers if t.is_alive()]

    def close(self, timeout: float = 2.0) -> None:
        """Stop and join every worker thread (within ``timeout`` s), drop buffers, close file handles."""
        if self._pipe is not None:
            self._pipe.close(timeout)
            self._pipe = None
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


class _Stopped(Exception):
    pass


def _pin(batch: dict) -> dict:
    import torch

    if not torch.cuda.is_available():
        return batch
    return {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class _TrainIterable:
    """What ``train_dataloader()`` returns: every ``iter()`` continues the one persistent stream (never rebuilt)."""

    def __init__(self, loader: PairLoader):
        self.loader = loader

    def __iter__(self):
        while True:
            yield self.loader.next_train()


class _ValIterable:
    """The fixed validation set; every ``iter()`` is a fresh pass over the same cached keys."""

    def __init__(self, loader: PairLoader, limit: int = 0):
        self.loader, self.limit = loader, limit

    def __iter__(self):
        return self.loader.val_batches(self.limit)

    def __len__(self) -> int:
        n = self.loader.num_val_batches()
        return min(n, self.limit) if self.limit else n


class _Pipeline:
    """N worker threads build batches 0, 1, 2, ... (each a whole batch: fewer, larger tasks) at most ``in_flight``
    ahead of the consumer; ``get()`` returns them in order."""

    def __init__(self, produce, threads: int, in_flight: int, stall_timeout: float):
        self.produce = produce
        self.in_flight = max(1, in_flight)
        self.stall_timeout = stall_timeout
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.next_assign = 0
        self.consumed = 0
        self.results: dict[int, Any] = {}
        self.state: dict[int, dict] = {}
        self.workers = [threading.Thread(target=self._work, args=(w,), name=f"hlrp-data-{w}", daemon=True)
                        for w in range(max(1, threads))]
        for w in self.workers:
            w.start()

    def _work(self, w: int) -> None:
        st = self.state.setdefault(w, {"dataset": "(idle)"})
        while not self.stop.is_set():
            with self.cond:
                while not self.stop.is_set() and self.next_assign >= self.consumed + self.in_flight:
                    self.cond.wait(0.1)
                if self.stop.is_set():
                    return
                j = self.next_assign
                self.next_assign += 1
            try:
                out = self.produce(j, self.stop, st)
            except _Stopped:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                out = exc
            st["dataset"] = "(idle)"
            with self.cond:
                self.results[j] = out
                self.cond.notify_all()

    def get(self) -> dict:
        deadline = time.monotonic() + self.stall_timeout
        with self.cond:
            while self.consumed not in self.results:
                left = deadline - time.monotonic()
                if left <= 0:
                    busy = sorted({s.get("dataset", "?") for s in self.state.values()})
                    raise StallError(f"no batch for {self.stall_timeout:.0f} s "
                                     f"(data.adapter.tf.mixing.python_prefetch_wait_timeout_s); workers were reading "
                                     f"{busy}")
                if not any(t.is_alive() for t in self.workers):
                    raise RuntimeError("data worker threads are gone")
                self.cond.wait(min(left, 0.5))
            out = self.results.pop(self.consumed)
            self.consumed += 1
            self.cond.notify_all()
        if isinstance(out, BaseException):
            raise out
        return out

    def close(self, timeout: float = 2.0) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self.workers:
            t.join(max(0.0, deadline - time.monotonic()))
        self.results.clear()


# ----------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def open_loader(cfg: Any, split: str = "train", start_index: int = 0):
    """``with open_loader(cfg, split="train") as loader: for batch in loader: ...``; closes (joins threads) on exit.

    ``split="train"`` iterates forever from global sample index ``start_index``; ``split="val"`` makes one pass over
    the fixed validation set.
    """
    loader = PairLoader(cfg, split=split, start_index=start_index)
    try:
        yield loader
    finally:
        loader.close()


def build_datamodule(cfg: Any, rank: Optional[int] = None, world_size: Optional[int] = None):
    """A ``lightning.LightningDataModule`` over one ``PairLoader`` (built once in ``setup``, closed in
    ``teardown``); ``state_dict``/``load_state_dict`` carry the train stream's next sample index for exact resume.
    ``rank``/``world_size`` default to the attached trainer's (DDP: each rank reads its own shard)."""
    return PairDataModule(cfg, rank=rank, world_size=world_size)


def _datamodule_base():
    import lightning as L

    return L.LightningDataModule


class PairDataModule(_datamodule_base()):  # type: ignore[misc]
    """Lightning DataModule: ``train_dataloader`` = the persistent train stream, ``val_dataloader`` = the fixed,
    cached val set (limited to ``training.validation.limit_batches`` when set).

    ``rank``/``world_size``: the train-stream shard (see ``PairLoader``); ``None`` takes them from the attached
    trainer at ``setup`` (``trainer.global_rank`` / ``trainer.world_size``), else 0 / 1. Validation is not sharded:
    every rank evaluates the same fixed set."""

    def __init__(self, cfg: Any, rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__()
        self.cfg = cfg
        self.loader: Optional[PairLoader] = None
        self._start_index = 0
        self.rank, self.world_size = rank, world_size

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        rank = self.rank if self.rank is not None else int(getattr(trainer, "global_rank", 0) or 0)
        world = self.world_size if self.world_size is not None else int(getattr(trainer, "world_size", 1) or 1)
        return rank, world

    def setup(self, stage: Optional[str] = None) -> None:
        if self.loader is None:
            rank, world = self._shard()
            self.loader = PairLoader(self.cfg, start_index=self._start_index, rank=rank, world_size=world)

    def train_dataloader(self):
        self.setup()
        return self.loader.train

    def val_dataloader(self):
        self.setup()
        tr = getattr(self.cfg, "training", None)
        limit = int(tr.validation.limit_batches) if tr is not None else 0
        return _ValIterable(self.loader, limit)

    def state_dict(self) -> dict:
        if self.loader is not None:
            return self.loader.state_dict()
        return {"next_index": int(self._start_index)}

    def load_state_dict(self, state_dict: dict) -> None:
        self._start_index = int(state_dict.get("next_index", 0))
        if self.loader is not None:
            self.loader.seek(self._start_index)

    def teardown(self, stage: Optional[str] = None) -> None:
        if self.loader is not None:
            self.loader.close()
            self.loader = None
