"""Write genuine TFDS/RLDS datasets: TFRecord shards + dataset_info.json + features.json.

The result is what ``tfds.builder_from_directory(<root>/<tfds_dir>/<version>)`` reads: the same files a TFDS builder
writes (shard names ``<name>-<split>.tfrecord-0000i-of-0000N``), written directly so that shard counts are exact and
no builder class has to be registered under the real OXE names. Episodes go to shards in order (shard i holds a
contiguous block), so TFDS slices such as ``train[:90%]`` select episodes by index.

Atomicity: everything is written into ``<root>/<tfds_dir>/.tmp-<version>-<pid>`` and renamed into place at the end;
``is_complete`` (dataset_info.json + features.json present in the final directory) is therefore never true for a
partial write. A non-empty target is refused unless ``overwrite=True``.

TF/TFDS are imported lazily through ``hlrp_core.data.tfenv``.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np


class TargetNotEmptyError(FileExistsError):
    """The target dataset directory exists and is not empty (pass overwrite=True to replace it)."""


def dataset_dir(root, tfds_dir: str, version: str) -> Path:
    return Path(root) / tfds_dir / version


def is_complete(path) -> bool:
    """True when ``path`` (a ``<tfds_dir>/<version>`` directory) holds a finished dataset."""
    p = Path(path)
    return (p / "dataset_info.json").is_file() and (p / "features.json").is_file()


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode an HxWx3 uint8 array as JPEG with PIL (faster than TF eager, and TFDS stores the bytes as given)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    arr = np.ascontiguousarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def rlds_features(step_observation: Mapping[str, Any], step_action: Any, *, step_extra: Optional[Mapping] = None,
                  episode_metadata: Optional[Mapping] = None, episode_extra: Optional[Mapping] = None):
    """The RLDS FeaturesDict: ``steps`` (a ``tfds.features.Dataset``) with observation, action, reward, discount,
    is_first/is_last/is_terminal (+ ``step_extra``, e.g. ``language_instruction``), and ``episode_metadata``.

    Arguments are TFDS feature objects (or nested dicts of them).
    """
    tfds = _tfds()
    import tensorflow as tf

    steps = {
        "observation": tfds.features.FeaturesDict(dict(step_observation)),
        "action": tfds.features.FeaturesDict(dict(step_action)) if isinstance(step_action, Mapping) else step_action,
        "reward": tfds.features.Scalar(dtype=tf.float32),
        "discount": tfds.features.Scalar(dtype=tf.float32),
        "is_first": tfds.features.Scalar(dtype=tf.bool),
        "is_last": tfds.features.Scalar(dtype=tf.bool),
        "is_terminal": tfds.features.Scalar(dtype=tf.bool),
    }
    steps.update(dict(step_extra or {}))
    meta = dict(episode_metadata or {"file_path": tfds.features.Text()})
    return tfds.features.FeaturesDict({
        "steps": tfds.features.Dataset(steps),
        "episode_metadata": tfds.features.FeaturesDict(meta),
        **dict(episode_extra or {}),  # top-level episode features (kuka's ``success``)
    })


def _tfds():
    from .tfenv import import_tfds

    return import_tfds()


def write_dataset(root, tfds_dir: str, version: str, features, splits: Mapping[str, Callable[[], Iterable[dict]]],
                  *, num_episodes: Mapping[str, int], num_shards: int | Mapping[str, int] = 1,
                  overwrite: bool = False, description: str = "", homepage: str = "") -> Path:
    """Write one TFDS dataset at ``<root>/<tfds_dir>/<version>`` and return that path.

    Args:
        root: Data root (the layout of a local OXE mirror).
        tfds_dir: Dataset directory name (also the TFDS dataset name in dataset_info.json).
        version: Version directory, e.g. ``0.1.0``.
        features: A ``tfds.features.FeaturesDict`` (see :func:`rlds_features`).
        splits: split name -> zero-argument callable yielding episode dicts (already in feature structure; images
            may be given as encoded bytes) or already serialized records (``bytes``, written as they are).
        num_episodes: split name -> number of episodes the callable yields (needed to cut shards in order).
        num_shards: Shards per split (an int for all splits or a mapping); capped at the split's episode count.
        overwrite: Replace an existing non-empty target.
        description: dataset_info description.

    Raises:
        TargetNotEmptyError: the target exists and is not empty and overwrite is False.
    """
    tfds = _tfds()
    import tensorflow as tf
    from tensorflow_datasets.core import dataset_info as dsi
    from tensorflow_datasets.core import naming

    final = dataset_dir(root, tfds_dir, version)
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise TargetNotEmptyError(f"{final} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        split_infos = []
        for split, make_episodes in splits.items():
            n = int(num_episodes[split])
            shards = num_shards if isinstance(num_shards, int) else int(num_shards.get(split, 1))
            shards = max(1, min(int(shards), max(n, 1)))
            bounds = [round(i * n / shards) for i in range(shards + 1)]
            template = naming.ShardedFileTemplate(data_dir=tmp, dataset_name=tfds_dir, split=split,
                                                  filetype_suffix="tfrecord")
            lengths, total_bytes = [], 0
            episodes = iter(make_episodes())
            for s in range(shards):
                path = template.sharded_filepath(shard_index=s, num_shards=shards)
                count = 0
                with tf.io.TFRecordWriter(os.fspath(path)) as writer:
                    for _ in range(bounds[s + 1] - bounds[s]):
                        ep = next(episodes)
                        record = ep if isinstance(ep, bytes) else features.serialize_example(ep)
                        writer.write(record)
                        total_bytes += len(record)
                        count += 1
                lengths.append(count)
            if next(episodes, None) is not None:
                raise ValueError(f"split {split!r} yielded more than num_episodes={n} episodes")
            split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=total_bytes,
                                                   filename_template=template))
        identity = dsi.DatasetIdentity(name=tfds_dir, version=tfds.core.Version(version), data_dir=os.fspath(tmp),
                                       module_name="hlrp_core.data.rlds_writer")
        info = tfds.core.DatasetInfo(builder=identity, description=description or f"hlrp stand-in {tfds_dir}",
                                     features=features, homepage=homepage or None,
                                     split_dict=tfds.core.SplitDict(split_infos))
        info.write_to_directory(os.fspath(tmp))
        old = None
        if final.exists():
            old = final.parent / f".old-{version}-{os.getpid()}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def dir_size_bytes(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
