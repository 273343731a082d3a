"""The repository explains itself: generated docs are current, and nothing cites files a clone does not have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_knob_table_is_current():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "knob_table.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr


def test_knob_table_documents_every_knob():
    text = (ROOT / "docs" / "KNOBS.md").read_text()
    assert "(no docstring entry)" not in text, "a schema field lacks its Args: entry in the dataclass docstring"
    for knob in ("data.loader.batch_size", "training.max_steps", "model.codebook_refit_steps"):
        assert f"`{knob}`" in text
