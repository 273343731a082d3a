"""Clear errors for writes that the disk refuses (floor 1): a full disk, a read-only or non-writable output root.

``OutputWriteError`` names the path, the reason (``errno``) and the free space of the filesystem it is on, and the
fix; run code turns it into ``status`` FAILED with that message (``hlrp_core.runs``, ``hlrp_core.launch``).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class OutputWriteError(OSError):
    """A file of the run could not be written; the message names the path, the cause, the free space and the fix."""


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent), or None when unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_write_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def write_error(path: str | os.PathLike, exc: OSError, what: str = "file") -> OutputWriteError:
    """``exc`` (ENOSPC, EROFS, EACCES, ...) as an ``OutputWriteError`` naming ``path`` and the free space."""
    free = free_bytes(path)
    free_txt = "unknown" if free is None else f"{free / 2**20:.1f} MB"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause, fix = "the disk (or quota) is full", "free space there or point HLRP_OUTPUT_ROOT at a larger disk"
    elif exc.errno == errno.EROFS:
        cause, fix = "the filesystem is read-only", "point HLRP_OUTPUT_ROOT at a writable directory"
    else:
        cause, fix = "permission denied", "make it writable or point HLRP_OUTPUT_ROOT at a directory you own"
    err = OutputWriteError(exc.errno, f"cannot write {what} {path}: {cause} ({os.strerror(exc.errno or 0)}); "
                                      f"free space there: {free_txt}; {fix}")
    err.filename = str(path)
    return err


def check_writable_dir(path: str | os.PathLike, what: str = "output root") -> None:
    """Raise ``OutputWriteError`` when ``path`` (created if missing) cannot hold a new file."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".hlrp_write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if is_write_error(exc):
            raise write_error(p, exc, what) from None
        raise
