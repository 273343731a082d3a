"""One RLDS episode record -> what a frame pair needs: T, the selected camera's encoded frames, actions, states,
per-step language and the robot name (read once, from the one read of the record the pair needs anyway).

Records are ``tf.train.Example`` protos in the layout TFDS writes (nested features flattened to
``steps/observation/<key>`` lists). A record whose keys do not match the registry raises :class:`LayoutError`
(what the registry expects, what the record has, how to fix it), not a corrupt-shard error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .registry import DatasetSpec
from .tfrecord import parse_example


class LayoutError(ValueError):
    """A record whose features do not match the dataset's registry spec; the message names the key expected, the
    keys the record has and how to fix it."""


@dataclass
class Episode:
    """One parsed episode (only what the loader keeps).

    Args:
        T: Steps.
        frames: Encoded frames of the selected camera, one per step.
        action: [T, A] float32 (A = the registry's kept width; 0 when none).
        state: [T, S] float32.
        language: Per-step instruction ("" when the dataset has none).
        robot: Robot name ("" unless the registry names a key).
        success: The episode's success flag (registry ``success_key``), None when the dataset has none.
    """

    T: int
    frames: list
    action: np.ndarray
    state: np.ndarray
    language: list
    robot: str
    success: Optional[bool] = None

    @property
    def nbytes(self) -> int:
        return sum(len(f) for f in self.frames) + self.action.nbytes + self.state.nbytes + sum(map(len, self.language))


def _feature(ex, key: str, spec: DatasetSpec, where: str, role: str, required: bool = True):
    feats = ex.features.feature
    if key not in feats:
        if not required:
            return None
        keys = sorted(k for k in feats if k.startswith("steps/"))
        raise LayoutError(f"{where}: the registry's {role} for {spec.name} is {key!r}, but this record has no such "
                          f"feature; it has {keys}. The mirror's layout differs from the registry: fix the "
                          f"registry entry's {role} (hlrp_core/data/registry.py) for this build, or drop the dataset "
                          "(weight: 0)")
    f = feats[key]
    kind = f.WhichOneof("kind")
    return getattr(f, kind).value if kind else []


def _decode_utf8_ints(row: np.ndarray) -> str:
    """An int array holding UTF-8 bytes one per element (language_table), NUL padded."""
    nul = np.flatnonzero(row == 0)
    row = row[: nul[0]] if len(nul) else row
    return bytes(int(c) & 0xFF for c in row).decode("utf-8", "replace")


def parse_episode(raw: bytes, spec: DatasetSpec, where: str, frames: bool = True) -> Episode:
    """Parse one episode record (``where`` names file and offset in errors)."""
    ex = parse_example(raw, where)
    T = len(_feature(ex, "steps/is_first", spec, where, "step marker"))
    try:
        if spec.action_layout == "string" or spec.action_dims == 0:
            act = np.zeros((T, 0), np.float32)
        else:
            a = np.asarray(_feature(ex, f"steps/{spec.action_path}", spec, where, "action_key"), np.float32)
            act = a.reshape(T, -1)[:, : spec.action_dims]
        if spec.state_path is None or spec.state_dims == 0:
            st = np.zeros((T, 0), np.float32)
        else:
            s = np.asarray(_feature(ex, f"steps/{spec.state_path}", spec, where, "state_key"), np.float32)
            st = s.reshape(T, -1)[:, : spec.state_dims]
    except ValueError as exc:
        if isinstance(exc, LayoutError):
            raise
        raise LayoutError(f"{where}: the episode's action/state widths do not fit the registry spec of {spec.name} "
                          f"({exc}); fix action_dims/state_dims in hlrp_core/data/registry.py for this build") from None
    raw_lang = _feature(ex, f"steps/{spec.instruction_path}", spec, where, "instruction_key",
                        required=spec.has_instruction)
    if raw_lang is None:
        lang = [""] * T
    elif spec.instruction_encoding == "codepoints":
        arr = np.asarray(raw_lang, np.int64).reshape(T, -1)
        lang = [_decode_utf8_ints(r) for r in arr]
    else:
        lang = [x.decode("utf-8", "replace").rstrip("\x00") if isinstance(x, bytes) else str(x) for x in raw_lang]
    robot = ""
    if spec.robot_key:
        r = _feature(ex, spec.robot_key, spec, where, "robot_key", required=False)
        if r:
            robot = r[0].decode("utf-8", "replace") if isinstance(r[0], bytes) else str(r[0])
    success = None
    if spec.success_key:
        v = _feature(ex, spec.success_key, spec, where, "success_key")
        success = bool(v[0]) if len(v) else None
    fr = list(_feature(ex, f"steps/{spec.image_path}", spec, where, "image_key")) if frames else []
    if frames and len(fr) != T:
        raise LayoutError(f"{where}: {len(fr)} frames under steps/{spec.image_path} but {T} steps; the camera key "
                          f"of {spec.name} is not per-step in this build: fix image_key in the registry")
    return Episode(T=T, frames=fr, action=act, state=st, language=lang, robot=robot, success=success)


def reduce_action(action: np.ndarray, t: int, k: int, kind: str) -> np.ndarray:
    """The label of pair (t, t+k): ``delta`` sums a[t:t+k], ``absolute`` a[t+k] - a[t], ``none`` []."""
    if action.shape[1] == 0 or kind == "none":
        return np.zeros(0, np.float32)
    if kind == "absolute":
        return action[t + k] - action[t]
    return action[t: t + k].sum(axis=0)
