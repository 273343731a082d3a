"""Progress where the researcher looks (docs/FEEDBACK.md section 3): a widget bar in an interactive kernel, a periodic
one-line progress in the log everywhere else (papermill, SLURM, CI, a terminal pipe).

``mode(setting)`` is the one home of that decision (``logging.progress``: ``auto`` / ``bar`` / ``line`` / ``off``);
the trainer (``hlrp_core.training.progress``) and long data passes (:func:`track`) both use it.

Headless = any of: ``HLRP_HEADLESS`` set (``hlrp run`` sets it for the papermill kernel it starts), a SLURM job
(``SLURM_JOB_ID``), ``CI`` set, or no IPython kernel at all (a plain Python process).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, Optional

MODES = ("auto", "bar", "line", "off")
HEADLESS_ENV = "HLRP_HEADLESS"


def headless(environ: Optional[dict] = None) -> bool:
    """True under ``hlrp run`` (papermill), SLURM or CI: nobody watches a bar there, the log is read instead."""
    env = os.environ if environ is None else environ
    return bool(env.get(HEADLESS_ENV) or env.get("SLURM_JOB_ID") or env.get("CI"))


def in_kernel() -> bool:
    """True inside a Jupyter (ZMQ) IPython kernel, where ``tqdm.auto`` renders the notebook widget bar."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def mode(setting: str = "auto", environ: Optional[dict] = None, terminal: bool = False) -> str:
    """``bar`` / ``line`` / ``off`` for a ``logging.progress`` setting (``auto``: bar in an interactive kernel, and
    with ``terminal`` also when stderr is a terminal: a CLI pass that nobody reads a log of)."""
    if setting not in MODES:
        raise ValueError(f"logging.progress={setting!r}: expected one of {MODES}")
    if setting != "auto":
        return setting
    watched = in_kernel() or (terminal and sys.stderr.isatty())
    return "bar" if watched and not headless(environ) else "line"


def cli_progress_lines() -> None:
    """For a CLI pass: ``[Progress]`` lines (when stderr is no terminal) reach stderr; other loggers stay at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("hlrp.progress").setLevel(logging.INFO)


def fmt_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``; unknown -> ``?``."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class LineReporter:
    """Rate-limited one-line progress: ``[Progress] <what> 120/1500 (8%) | 2.31 it/s | ETA 9m57s``.

    ``update(done)`` logs at most once per ``every_s`` seconds (and always at ``done == total`` via ``close``); the
    rate is measured over the whole pass, so the ETA settles instead of jumping with one slow item."""

    def __init__(self, what: str, total: Optional[int], every_s: float = 30.0, log: Optional[logging.Logger] = None,
                 unit: str = "it", start: int = 0):
        self.what, self.total, self.every, self.unit = what, total, float(every_s), unit
        self.log = log or logging.getLogger("hlrp.progress")
        self.t0 = self.last = time.monotonic()
        self.start, self.done, self.lines = start, start, 0

    def line(self, done: int, extra: str = "") -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (done - self.start) / elapsed
        parts = [f"[Progress] {self.what} {done}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100.0 * done / self.total:.0f}%)"
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total:
            parts.append("ETA " + fmt_duration((self.total - done) / rate if rate > 0 else float("inf")))
        parts.append("elapsed " + fmt_duration(elapsed))
        if extra:
            parts.append(extra)
        return " | ".join(parts)

    def update(self, done: int, extra: str = "", force: bool = False) -> bool:
        """Log a line when ``every_s`` passed since the last one (or ``force``); returns whether it logged."""
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return False
        self.last = now
        self.lines += 1
        self.log.info(self.line(done, extra))
        return True

    def close(self, extra: str = "") -> None:
        self.update(self.done, extra, force=True)


def track(iterable: Iterable[Any], total: Optional[int] = None, what: str = "items", *, setting: str = "auto",
          every_s: float = 30.0, log: Optional[logging.Logger] = None, unit: str = "it") -> Iterator[Any]:
    """Iterate with progress (a :class:`Ticker` per item). For long data passes (index, statistics, mirror build)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    tick = Ticker(total, what, setting=setting, every_s=every_s, log=log, unit=unit)
    for item in iterable:
        yield item
        tick()
    tick.close()


class Ticker:
    """Progress of a pass, also one whose items finish out of order on a thread pool (statistics, verify): call it
    once per finished item (thread-safe), ``close()`` at the end. The widget bar in an interactive kernel, a tqdm bar
    on a terminal, periodic ``[Progress]`` lines otherwise (``mode(setting, terminal=True)``)."""

    def __init__(self, total: Optional[int], what: str, *, setting: str = "auto", every_s: float = 30.0,
                 log: Optional[logging.Logger] = None, unit: str = "it"):
        m = mode(setting, terminal=True)
        self._lock, self.n = threading.Lock(), 0
        self._bar = self._rep = None
        if m == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, unit=unit)
        elif m == "line":
            self._rep = LineReporter(what, total, every_s, log, unit)

    def __call__(self) -> None:
        with self._lock:
            self.n += 1
            if self._bar is not None:
                self._bar.update(1)
            elif self._rep is not None:
                self._rep.update(self.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._rep is not None:
            self._rep.done = self.n
            self._rep.close()
