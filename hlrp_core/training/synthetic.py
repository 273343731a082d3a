"""A tiny in-memory data module in the batch contract of docs/DATA.md, batch contract (no TF, no files).

A coloured "gripper" square moves by one of 8 directions (the action) over a per-episode background with static
distractor blobs. Every sample is a pure function of ``(seed, index)``, so resume just continues from an index
(``set_start_index``), exactly like the real adapter's sample keys. Used by unit tests and for development; runs use
``hlrp_core.data.build_datamodule`` (see ``build_datamodule`` in ``trainer.py``).
"""

from __future__ import annotations

import math
from typing import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

DIRECTIONS = [(math.cos(a), math.sin(a)) for a in np.arange(8) * (2 * math.pi / 8)]
STEP = 1.0 / 32.0  # fraction of the image per step (as the embedded procedural data)


def make_sample(seed: int, episode: int, t: int, size: int = 64, k: int = 3) -> dict:
    """One pair (o_t, o_t+k) of ``episode``: frames uint8 (3, 2, size, size), action float32 (2,) = k x step."""
    ep_rng = np.random.default_rng([seed, episode])
    bg = (ep_rng.uniform(0.1, 0.4, 3) * 255).astype(np.uint8)
    frames = np.empty((3, 2, size, size), np.uint8)
    frames[:] = bg[:, None, None, None]
    for _ in range(3):  # static distractors
        x0, y0 = ep_rng.integers(0, size - 8, 2)
        frames[:, :, y0:y0 + 8, x0:x0 + 8] = (ep_rng.uniform(0.4, 0.7, 3) * 255).astype(np.uint8)[:, None, None, None]
    prim = int(ep_rng.integers(0, 8)) if episode % 4 else int(episode // 4 % 8)
    rng = np.random.default_rng([seed, episode, t])
    prim = prim if rng.uniform() < 0.5 else int(rng.integers(0, 8))  # per-pair primitive, episode-biased
    dx, dy = DIRECTIONS[prim]
    action = np.array([dx, dy], np.float32) * STEP * k
    side = size // 8
    margin = int(size * STEP * k) + 1
    px, py = rng.integers(margin, size - side - margin, 2)
    for j, (ox, oy) in enumerate([(0, 0), (action[0] * size, action[1] * size)]):
        x, y = int(round(px + ox)), int(round(py + oy))
        frames[0, j, y:y + side, x:x + side] = 240
        frames[1, j, y:y + side, x:x + side] = 200
        frames[2, j, y:y + side, x:x + side] = 30
    return {"frames": frames, "action": action, "episode": episode, "t": t, "k": k, "primitive": prim}


def collate(samples: list[dict], name: str = "synthetic_square") -> dict:
    b = len(samples)
    return {
        "frames": torch.from_numpy(np.stack([s["frames"] for s in samples])),                  # (B, 3, 2, H, W) uint8
        "action": torch.from_numpy(np.stack([s["action"] for s in samples])),                  # (B, 2) float32
        "action_dim": torch.full((b,), 2, dtype=torch.int64),                                  # (B,)
        "episode_id": [f"{name}@0/train/{s['episode']}" for s in samples],
        "frame_idx": torch.tensor([s["t"] for s in samples], dtype=torch.int64),               # (B,)
        "offset": torch.tensor([s["k"] for s in samples], dtype=torch.int64),                  # (B,)
        "language": [f"move {s['primitive']}" for s in samples],
        "dataset_name": [name] * b,
        "dataset_id": torch.zeros(b, dtype=torch.int64),                                       # (B,)
        "sample_key": torch.tensor([[0, s["episode"], s["t"], s["k"]] for s in samples], dtype=torch.int64),
    }


class _Stream(IterableDataset):
    def __init__(self, dm: "SyntheticDataModule"):
        self.dm = dm

    def __iter__(self) -> Iterator[dict]:
        i = self.dm.start_index
        b = self.dm.batch_size
        while True:
            samples = []
            for j in range(i, i + b):
                rng = np.random.default_rng([self.dm.seed, 7, j])
                samples.append(make_sample(self.dm.seed, int(rng.integers(0, self.dm.train_episodes)),
                                           int(rng.integers(0, 1000)), self.dm.image_size))
            i += b
            yield collate(samples)


class SyntheticDataModule(L.LightningDataModule):
    """Train: an infinite deterministic stream; val: a fixed set of ``val_items`` pairs from held-out episodes."""

    def __init__(self, batch_size: int = 32, image_size: int = 64, seed: int = 0, train_episodes: int = 400,
                 val_episodes: int = 40, val_items: int = 512):
        super().__init__()
        self.batch_size, self.image_size, self.seed = batch_size, image_size, seed
        self.train_episodes, self.val_episodes, self.val_items = train_episodes, val_episodes, val_items
        self.start_index = 0

    @classmethod
    def from_config(cls, cfg) -> "SyntheticDataModule":
        return cls(batch_size=cfg.data.loader.batch_size, image_size=cfg.data.preprocess.image_size, seed=cfg.seed)

    def set_start_index(self, index: int) -> None:
        """Resume: the next train batch starts at global sample index ``index`` (= step x batch_size)."""
        self.start_index = int(index)

    def state_dict(self) -> dict:
        return {"next_index": self.start_index}

    def load_state_dict(self, state: dict) -> None:
        self.start_index = int(state.get("next_index", state.get("start_index", 0)))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Stream(self), batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        samples = [make_sample(self.seed + 1, self.train_episodes + i % self.val_episodes, i, self.image_size)
                   for i in range(self.val_items)]
        batches = [collate(samples[i:i + self.batch_size]) for i in range(0, len(samples), self.batch_size)]
        return DataLoader(batches, batch_size=None, num_workers=0)
