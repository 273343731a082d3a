"""Shared fixtures. Edit, don't overwrite: several engineers add fixtures here."""

from __future__ import annotations

import os
import tempfile

import pytest
from slurm_fixture import slurm_cluster  # noqa: E402,F401  (real single-node SLURM; tests/slurm_fixture.py)

# Runs write into a throwaway output root unless the caller chose one.
if not os.environ.get("HLRP_OUTPUT_ROOT"):
    os.environ["HLRP_OUTPUT_ROOT"] = tempfile.mkdtemp(prefix="hlrp-test-outputs-")


@pytest.fixture(scope="session")
def embedded_root(tmp_path_factory):
    """A directory holding the embedded demo datasets (<root>/<tfds_dir>/<version>).

    Uses ``$HLRP_DATA_ROOT/embedded`` when it is complete; otherwise builds ``make_demo`` once per session into a
    session temp dir (~20 s on 2 cores).
    """
    from hlrp_core.data import demo

    data_root = os.environ.get("HLRP_DATA_ROOT")
    if data_root:
        candidate = os.path.join(data_root, "embedded")
        if demo.is_complete(candidate):
            return candidate
    root = tmp_path_factory.mktemp("embedded")
    demo.make_demo(root=root)
    return str(root)
