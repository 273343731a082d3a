"""Handing a stop to a training that runs somewhere else (floor 2): the ``stop_request`` file, and
``StopForwarder``, the signal handlers of ``hlrp run`` (docs/ROBUSTNESS.md).

A papermill kernel is a separate process in its own session: SIGINT/SIGTERM (Ctrl-C, ``scancel``, a time limit) and
SIGUSR1 (the SLURM ``--signal`` lead) reach ``hlrp run`` only. ``StopForwarder`` turns the first signal into
``<run>/stop_request`` ({kind, detail, at}); the training's ``RunGuard`` (``hlrp_core.training.interrupts``) polls
it once a second, saves ``ckpt/last.ckpt`` at the current step, marks the run ``FAILED: interrupted at step N
(resumable)`` and raises, which ends the notebook and papermill shuts the kernel down. A kernel that does not end
within ``grace_s`` (no training running, a stuck cell) or a second SIGINT is killed, and the run is marked FAILED
with the signal. SIGUSR1 is a warning, not a kill: its grace is ``time_limit_grace_s`` (the job passes nearly all of
the lead, see ``time_limit_grace``), so a signal that lands before the first step, in a long validation or in the
cells after the training still ends in a checkpoint or a finished run; a SIGTERM or SIGINT after it shortens the
grace to ``grace_s`` again. A kill -9 of ``hlrp run`` itself cannot be handled: its ``status`` stays RUNNING, its
heartbeat goes stale, and ``hlrp runs`` shows it LOST.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

from . import runs
from .io import atomic_write_json

STOP_FILE = "stop_request"
STOP_GRACE_S = 25.0  # below SLURM's default KillWait (30 s) between SIGTERM and SIGKILL
SIGNAL_KIND = {signal.SIGINT: "interrupted", signal.SIGTERM: "interrupted", signal.SIGUSR1: "time_limit"}
REQUEUE_MARGIN_S = 20.0  # what the job needs after the kernel ended (status, segments, scontrol requeue)


def time_limit_grace(lead_s: float) -> float:
    """How long the kernel may run on after the time-limit lead: all of the lead but the job's own margin."""
    return max(STOP_GRACE_S, float(lead_s) - REQUEUE_MARGIN_S)


def request_stop(run_dir: str | Path, kind: str = "interrupted", detail: str = "") -> Path:
    """Ask the training writing ``run_dir`` (in any process) to checkpoint and stop at its next step end."""
    return atomic_write_json(Path(run_dir) / STOP_FILE, {"kind": kind, "detail": detail, "at": time.time()})


def read_stop_request(run_dir: str | Path) -> Optional[dict]:
    try:
        return json.loads((Path(run_dir) / STOP_FILE).read_text())
    except (OSError, ValueError):
        return None


def clear_stop_request(run_dir: str | Path) -> None:
    try:
        (Path(run_dir) / STOP_FILE).unlink()
    except OSError:
        pass


def keep_or_fail(run_dir: Path, reason: str) -> None:
    """Mark the run FAILED with ``reason`` unless the kernel already wrote a FAILED status with its own reason."""
    state, old = runs.read_status(run_dir)
    if state == runs.FAILED and old:
        return
    runs.write_status(run_dir, runs.FAILED, reason)


def _kill_children(sig: int = signal.SIGKILL) -> int:
    import psutil

    n = 0
    for child in psutil.Process().children(recursive=True):
        try:
            child.send_signal(sig)
            n += 1
        except psutil.Error:
            pass
    return n


