"""Batch assembly: decoded, resized uint8 frames and the per-pair metadata; only the frames a sample uses are
decoded, last, after mixing.

The batch contract (every key, its type and shape) is written once, in ``docs/DATA.md``.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from ..config.data import frame_offsets, num_frames
from .decode import decode_resize
from .pipeline import Stopped
from .tfrecord import CorruptShardError


class BatchMaker:
    """Collates samples (dicts with ``jpeg``, ``offs``, labels) into batches; shared by train and val."""

    def __init__(self, pf, size: int, mode: str, full_meta: bool, a_max: int, s_max: int, batch_size: int,
                 timers, bgr: Optional[set] = None):
        self.pf, self.size, self.mode, self.full_meta = pf, size, mode, full_meta
        self.a_max, self.s_max, self.batch_size, self.timers = a_max, s_max, batch_size, timers
        self.bgr = bgr or set()

    def frames_T(self, ks: list[int]) -> int:
        n = num_frames(self.pf.mode, self.pf.stride, self.pf.n, None)
        if n:
            return n
        return max(len(frame_offsets(self.pf.mode, self.pf.stride, self.pf.n, k)) for k in ks)

    def collate(self, samples: list[dict], index: np.ndarray, stop: Optional[threading.Event] = None) -> dict:
        import torch

        B = len(samples)
        T = self.frames_T([s["k"] for s in samples])
        S = self.size
        t0 = time.perf_counter()
        frames = np.zeros((B, 3, T, S, S), np.uint8)
        offs = np.zeros((B, T), np.int64)
        for b, s in enumerate(samples):
            if stop is not None and stop.is_set():
                raise Stopped()
            js = s["jpeg"]
            for j in range(T):
                jj = min(j, len(js) - 1)
                if j < len(js):
                    try:
                        decode_resize(js[jj], S, self.mode, out=frames[b, :, j], chw=True)
                    except Exception as exc:  # noqa: BLE001 - a bad image is a corrupt shard, named as such
                        raise CorruptShardError(
                            f"{s.get('where', s['episode_id'])}: frame {s['t'] + s['offs'][jj]} of {s['episode_id']} "
                            f"is not a decodable image ({type(exc).__name__}: {exc}); the shard is corrupt: re-sync "
                            "it or drop the dataset (weight: 0)") from None
                else:
                    frames[b, :, j] = frames[b, :, jj]
                offs[b, j] = s["offs"][jj]
            if s["ds"] in self.bgr:  # stored BGR (registry image_bgr): flip to RGB
                frames[b] = frames[b, ::-1].copy()
        t1 = time.perf_counter()
        frames_t = torch.from_numpy(frames)
        t2 = time.perf_counter()
        self.timers.add("decode_resize", t1 - t0)
        self.timers.add("layout", t2 - t1)
        names = [s["name"] for s in samples]
        key = np.array([[s["ds"], s["episode"], s["t"], s["k"]] for s in samples], np.int64).reshape(B, 4)
        batch = {"frames": frames_t, "dataset_name": names, "dataset_type": list(names),
                 "dataset_id": torch.from_numpy(key[:, 0].copy()), "sample_key": torch.from_numpy(key),
                 "index": torch.from_numpy(np.asarray(index, np.int64))}
        if self.full_meta:
            act = np.zeros((B, self.a_max), np.float32)
            st = np.zeros((B, self.s_max), np.float32)
            for b, s in enumerate(samples):
                act[b, : s["action"].shape[0]] = s["action"]
                st[b, : s["state"].shape[0]] = s["state"]
            batch.update({
                "frame_offset": torch.from_numpy(offs),
                "episode_id": [s["episode_id"] for s in samples],
                "frame_idx": torch.from_numpy(key[:, 2].copy()), "offset": torch.from_numpy(key[:, 3].copy()),
                "language": [s["language"] for s in samples],
                "action": torch.from_numpy(act),
                "action_dim": torch.tensor([s["action_dim"] for s in samples], dtype=torch.int64),
                "initial_state": torch.from_numpy(st),
                "state_dim": torch.tensor([int(s["state"].shape[0]) for s in samples], dtype=torch.int64),
                "robot": [s["robot"] for s in samples]})
        self.timers.add("collate", time.perf_counter() - t2)
        return batch

    def synthetic(self, i0: int) -> dict:
        import torch

        B, S = self.batch_size, self.size
        T = self.frames_T([1])
        idx = np.arange(i0, i0 + B, dtype=np.int64)
        key = np.stack([np.zeros(B, np.int64), idx, np.zeros(B, np.int64), np.ones(B, np.int64)], 1)
        return {"frames": torch.zeros((B, 3, T, S, S), dtype=torch.uint8), "frame_offset": torch.zeros((B, T),
                                                                                                       dtype=torch.int64),
                "episode_id": [f"synthetic@0/train/{i}" for i in idx], "frame_idx": torch.zeros(B, dtype=torch.int64),
                "offset": torch.ones(B, dtype=torch.int64), "language": [""] * B,
                "dataset_name": ["synthetic"] * B, "dataset_type": ["synthetic"] * B,
                "dataset_id": torch.zeros(B, dtype=torch.int64), "action": torch.zeros((B, 2)),
                "action_dim": torch.zeros(B, dtype=torch.int64), "initial_state": torch.zeros((B, 2)),
                "state_dim": torch.zeros(B, dtype=torch.int64), "robot": [""] * B,
                "sample_key": torch.from_numpy(key), "index": torch.from_numpy(idx)}
