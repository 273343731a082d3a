"""Reading datasets for the explorer widgets: which datasets are on disk, one episode as numpy, the reduced action
of a pair, a dataset's schema facts, and the realised shares of a sampled batch vs the target weights.

Episodes are read straight from TFDS (``tfds.builder_from_directory``) using the registry's columns (camera key,
instruction location and encoding, state key, action layout and reducer): the explorer shows the data as stored,
independent of the training loader. TF is imported lazily (``hlrp_core.data.tfenv``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from ..data import registry as reg
from ..paths import data_root, embedded_data_root


def dataset_path(root: str | os.PathLike, spec: reg.DatasetSpec) -> Path:
    return Path(root) / (spec.tfds_dir or spec.name) / spec.version


def _complete(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() and (path / "features.json").is_file()


def default_roots() -> list[Path]:
    """Where the explorer looks: the embedded data, then ``<data root>/mirror`` and the data root itself."""
    return [embedded_data_root(), data_root() / "mirror", data_root()]


def available_datasets(roots: Optional[Iterable[str | os.PathLike]] = None) -> dict[str, Path]:
    """{registry name: dataset directory} for every registry dataset found complete under ``roots`` (first root
    wins), embedded datasets first, then the OXE names in registry order."""
    roots = [Path(r) for r in (roots if roots is not None else default_roots())]
    found: dict[str, Path] = {}
    order = list(reg.EMBEDDED) + [n for n in reg.REGISTRY if n not in reg.EMBEDDED]
    for name in order:
        spec = reg.REGISTRY[name]
        for root in roots:
            p = dataset_path(root, spec)
            if _complete(p):
                found[name] = p
                break
    return found


def schema_facts(spec: reg.DatasetSpec) -> dict[str, Any]:
    """The registry facts the explorer shows next to the frames."""
    return {
        "camera": f"{spec.image_key} {spec.image_hw[0]}x{spec.image_hw[1]}",
        "instruction": f"{spec.instruction_location}/{spec.instruction_key} ({spec.instruction_encoding})",
        "state": f"{spec.state_key} (keep {spec.state_dims} of {spec.state_source_dims})" if spec.state_key else "none",
        "action": (f"{spec.action_layout}"
                   + (f"[{spec.action_key}]" if spec.action_layout == "dict" else "")
                   + f" keep {spec.action_dims} of {spec.action_source_dims}, reducer {spec.action_kind}"),
        "default k": spec.pair_offset_steps,
        "control Hz": spec.control_hz,
        "extra cameras": ", ".join(c.key for c in spec.extra_cameras) or "none",
        "known bad": spec.known_bad or "-",
        "notes": spec.notes,
    }


def _get(d: Any, key: str, literal: bool) -> Any:
    if literal or "/" not in key:
        return d[key]
    for part in key.split("/"):
        d = d[part]
    return d


def decode_instruction(spec: reg.DatasetSpec, value: Any) -> str:
    if value is None:
        return ""
    if spec.instruction_encoding == "codepoints":
        cps = np.asarray(value).ravel()  # UTF-8 bytes, one per int (language_table): decode bytes
        return bytes(int(c) & 0xFF for c in cps if int(c) > 0).decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        v = value.ravel()[0] if value.size else b""
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return str(value)


@dataclass
class Episode:
    """One episode as numpy.

    Args:
        dataset: Registry name.
        index: Episode index in the split.
        frames: uint8 [T, H, W, 3] of the registry's camera.
        instruction: Decoded instruction of the first step.
        actions: float [T, action_dims] (kept dims), None for non-numeric actions.
        states: float [T, state_dims], None without a state.
        metadata: ``episode_metadata`` as plain Python values.
    """

    dataset: str
    index: int
    frames: np.ndarray
    instruction: str
    actions: Optional[np.ndarray]
    states: Optional[np.ndarray]
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


class EpisodeReader:
    """Reads single episodes of the datasets in ``paths`` ({name: dataset dir}); builders are cached."""

    def __init__(self, paths: dict[str, Path]):
        self.paths = dict(paths)
        self._builders: dict[str, Any] = {}
        self._cache: dict[tuple, Episode] = {}

    def builder(self, name: str):
        if name not in self._builders:
            from ..data.tfenv import import_tfds

            tfds = import_tfds()
            self._builders[name] = tfds.builder_from_directory(str(self.paths[name]))
        return self._builders[name]

    def splits(self, name: str) -> list[str]:
        return sorted(self.builder(name).info.splits.keys())

    def num_episodes(self, name: str, split: str = "train") -> int:
        return int(self.builder(name).info.splits[split].num_examples)

    def read(self, name: str, index: int, split: str = "train") -> Episode:
        """Episode ``index`` of ``split`` (cached; a TFDS slice ``split[i:i+1]`` reads only that episode)."""
        key = (name, int(index), split)
        if key in self._cache:
            return self._cache[key]
        out = next(self.iter_episodes(name, split, start=int(index), stop=int(index) + 1))
        if len(self._cache) > 32:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = out
        return out

    def iter_episodes(self, name: str, split: str = "train", start: int = 0, stop: Optional[int] = None):
        """Episodes ``start .. stop-1`` in order, read as one stream (much faster than one slice each)."""
        from ..data.tfenv import import_tfds

        tfds = import_tfds()
        stop_s = "" if stop is None else str(int(stop))
        ds = self.builder(name).as_dataset(split=f"{split}[{int(start)}:{stop_s}]")
        for i, ep in enumerate(tfds.as_numpy(ds)):
            yield self._episode(name, int(start) + i, ep)

    def _episode(self, name: str, index: int, ep: dict) -> Episode:
        spec = reg.get(name)
        literal = name in _literal_slash()
        frames, acts, states, instr = [], [], [], ""
        for i, step in enumerate(ep["steps"]):
            obs = step["observation"]
            frames.append(np.asarray(_get(obs, spec.image_key, literal), dtype=np.uint8))
            if i == 0:
                src = obs if spec.instruction_location == "obs" else step
                try:
                    instr = decode_instruction(spec, _get(src, spec.instruction_key, literal))
                except KeyError:
                    instr = ""
            if spec.state_key:
                states.append(np.asarray(_get(obs, spec.state_key, literal), dtype=np.float32).ravel()
                              [: spec.state_dims])
            if spec.action_layout == "dict":
                acts.append(np.asarray(_get(step["action"], spec.action_key, literal), dtype=np.float32).ravel()
                            [: spec.action_dims])
            elif spec.action_layout == "flat":
                acts.append(np.asarray(step["action"], dtype=np.float32).ravel()[: spec.action_dims])
        meta = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else np.asarray(v).tolist())
                for k, v in (ep.get("episode_metadata") or {}).items()}
        return Episode(dataset=name, index=int(index), frames=np.stack(frames), instruction=instr,
                       actions=np.stack(acts) if acts else None, states=np.stack(states) if states else None,
                       metadata=meta)


def _literal_slash() -> frozenset:
    try:
        from ..data.mirror import LITERAL_SLASH_DATASETS

        return LITERAL_SLASH_DATASETS
    except ImportError:  # pragma: no cover
        return frozenset({"bc_z"})


def reduce_action(spec: reg.DatasetSpec, actions: Optional[np.ndarray], t: int, k: int) -> Optional[np.ndarray]:
    """The pair's action over [t, t+k) with the registry's reducer: ``delta`` sums a[t:t+k], ``absolute`` takes
    a[t+k] - a[t], ``none`` (or no numeric action) gives None."""
    if actions is None or spec.action_kind == "none" or len(actions) == 0:
        return None
    t = int(np.clip(t, 0, len(actions) - 1))
    end = int(np.clip(t + k, t, len(actions) - 1 if spec.action_kind == "absolute" else len(actions)))
    if spec.action_kind == "absolute":
        return actions[end] - actions[t]
    return actions[t:end].sum(axis=0)


def mix_shares(dataset_names: Iterable[str], weights: dict[str, float]):
    """Realised share of each dataset among ``dataset_names`` (one entry per sample of a batch) next to the target
    weights (normalised). Returns a DataFrame with columns ``dataset``, ``target``, ``realised``, ``count``."""
    import pandas as pd

    names = [n.decode() if isinstance(n, bytes) else str(n) for n in dataset_names]
    total_w = sum(float(w) for w in weights.values()) or 1.0
    keys = list(weights) + sorted(set(names) - set(weights))
    n = max(1, len(names))
    return pd.DataFrame({"dataset": keys,
                         "target": [float(weights.get(k, 0.0)) / total_w for k in keys],
                         "realised": [names.count(k) / n for k in keys],
                         "count": [names.count(k) for k in keys]})


def loader_mix(loader) -> tuple[dict[str, float], Any]:
    """(target weights {name: resolved weight}, ``sample_batch`` callable) from the data adapter's ``PairLoader``:
    each call draws the next real train batch and returns its ``dataset_name`` list."""
    weights = {x.name: float(x.weight) for x in getattr(loader, "datasets", [])} or \
        {n: 1.0 for n in getattr(loader, "dataset_names", [])}
    it = iter(loader)
    return weights, lambda: list(next(it)["dataset_name"])