class StopForwarder:
    """While installed (main thread only): SIGINT/SIGTERM/SIGUSR1 -> ``stop_request``; after the grace (``grace_s``,
    or ``time_limit_grace_s`` for SIGUSR1) or on a second SIGINT the kernel (every child process) is killed so
    papermill returns."""

    def __init__(self, run_dir: Path, grace_s: float = STOP_GRACE_S, log: Optional[logging.Logger] = None,
                 time_limit_grace_s: Optional[float] = None):
        self.run_dir, self.grace_s = Path(run_dir), float(grace_s)
        self.time_limit_grace_s = self.grace_s if time_limit_grace_s is None else float(time_limit_grace_s)
        self.log = log or logging.getLogger("hlrp.launch")
        self.signum: int = 0
        self.signal_name = ""
        self.killed = False
        self.granted_s = 0.0  # the grace in force (the kill comes at the first signal's time plus this)
        self._old: dict = {}
        self._done = threading.Event()
        self._deadline = 0.0
        self._stopping = False  # a SIGINT/SIGTERM came (SIGUSR1 alone is a warning)

    def install(self) -> "StopForwarder":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_KIND:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        self._done.set()
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        clear_stop_request(self.run_dir)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum:
            if signum == signal.SIGUSR1:  # a repeated lead changes nothing
                return
            if self._stopping:
                if signum == signal.SIGINT:  # a second Ctrl-C: stop now
                    self.log.error("second %s: killing the kernel now", name)
                    self._kill()
                return
            self._stopping = True  # the limit itself, or scancel, after the lead: the short grace again
            self._deadline = min(self._deadline, time.monotonic() + self.grace_s)
            self.granted_s = min(self.granted_s, self.grace_s)
            self.log.warning("%s after the time-limit lead: the kernel is killed if it has not ended within %g s",
                             name, self.grace_s)
            return
        self.signum, self.signal_name, self._stopping = signum, name, signum != signal.SIGUSR1
        self.granted_s = self.time_limit_grace_s if signum == signal.SIGUSR1 else self.grace_s
        self._deadline = time.monotonic() + self.granted_s
        kind = SIGNAL_KIND.get(signum, "interrupted")
        request_stop(self.run_dir, kind, f"signal {name} to hlrp run")
        self.log.warning("%s: asked the training to checkpoint and stop (%s); the kernel is killed if it has not "
                         "ended within %g s", name, self.run_dir / STOP_FILE, self.granted_s)
        threading.Thread(target=self._watchdog, name="hlrp-stop-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        while not self._done.wait(min(1.0, max(0.0, self._deadline - time.monotonic()))):
            if time.monotonic() >= self._deadline:
                self.log.error("the kernel did not end within %g s of %s: killing it", self.granted_s,
                               self.signal_name)
                self._kill()
                return

    def _kill(self) -> None:
        self.killed = True
        _kill_children()

    def unclean_reason(self) -> str:
        last = self.run_dir / "ckpt" / "last.ckpt"
        ckpt = f"resumable from {last}" if last.exists() else "no checkpoint was written"
        return (f"interrupted by {self.signal_name}: the kernel did not checkpoint within {self.granted_s:g} s and "
                f"was killed; {ckpt}")


# ---------------------------------------------------------------- how the kernel ended (evidence, not log words)
class KernelWatch:
    """Keeps the kernel's process (through a papermill ``kernel_manager_class``) and the memory cgroup's OOM-kill
    counter, so a dead kernel is explained by its exit signal and the OOM counter rather than by guesswork."""

    def __init__(self):
        from .sysmem import oom_kill_count

        self.procs: list = []
        self.oom_before = oom_kill_count()

    def kernel_manager_class(self):
        from jupyter_client import AsyncKernelManager

        watch = self

        class WatchedKernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd, **kw):
                await super()._async_launch_kernel(kernel_cmd, **kw)
                proc = getattr(self.provisioner, "process", None)
                if proc is not None:
                    watch.procs.append(proc)

        return WatchedKernelManager

    def evidence(self) -> dict:
        """{exit_code, exit_signal, oom_kills} of the last kernel (None where unknown)."""
        from .sysmem import oom_kill_count

        code = None
        if self.procs:
            proc = self.procs[-1]
            try:
                code = proc.poll()
            except Exception:  # noqa: BLE001 - a reaped handle keeps its returncode
                code = getattr(proc, "returncode", None)
        after = oom_kill_count()
        oom = None if after is None or self.oom_before is None else after - self.oom_before
        sig = signal.Signals(-code).name if isinstance(code, int) and code < 0 else None
        return {"exit_code": code, "exit_signal": sig, "oom_kills": oom}

    def dead_kernel_reason(self) -> str:
        ev = self.evidence()
        parts = []
        if ev["exit_signal"]:
            parts.append(f"kernel ended by {ev['exit_signal']}")
        elif ev["exit_code"] is not None:
            parts.append(f"kernel exit code {ev['exit_code']}")
        else:
            parts.append("kernel exit status unknown")
        if ev["oom_kills"]:
            parts.append(f"memory cgroup oom_kill events +{ev['oom_kills']}: killed by the OOM killer")
        elif ev["oom_kills"] == 0:
            parts.append("no OOM kill counted by the memory cgroup")
        return "; ".join(parts)
