"""The loader's worker machinery: one shared pool of threads that builds whole batches in order, a byte-bounded
LRU of parsed episodes (encoded frames + labels, never decoded frames), per-stage timers and the RAM guard.

Design (docs/data_at_scale.md): ``data.adapter.threads`` worker threads build whole batches (fewer, larger tasks)
at most ``batches_in_flight`` ahead of the consumer; ``close()`` stops and joins every thread within 2 s.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any


class RamGuardError(MemoryError):
    """MemAvailable fell below the configured floor; the loader stopped cleanly. The message is the reason."""


class StallError(TimeoutError):
    """No batch within ``python_prefetch_wait_timeout_s``; names the dataset the workers were reading."""


def mem_available_mb() -> float:
    """MiB this process may still allocate: the smaller of MemAvailable and its memory cgroup's headroom (a SLURM
    ``--mem`` job is killed at its cgroup limit with plenty of host memory free)."""
    from ..sysmem import available_bytes

    return available_bytes() / 2 ** 20


def ram_guard(floor_mb: float, on_stop=None) -> None:
    """Raise ``RamGuardError`` (after ``on_stop()``) when the memory headroom is below ``floor_mb`` (0 = off); the
    reason names the limit that set the headroom (the cgroup's limit and usage, or the host's MemAvailable)."""
    if floor_mb <= 0:
        return
    from ..sysmem import headroom

    room = headroom()
    if room.available / 2 ** 20 < floor_mb:
        if on_stop is not None:
            on_stop()
        raise RamGuardError(f"RAM guard: memory headroom {room.available / 2 ** 20:.0f} MB < floor {floor_mb} MB "
                            f"({room.describe()}); floor set by data.adapter.ram_guard_min_available_mb / "
                            "training.ram_guard.min_available_mb; stopped cleanly before the OOM killer")


class Stopped(Exception):
    pass


def pin(batch: dict) -> dict:
    import torch

    if not torch.cuda.is_available():
        return batch
    return {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class EpisodeCache:
    """Byte-bounded LRU of {episode key: Episode} (the selected camera's encoded frames and the labels)."""

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

    def contains(self, key) -> bool:
        with self._lock:
            return key in self._d

    def put(self, key, ep) -> None:
        size = ep.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._d:
                return
            self._d[key] = ep
            self.bytes += size
            while self.bytes > self.max_bytes and self._d:
                _, old = self._d.popitem(last=False)
                self.bytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.bytes = 0


class Timers:
    def __init__(self):
        self._lock = threading.Lock()
        self.s: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        with self._lock:
            self.s[name] = self.s.get(name, 0.0) + dt


class Pipeline:
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
            except Stopped:
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


class TrainIterable:
    """What ``train_dataloader()`` returns: every ``iter()`` continues the one persistent stream (never rebuilt)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        while True:
            yield self.loader.next_train()


class ValIterable:
    """The fixed validation set; every ``iter()`` is a fresh pass over the same cached keys."""

    def __init__(self, loader, limit: int = 0):
        self.loader, self.limit = loader, limit

    def __iter__(self):
        return self.loader.val_batches(self.limit)

    def __len__(self) -> int:
        n = self.loader.num_val_batches()
        return min(n, self.limit) if self.limit else n
