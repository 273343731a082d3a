"""Measuring one rung from inside its notebook: steady-state speed, memory, and a clean status.

    metrics = hlrp_core.ladder.measure.measure_loop(lambda: batches(cfg), cfg, log=run.log)
    run.finish(metrics)

What is measured (every key below is always present in the returned dict, so the report never meets a hole):

| key | meaning |
|---|---|
| ``ladder/status`` | ``pass``, ``fail`` (``ladder/error`` says why), ``ram-guard`` (stopped by the RAM guard before the kernel would kill it), ``oom`` (``MemoryError``), ``timeout`` |
| ``ladder/steps_per_s`` | steps per second over the window after warm-up (warm-up excluded) |
| ``ladder/samples_per_s`` | samples per second over the same window |
| ``ladder/first_batch_s`` | from building the iterator to the first batch |
| ``ladder/input_wait_frac`` | share of the window spent blocked in ``next()`` (1.0 for a loader-only benchmark) |
| ``ladder/peak_rss_mb`` / ``ladder/min_available_mb`` | sampled in a background thread (process + children RSS, MemAvailable) |
| ``ladder/peak_gpu_mem_mb`` | ``torch.cuda.max_memory_allocated`` when torch is loaded and a GPU is present, else 0 |
| ``ladder/warmup_steps`` / ``ladder/window_steps`` | the split of the run; ``window_steps = steps - warmup`` |
| ``ladder/ram_floor_mb`` | the RAM guard floor in force (0 = off) |
| ``ladder/stray_threads`` / ``ladder/stray_children`` | threads / child processes left alive after the loop (must be 0) |

Sizing: ``steps`` defaults to ``training.max_steps`` (the smoke profile gives 20); warm-up is ``max(2, steps // 5)``
steps. The RAM floor is ``max(training.ram_guard.min_available_mb, data.adapter.ram_guard_min_available_mb)``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Optional

import psutil

from ..runs import mem_snapshot

PASS, FAIL, RAM_GUARD, OOM, TIMEOUT = "pass", "fail", "ram-guard", "oom", "timeout"
STATUSES = (PASS, FAIL, "invalid-config", RAM_GUARD, OOM, TIMEOUT)
KEYS = ("ladder/status", "ladder/error", "ladder/steps_per_s", "ladder/samples_per_s", "ladder/first_batch_s",
        "ladder/input_wait_frac", "ladder/peak_rss_mb", "ladder/min_available_mb", "ladder/peak_gpu_mem_mb",
        "ladder/warmup_steps", "ladder/window_steps", "ladder/batch_size", "ladder/ram_floor_mb",
        "ladder/stray_threads", "ladder/stray_children", "ladder/wall_s")


class RamGuardTripped(RuntimeError):
    """MemAvailable fell below the configured floor; the rung stopped itself."""


def ram_floor_mb(cfg: Any) -> int:
    floors = [0]
    for path in (("training", "ram_guard", "min_available_mb"), ("data", "adapter", "ram_guard_min_available_mb")):
        obj = cfg
        try:
            for p in path:
                obj = getattr(obj, p)
            floors.append(int(obj or 0))
        except AttributeError:
            pass
    return max(floors)


def warmup_for(steps: int) -> int:
    return min(max(2, steps // 5), max(0, steps - 1))


def gpu_peak_mb() -> float:
    torch = sys.modules.get("torch")
    if torch is None:
        return 0.0
    try:
        if torch.cuda.is_available():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except Exception:  # pragma: no cover - no GPU here
        pass
    return 0.0


class MemoryWatch:
    """Background sampler of RSS (process + children) and MemAvailable, with a RAM-guard flag.

    The flag is raised when MemAvailable < ``floor_mb``; the measuring loop checks it between steps and stops
    (``RamGuardTripped``) long before the kernel's OOM killer would act.
    """

    def __init__(self, floor_mb: int = 0, interval_s: float = 0.1):
        self.floor_mb, self.interval_s = int(floor_mb), interval_s
        self.peak_rss_mb, self.min_available_mb = 0.0, float("inf")
        self.tripped: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hlrp-ladder-memwatch", daemon=True)

    def sample(self) -> None:
        snap = mem_snapshot()
        self.peak_rss_mb = max(self.peak_rss_mb, snap["rss_mb"])
        self.min_available_mb = min(self.min_available_mb, snap["available_mb"])
        if self.floor_mb and snap["available_mb"] < self.floor_mb and not self.tripped:
            self.tripped = (f"RAM guard: MemAvailable {snap['available_mb']:.0f} MB < floor {self.floor_mb} MB "
                            "(training.ram_guard.min_available_mb / data.adapter.ram_guard_min_available_mb)")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def check(self) -> None:
        if self.tripped:
            raise RamGuardTripped(self.tripped)

    def __enter__(self) -> "MemoryWatch":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sample()


def classify(exc: BaseException) -> str:
    """Map an exception to a rung status."""
    name = type(exc).__name__
    if isinstance(exc, RamGuardTripped) or "RamGuard" in name:
        return RAM_GUARD
    if isinstance(exc, MemoryError) or "OutOfMemory" in name or "out of memory" in str(exc).lower():
        return OOM
    if isinstance(exc, TimeoutError) or "Timeout" in name:
        return TIMEOUT
    return FAIL


def _close(it: Any) -> None:
    for name in ("close", "shutdown"):
        fn = getattr(it, name, None)
        if callable(fn):
            try:
                fn()
            except Exception:  # pragma: no cover - closing must never mask the real result
                pass
            return


def measure_loop(make_batches: Callable[[], Iterable[Any]], cfg: Any, *, steps: Optional[int] = None,
                 warmup: Optional[int] = None, step_fn: Optional[Callable[[Any], Any]] = None,
                 batch_size: Optional[int] = None, log: Optional[logging.Logger] = None,
                 deadline_s: Optional[float] = None) -> dict[str, Any]:
    """Run ``steps`` batches from ``make_batches()`` (optionally through ``step_fn``) and measure them.

    Never raises for a failing rung: the exception becomes ``ladder/status`` + ``ladder/error`` (logged with its
    traceback), so the run directory always holds a complete ``metrics.json``. The iterator is closed and the
    background sampler joined before returning.
    """
    log = log or logging.getLogger("hlrp.ladder")
    steps = int(steps if steps is not None else getattr(getattr(cfg, "training", None), "max_steps", 20))
    warmup = warmup_for(steps) if warmup is None else int(warmup)
    bs = int(batch_size if batch_size is not None else cfg.data.loader.batch_size)
    floor = ram_floor_mb(cfg)
    threads_before = {t.ident for t in threading.enumerate()}
    children_before = {c.pid for c in psutil.Process().children(recursive=True)}
    out: dict[str, Any] = {k: 0.0 for k in KEYS}
    out.update({"ladder/status": PASS, "ladder/error": "", "ladder/warmup_steps": warmup,
                "ladder/window_steps": max(0, steps - warmup), "ladder/batch_size": bs, "ladder/ram_floor_mb": floor})
    t_start = time.perf_counter()
    ends: list[float] = []
    waits: list[float] = []
    sizes: list[int] = []
    watch = MemoryWatch(floor)
    it = None
    with watch:
        try:
            watch.check()  # a floor above free memory stops the rung before anything is built
            it = iter(make_batches())
            t_first = None
            for i in range(steps):
                watch.check()
                if deadline_s and time.perf_counter() - t_start > deadline_s:
                    raise TimeoutError(f"rung exceeded its deadline of {deadline_s:.0f} s after {i} steps")
                t0 = time.perf_counter()
                batch = next(it)
                t1 = time.perf_counter()
                if t_first is None:
                    t_first = t1 - t_start
                if step_fn is not None:
                    step_fn(batch)
                ends.append(time.perf_counter())
                waits.append(t1 - t0)
                sizes.append(_batch_len(batch, bs))
            out["ladder/first_batch_s"] = round(t_first or 0.0, 4)
        except StopIteration:
            out["ladder/status"], out["ladder/error"] = FAIL, f"the loader ended after {len(ends)} of {steps} batches"
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a status
            if isinstance(exc, KeyboardInterrupt):
                raise
            out["ladder/status"], out["ladder/error"] = classify(exc), f"{type(exc).__name__}: {exc}"
            log.error("rung stopped: %s", out["ladder/error"], exc_info=not isinstance(exc, RamGuardTripped))
        finally:
            if it is not None:
                _close(it)
            del it
    if out["ladder/status"] == PASS and len(ends) > warmup:
        t_w0 = ends[warmup - 1] if warmup > 0 else t_start
        span = ends[-1] - t_w0
        n = len(ends) - warmup
        out["ladder/steps_per_s"] = round(n / span, 4) if span > 0 else 0.0
        out["ladder/samples_per_s"] = round(sum(sizes[warmup:]) / span, 3) if span > 0 else 0.0
        out["ladder/input_wait_frac"] = round(min(1.0, sum(waits[warmup:]) / span), 4) if span > 0 else 0.0
    out["ladder/peak_rss_mb"] = round(watch.peak_rss_mb, 1)
    out["ladder/min_available_mb"] = round(watch.min_available_mb, 1)
    out["ladder/peak_gpu_mem_mb"] = gpu_peak_mb()
    out["ladder/wall_s"] = round(time.perf_counter() - t_start, 3)
    time.sleep(0.05)
    stray = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    out["ladder/stray_threads"] = len(stray)
    out["ladder/stray_children"] = len([c for c in psutil.Process().children(recursive=True)
                                        if c.pid not in children_before])
    if stray:
        log.warning("threads still alive after the rung: %s", [t.name for t in stray])
    log.info("rung %s: %.3f steps/s, %.1f samples/s, first batch %.2f s, peak RSS %.0f MB, min avail %.0f MB",
             out["ladder/status"], out["ladder/steps_per_s"], out["ladder/samples_per_s"], out["ladder/first_batch_s"],
             out["ladder/peak_rss_mb"], out["ladder/min_available_mb"])
    return out


def _batch_len(batch: Any, default: int) -> int:
    try:
        if isinstance(batch, dict):
            first = batch.get("frames", next(iter(batch.values())))
        else:
            first = batch
        return int(len(first))
    except Exception:
        return default


def iterate(n: int, fn: Callable[[int], Any]) -> Iterator[Any]:
    """A tiny helper for callers that produce batches by calling a function."""
    for i in range(n):
        yield fn(i)
