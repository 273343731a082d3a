"""Lazy episode addressing: a split is usable once its ``dataset_info.json`` is read (docs/data_at_scale.md).

An episode is addressed as (shard, ordinal): position p of a split lies in shard s where ``cum[s] <= p < cum[s+1]``
(``cum`` = cumulative ``shardLengths``, one int per shard). A shard's record offsets come from a header-only scan
of its TFRecord framing (:func:`hlrp_core.data.tfrecord.scan_offsets`) that goes only as far as the highest ordinal
sampled so far (a prefix; a later, higher ordinal continues it) and is written into a memory-mapped cache file;
episode lengths are written there the first time an episode is read.
All ranks and workers on a node map the same files, so the page cache holds them once (PSS counts them once).

Cache layout, one directory per (dataset, version, split, dataset_info.json content):
``records.i64`` [E, 2] (payload offset, length), ``lengths.i32`` [E] (T; 0 = not read yet), ``failed.u8`` [E]
(1 = read, unsuccessful episode) and ``shards.i64`` [S, 3] (file size and mtime_ns at scan time, records scanned
so far; 0 = not scanned). The files are created sparse at full size, so an unscanned shard costs no disk and no
memory; writers race benignly (every writer writes the same values, and a shard's scanned count is written only
after its offsets; a smaller count written late only makes a later reader scan again).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from .sources import ResolvedSource
from .tfrecord import CorruptShardError, is_remote, scan_offsets

log = logging.getLogger(__name__)

INDEX_FORMAT = 4


def _mapped(path: Path, dtype, shape: tuple) -> np.ndarray:
    """A shared read-write memory map of ``path`` at ``shape`` (created sparse and zero-filled when absent)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < nbytes:
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)
    if nbytes == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r+", shape=shape)


def split_cache_key(src: ResolvedSource, split: str) -> str:
    """Key of a split's cache: path, version, split and its shard files and lengths (from dataset_info.json);
    no shard is stat'ed at startup (a changed shard is caught by its size/mtime check when it is first used)."""
    lay = src.splits[split]
    h = hashlib.sha1(f"{INDEX_FORMAT}|{src.path}|{src.version}|{split}".encode())
    for f, n in zip(lay.files, lay.shard_lengths):
        h.update(f"|{os.path.basename(f)}:{n}".encode())
    return h.hexdigest()[:16]


