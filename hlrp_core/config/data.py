"""``data.*``: dataset list, loader and preprocessing knobs.

The ``data.adapter.tf.*`` namespace (every seed knob, DATA_ADAPTER.md section 1) is owned by the data adapter;
cross-knob rules run in ``DataConfig.validate`` before any thread, TF object or file handle exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import check


@dataclass
class LoaderConfig:
    """``data.loader.*``.

    Args:
        batch_size: Samples per batch (the adapter batches; the torch DataLoader uses ``batch_size=None``).
        num_workers: Torch worker processes. Must be 0 while TF runs in-process (each worker would build a full
            pipeline, about 6 GB each in the predecessor: DATA_ADAPTER F8).
        pin_memory: Pinned host batches (useful on GPU only).
        prefetch_factor: Accepted for seed commands; a documented no-op (the adapter prefetches by bytes).
    """

    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: Optional[int] = None


@dataclass
class PreprocessConfig:
    """``data.preprocess.*``.

    Args:
        image_size: Square output side in pixels; must equal the model's input size.
        return_metadata: Kept for seed commands: hlrp always returns a dict batch (DATA_ADAPTER section 2).
        resize_mode: ``letterbox`` (keep aspect, pad), ``center_crop`` (keep aspect, crop) or ``squash`` (legacy).
    """

    image_size: int = 64
    return_metadata: bool = True
    resize_mode: str = "letterbox"


@dataclass
class DatasetEntry:
    """One entry of ``data.dataset.oxe.datasets`` (DATASETS.md section 2).

    Args:
        name: Registry name (e.g. ``bridge``) or an embedded dataset name.
        train_split: TFDS slice syntax for training episodes.
        val_split: TFDS slice syntax for validation episodes (must be non-empty and disjoint from train).
        pair_offset_steps: Gap k between the two frames of a pair.
        weight: A number, ``"proportionate"`` or null (= proportionate). 0 drops the dataset.
        approx_num_pairs: Size hint for proportionate weights (hlrp counts real pairs from its index when it can).
        seed: Per-dataset seed; null = (global seed + crc32(name)) & 0x7FFFFFFF.
    """

    name: str = "???"
    train_split: str = "train[:90%]"
    val_split: str = "train[90%:]"
    pair_offset_steps: int = 5
    weight: Any = None
    approx_num_pairs: Optional[int] = None
    seed: Optional[int] = None


@dataclass
class OXEListConfig:
    """Args:
        datasets: The dataset list (see ``hlrp_core/configs/data/*.yaml`` for the researcher's lists).
    """

    datasets: list[DatasetEntry] = field(default_factory=list)


@dataclass
class DatasetConfig:
    """``data.dataset.*``.

    Args:
        name: Name of the dataset list (informational; set by ``data=<group>`` selections).
        oxe: The OXE-style dataset list.
    """

    name: str = "embedded"
    oxe: OXEListConfig = field(default_factory=OXEListConfig)


@dataclass
class DataConfig:
    """``data.*``.

    Args:
        root: Root of the local mirror laid out ``<root>/<tfds_dir>/<version>/``; empty = the embedded data
            (``$HLRP_DATA_ROOT/embedded``).
        dataset: Which datasets, with splits, k and weights.
        loader: Batching and worker knobs.
        preprocess: Image size and resize mode.
    """

    root: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    def validate(self, problems: list[str]) -> None:
        check(problems, self.loader.batch_size >= 1,
              f"data.loader.batch_size={self.loader.batch_size} must be >= 1")
        check(problems, self.loader.num_workers == 0,
              f"data.loader.num_workers={self.loader.num_workers}: must be 0 (TF runs in-process and every worker "
              "would build its own pipeline); the adapter's own threads do the parallel work")
        check(problems, self.preprocess.image_size >= 8,
              f"data.preprocess.image_size={self.preprocess.image_size} must be >= 8")
