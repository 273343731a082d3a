"""The embedded default datasets (what ``make demo`` and every downstream test/training runs on).

``make_demo()`` writes, under ``hlrp_core.paths.embedded_data_root()`` by default, four known-answer RLDS datasets
that differ the way OXE datasets differ (registry entries with ``embedded=True``):

==================  ===============  ===========================================  ================  =========
name                camera (H x W)   instruction                                  action            episodes
==================  ===============  ===========================================  ================  =========
embedded_tabletop   image 64x64      observation/natural_language_instruction     dict world_vector train 200
                                     (string)                                     (3)               val 24
embedded_langtable  rgb 96x128       observation/instruction (int32 code points)  flat (2)          train 100
embedded_multicam   image 128x128    language_instruction (step, string)          flat (4)          train 48
                    + wrist_image
embedded_fetch      image 96x96      language_instruction (step, string)          flat (4) Fetch    train 110
                    (MuJoCo)
==================  ===============  ===========================================  ================  =========

Procedural episodes have 20 steps, Fetch episodes 30. Datasets already complete are skipped (unless overwrite). If
MuJoCo's GL backend cannot start, the Fetch dataset is reported as skipped with the reason (naming the Debian
package) and the procedural ones are still built.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from . import mirror as mr
from . import registry as reg
from . import rlds_writer as rw
from .synth.sheet import episode_thumbs, save_contact_sheet

PROCEDURAL_STEPS = 20
FETCH_STEPS = 30
# 110 episodes: the 30% held out by data=embedded_fetch are 33 (>= the 30 episodes a verdict needs); ~0.5 s each
FETCH_EPISODES = 110
EMBEDDED_CONTACT_SHEET = "embedded_contact_sheet.png"

#: name -> (splits, shards) for the full and the quick build.
PLAN = {
    "embedded_tabletop": ({"train": 200, "val": 24}, 2),
    "embedded_langtable": ({"train": 100}, 2),
    "embedded_multicam": ({"train": 48}, 1),
    "embedded_fetch": ({"train": FETCH_EPISODES}, 1),
}
QUICK_PLAN = {
    "embedded_tabletop": ({"train": 40, "val": 8}, 2),
    "embedded_langtable": ({"train": 16}, 1),
    "embedded_multicam": ({"train": 8}, 1),
    "embedded_fetch": ({"train": 4}, 1),
}


def dataset_path(name: str, root=None) -> Path:
    """``<root>/<tfds_dir>/<version>`` of an embedded dataset (root defaults to the embedded data root)."""
    from ..paths import embedded_data_root

    spec = reg.get(name)
    return rw.dataset_dir(embedded_data_root() if root is None else root, spec.tfds_dir, spec.version)


def is_complete(root=None, names=reg.EMBEDDED_PROCEDURAL) -> bool:
    """True when every dataset in ``names`` is completely written under ``root``."""
    return all(rw.is_complete(dataset_path(n, root)) for n in names)


def _write_fetch(spec: reg.DatasetSpec, root: Path, splits: dict, shards: int, seed: int, rows: list) -> Path:
    from .synth.fetch import render_episodes_subprocess

    crc = zlib.crc32(spec.name.encode())
    # MuJoCo renders in a child process (TF + EGL in one process segfault); raises GLUnavailableError
    rendered = {s: render_episodes_subprocess(spec.image_hw, n, FETCH_STEPS, seed, crc, split_id=i)
                for i, (s, n) in enumerate(splits.items())}
    features = mr.spec_features(spec)

    def make(split: str, split_id: int):
        def gen():
            z = rendered[split]
            for i in range(splits[split]):
                frames, instruction = z["frames"][i], str(z["instructions"][i])
                if split_id == 0 and i < 3:
                    rows.append((f"{spec.name}\nep {i}: {instruction}", episode_thumbs(frames)))
                T = len(frames)
                steps = [{
                    "observation": {"image": rw.jpeg_bytes(frames[t]), "state": z["states"][i, t]},
                    "action": z["actions"][i, t], spec.instruction_key: instruction,
                    "reward": np.float32(t == T - 1), "discount": np.float32(1.0),
                    "is_first": t == 0, "is_last": t == T - 1, "is_terminal": t == T - 1,
                } for t in range(T)]
                yield {"steps": steps, "episode_metadata": {"file_path": f"hlrp://{spec.name}/{split_id}/{i}",
                                                            "primitive_id": np.int32(z["primitive_ids"][i])}}
        return gen

    return rw.write_dataset(root, spec.tfds_dir, spec.version, features,
                            {s: make(s, i) for i, s in enumerate(splits)}, num_episodes=splits,
                            num_shards=shards, overwrite=True, description=spec.notes)


def make_demo(root=None, overwrite: bool = False, quick: bool = False, seed: int = 0,
              names: Optional[list] = None) -> dict:
    """Build the embedded default datasets; skip the ones already complete.

    Args:
        root: Target root; default ``hlrp_core.paths.embedded_data_root()``.
        overwrite: Rebuild datasets that are already complete.
        quick: Fewer episodes (for fast checks; downstream tests use the full build).
        seed: Generator seed (same seed -> identical episodes).
        names: Subset of the embedded datasets (default: all four).

    Returns:
        ``{"root", "datasets": {name: {"status": built|present|skipped, "path", "episodes", "seconds", "bytes",
        "reason"}}, "seconds", "bytes", "contact_sheet"}``.
    """
    from ..paths import embedded_data_root

    t0 = time.perf_counter()
    root = Path(embedded_data_root() if root is None else root)
    root.mkdir(parents=True, exist_ok=True)
    plan = QUICK_PLAN if quick else PLAN
    out: dict = {"root": str(root), "datasets": {}}
    rows: list = []
    for name in names or list(reg.EMBEDDED):
        spec = reg.get(name)
        splits, shards = plan[name]
        path = rw.dataset_dir(root, spec.tfds_dir, spec.version)
        entry = {"path": str(path), "episodes": dict(splits), "seconds": 0.0, "bytes": 0, "reason": ""}
        if rw.is_complete(path) and not overwrite:
            entry.update(status="present", bytes=rw.dir_size_bytes(path))
            out["datasets"][name] = entry
            continue
        t1 = time.perf_counter()
        if name == "embedded_fetch":
            from .synth.fetch import GLUnavailableError

            try:
                _write_fetch(spec, root, splits, shards, seed, rows)
            except GLUnavailableError as exc:
                entry.update(status="skipped", reason=str(exc))
                out["datasets"][name] = entry
                continue
        else:
            # an incomplete leftover at the target is ours (embedded root): replace it
            r = mr.write_spec_dataset(spec, root, splits=splits, seed=seed, num_shards=shards, overwrite=True,
                                      t_range=(PROCEDURAL_STEPS, PROCEDURAL_STEPS), max_side=None,
                                      sheet_episodes=3)
            rows.extend(r.sheet_rows)
        entry.update(status="built", seconds=round(time.perf_counter() - t1, 3), bytes=rw.dir_size_bytes(path))
        out["datasets"][name] = entry
    sheet = root / EMBEDDED_CONTACT_SHEET
    if rows:
        save_contact_sheet(rows, sheet)
    out["contact_sheet"] = str(sheet) if sheet.exists() else None
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["bytes"] = sum(d["bytes"] for d in out["datasets"].values())
    return out