class ShardedSplit:
    """One split of one dataset, addressed lazily by (shard, ordinal).

    Args:
        name: Registry name (for messages and the cache directory).
        src: The resolved source (shard files and shard lengths from dataset_info.json).
        split: Split name.
        cache_dir: Directory of the on-disk cache; None = process-private arrays (nothing is shared).
    """

    def __init__(self, name: str, src: ResolvedSource, split: str, cache_dir: Optional[Path]):
        lay = src.splits[split]
        self.name, self.split = name, split
        self.files = list(lay.files)
        self.shard_lengths = np.asarray(lay.shard_lengths, np.int64)
        self.cum = np.concatenate([[0], np.cumsum(self.shard_lengths)]).astype(np.int64)
        E, S = int(self.cum[-1]), len(self.files)
        self.num_episodes = E
        # one lock per shard (striped): scans of different shards run concurrently on the I/O threads
        self._locks = [threading.Lock() for _ in range(min(S, 64) or 1)]
        self._known: dict[int, int] = {}  # shard -> records whose offsets this process has checked to be known
        self.cache_path: Optional[Path] = None
        if cache_dir is not None:
            d = Path(cache_dir) / f"{name}@{src.version}-{split}-{split_cache_key(src, split)}"
            try:
                d.mkdir(parents=True, exist_ok=True)
                self.records = _mapped(d / "records.i64", np.int64, (E, 2))
                self.lengths = _mapped(d / "lengths.i32", np.int32, (E,))
                self.failed = _mapped(d / "failed.u8", np.uint8, (E,))
                self.shards = _mapped(d / "shards.i64", np.int64, (S, 3))
                self.cache_path = d
                return
            except OSError as exc:
                log.warning("index cache %s not writable (%s): offsets are kept in this process only", d, exc)
        # np.zeros is calloc'd: untouched pages are never resident
        self.records = np.zeros((E, 2), np.int64)
        self.lengths = np.zeros(E, np.int32)
        self.failed = np.zeros(E, np.uint8)
        self.shards = np.zeros((S, 3), np.int64)

    # ------------------------------------------------------------------ addressing
    def locate(self, pos: int) -> tuple[int, int]:
        """(shard, ordinal) of episode position ``pos``."""
        s = int(np.searchsorted(self.cum, pos, side="right")) - 1
        return s, int(pos - self.cum[s])

    def shard_state(self, s: int) -> tuple[int, int]:
        path = self.files[s]
        if is_remote(path):
            from .tfrecord import file_size

            return file_size(path), 1
        st = os.stat(path)
        return int(st.st_size), int(st.st_mtime_ns)

    def ensure_shard(self, s: int, upto: Optional[int] = None) -> bool:
        """Make the offsets of shard ``s``'s records 0..``upto`` (None = all) known, scanning only the headers not
        in the cache yet for this file; True when it scanned."""
        want = int(self.shard_lengths[s])
        need = want if upto is None else min(int(upto) + 1, want)
        if self._known.get(s, -1) >= need:
            return False
        with self._locks[s % len(self._locks)]:
            have = self._known.get(s)
            if have is None:  # first use in this process: is the cache's scan of this very file?
                state = self.shard_state(s)
                if tuple(int(x) for x in self.shards[s, :2]) == state:
                    have = int(self.shards[s, 2])
                else:
                    a, b = int(self.cum[s]), int(self.cum[s + 1])
                    self.shards[s] = 0
                    self.lengths[a:b] = 0  # lengths of a rewritten shard are unknown again
                    self.failed[a:b] = 0
                    self.shards[s, :2] = state
                    have = 0
            if have >= need:
                self._known[s] = have
                return False
            path, a = self.files[s], int(self.cum[s])
            start = 0 if have == 0 else int(self.records[a + have - 1].sum()) + 4
            offs, lens = scan_offsets(path, start=start, count=need - have)
            got = have + len(offs)
            end = int(offs[-1] + lens[-1] + 4) if len(offs) else start
            if got < need or (got == want and end != int(self.shards[s, 0])):
                more = got if got < need else f"more than {want}"
                raise CorruptShardError(f"{path}: holds {more} episodes but dataset_info.json says {want}; the "
                                        "shard is corrupt or from another build: re-sync it")
            self.records[a + have:a + got, 0] = offs
            self.records[a + have:a + got, 1] = lens
            if isinstance(self.records, np.memmap):
                self.records.flush()
            self.shards[s, 2] = got
            self._known[s] = got
            return True

    def record(self, pos: int) -> tuple[str, int, int]:
        """(shard path, payload offset, payload length) of episode ``pos`` (scans its shard on first use)."""
        s, o = self.locate(pos)
        self.ensure_shard(s, o)
        off, n = self.records[pos]
        return self.files[s], int(off), int(n)

    def length(self, pos: int) -> int:
        """T of episode ``pos`` when it was read before (by any process sharing the cache), else 0."""
        return int(self.lengths[pos])

    def set_length(self, pos: int, T: int) -> None:
        self.lengths[pos] = T

    def lengths_known(self, lo: int, hi: int) -> bool:
        return bool(hi <= lo or (self.lengths[lo:hi] > 0).all())

    def scanned_shards(self) -> int:
        """Shards whose headers were scanned at least in part."""
        return int((self.shards[:, 2] > 0).sum())

    def cache_bytes(self) -> int:
        return int(self.records.nbytes + self.lengths.nbytes + self.shards.nbytes)
