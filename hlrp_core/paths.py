"""Where things live. Every path is built from REPO_ROOT, never from the current directory: papermill starts the
kernel in its own cwd while JupyterLab and nbval start it in the notebook's folder.

Environment overrides (used by tests and cluster jobs):
- ``HLRP_OUTPUT_ROOT``: where run directories go (default ``<repo>/outputs``).
- ``HLRP_DATA_ROOT``: where generated data goes (default ``<repo>/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = Path(__file__).resolve().parent
CONFIGS_DIR = PACKAGE_ROOT / "configs"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"


def output_root() -> Path:
    """Root of all run directories (``$HLRP_OUTPUT_ROOT`` or ``<repo>/outputs``)."""
    return Path(os.environ.get("HLRP_OUTPUT_ROOT") or REPO_ROOT / "outputs")


def data_root() -> Path:
    """Root of generated datasets (``$HLRP_DATA_ROOT`` or ``<repo>/data``)."""
    return Path(os.environ.get("HLRP_DATA_ROOT") or REPO_ROOT / "data")


def embedded_data_root() -> Path:
    """The embedded default datasets that ``make demo`` builds and every demo/test runs on."""
    return data_root() / "embedded"


def resolve(path: str | os.PathLike) -> Path:
    """A user path: absolute as given, relative ones against REPO_ROOT (not the cwd)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p
