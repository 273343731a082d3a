"""Episode index: one pass over a dataset's TFRecord shards that records, per episode, where its record lives
(file, byte offset, size), its length T and its labels (actions, states, language, robot). Frames are not kept: the
loader reads an episode's record by offset when it needs frames and keeps only the selected camera's JPEG bytes.

The index is cached on disk, keyed by directory, version, shard names and sizes and the dataset spec, so a second
start is fast (DATA_ADAPTER P10). Records are parsed as ``tf.train.Example`` protos (the layout TFDS writes: nested
features flattened to ``steps/observation/<key>`` lists), which needs no tf.data pipeline, no TF threads and no
per-dataset graph. A corrupt shard raises ``CorruptShardError`` naming the file and byte offset.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .registry import DatasetSpec
from .sources import ResolvedSource

log = logging.getLogger(__name__)

INDEX_FORMAT = 2


class CorruptShardError(RuntimeError):
    """A shard that cannot be read as TFRecords of RLDS episodes; the message names the file and the offset."""


_EXAMPLE_CLS = None


def _example_cls():
    """``tf.train.Example`` as a protobuf class built from its descriptor at runtime (identical wire format), so
    reading records never imports TensorFlow: startup stays fast and the loader's RSS stays small."""
    global _EXAMPLE_CLS
    if _EXAMPLE_CLS is not None:
        return _EXAMPLE_CLS
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="hlrp_example.proto", package="hlrp_example", syntax="proto3")

    def msg(name, fields, nested=None, map_entry=False):
        m = fd.message_type.add(name=name) if nested is None else nested.nested_type.add(name=name)
        if map_entry:
            m.options.map_entry = True
        for fname, num, ftype, label, tname, oneof in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
            if oneof is not None:
                f.oneof_index = oneof
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    msg("BytesList", [("value", 1, F.TYPE_BYTES, rep, None, None)])
    msg("FloatList", [("value", 1, F.TYPE_FLOAT, rep, None, None)])
    msg("Int64List", [("value", 1, F.TYPE_INT64, rep, None, None)])
    feat = msg("Feature", [("bytes_list", 1, F.TYPE_MESSAGE, opt, ".hlrp_example.BytesList", 0),
                           ("float_list", 2, F.TYPE_MESSAGE, opt, ".hlrp_example.FloatList", 0),
                           ("int64_list", 3, F.TYPE_MESSAGE, opt, ".hlrp_example.Int64List", 0)])
    feat.oneof_decl.add(name="kind")
    feats = msg("Features", [("feature", 1, F.TYPE_MESSAGE, rep, ".hlrp_example.Features.FeatureEntry", None)])
    msg("FeatureEntry", [("key", 1, F.TYPE_STRING, opt, None, None),
                         ("value", 2, F.TYPE_MESSAGE, opt, ".hlrp_example.Feature", None)], nested=feats,
        map_entry=True)
    msg("Example", [("features", 1, F.TYPE_MESSAGE, opt, ".hlrp_example.Features", None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    _EXAMPLE_CLS = message_factory.GetMessageClass(pool.FindMessageTypeByName("hlrp_example.Example"))
    return _EXAMPLE_CLS


def iter_records(path: str):
    """Yield (offset, length) of each TFRecord in a file (local or ``gs://``), checking the framing (not the CRCs)."""
    if path.startswith("gs://"):
        from .tfenv import import_tf

        with import_tf().io.gfile.GFile(path, "rb") as g:
            blob = g.read()
        size = len(blob)
        f = io.BytesIO(blob)
    else:
        size = os.path.getsize(path)
        f = open(path, "rb")
    with f:
        off = 0
        while off < size:
            head = f.read(12)
            if len(head) < 12:
                raise CorruptShardError(f"{path}: truncated TFRecord header at byte {off} (file size {size}); the "
                                        "shard is corrupt or partially copied: re-sync it")
            (n,) = struct.unpack("<Q", head[:8])
            if off + 12 + n + 4 > size:
                raise CorruptShardError(f"{path}: TFRecord at byte {off} claims {n} bytes but the file has {size}; "
                                        "the shard is corrupt or truncated: re-sync it")
            yield off + 12, n
            f.seek(n + 4, 1)
            off += 12 + n + 4


def read_record(path: str, offset: int, length: int, fd: Optional[int] = None) -> bytes:
    if path.startswith("gs://"):
        from .tfenv import import_tf

        with import_tf().io.gfile.GFile(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    if fd is not None:
        data = os.pread(fd, length, offset)
    else:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    if len(data) != length:
        raise CorruptShardError(f"{path}: short read at byte {offset} ({len(data)} of {length} bytes); re-sync it")
    return data


def parse_example(raw: bytes, where: str):
    try:
        return _example_cls().FromString(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise CorruptShardError(f"{where}: not a tf.train.Example ({type(exc).__name__}); the shard is corrupt: "
                                "re-sync it or drop the dataset (weight: 0)") from None


def _feature(ex, key: str, where: str, required: bool = True):
    feats = ex.features.feature
    if key not in feats:
        if not required:
            return None
        keys = sorted(k for k in feats if k.startswith("steps/"))
        raise CorruptShardError(f"{where}: feature {key!r} is missing; this record has {keys[:12]}... The registry "
                                "spec (camera/instruction/state/action key) does not match the data")
    f = feats[key]
    kind = f.WhichOneof("kind")
    return getattr(f, kind).value if kind else []


def frames_of(ex, spec: DatasetSpec, where: str) -> list[bytes]:
    """The selected camera's encoded frames of one parsed episode (nothing else is kept)."""
    return list(_feature(ex, f"steps/{spec.image_path}", where))


def _decode_codepoints(row: np.ndarray) -> str:
    nul = np.flatnonzero(row == 0)
    row = row[: nul[0]] if len(nul) else row
    return "".join(chr(int(c)) for c in row if 0 < c < 0x110000)


def labels_of(ex, spec: DatasetSpec, where: str) -> dict:
    """T, actions [T, A], states [T, S], per-step language and robot of one parsed episode."""
    T = len(_feature(ex, "steps/is_first", where))
    if spec.action_layout == "string" or spec.action_dims == 0:
        act = np.zeros((T, 0), np.float32)
    else:
        a = np.asarray(_feature(ex, f"steps/{spec.action_path}", where), np.float32)
        act = a.reshape(T, -1)[:, : spec.action_dims]
    if spec.state_path is None or spec.state_dims == 0:
        st = np.zeros((T, 0), np.float32)
    else:
        s = np.asarray(_feature(ex, f"steps/{spec.state_path}", where), np.float32)
        st = s.reshape(T, -1)[:, : spec.state_dims]
    raw = _feature(ex, f"steps/{spec.instruction_path}", where, required=False)
    if raw is None:
        lang = [""] * T
    elif spec.instruction_encoding == "codepoints":
        arr = np.asarray(raw, np.int64).reshape(T, -1)
        lang = [_decode_codepoints(r) for r in arr]
    else:
        lang = [x.decode("utf-8", "replace").rstrip("\x00") if isinstance(x, bytes) else str(x) for x in raw]
    robot = ""
    if spec.robot_key:
        r = _feature(ex, spec.robot_key, where, required=False)
        if r:
            robot = r[0].decode("utf-8", "replace") if isinstance(r[0], bytes) else str(r[0])
    return {"T": T, "action": act, "state": st, "language": lang, "robot": robot}


@dataclass
class SplitIndex:
    """All episodes of one split of one dataset (arrays, in record order).

    Attributes:
        files: Shard paths; ``file_idx[e]`` indexes it.
        offset, nbytes: Byte range of episode e's record.
        length: T per episode.
        step_start: Start of episode e in the concatenated per-step arrays (len E + 1).
        action, state: Concatenated per-step labels [sum T, A] / [sum T, S].
        lang_id: Per-step index into ``strings``.
        robot_id: Per-episode index into ``strings``.
    """

    split: str
    files: list[str]
    file_idx: np.ndarray
    offset: np.ndarray
    nbytes: np.ndarray
    length: np.ndarray
    step_start: np.ndarray
    action: np.ndarray
    state: np.ndarray
    lang_id: np.ndarray
    robot_id: np.ndarray
    strings: list[str] = field(default_factory=list)

    @property
    def num_episodes(self) -> int:
        return int(len(self.length))


def _cache_key(src: ResolvedSource, spec: DatasetSpec, split: str) -> str:
    h = hashlib.sha1()
    h.update(f"{INDEX_FORMAT}|{src.path}|{src.version}|{split}|{spec!r}".encode())
    for f in src.splits[split].files:
        st = os.stat(f) if not f.startswith("gs://") else None
        h.update(f"|{os.path.basename(f)}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}".encode())
    return h.hexdigest()[:20]


def build_split_index(src: ResolvedSource, spec: DatasetSpec, split: str, cache_dir: Optional[Path]) -> tuple[
        SplitIndex, dict]:
    """Index one split (cached). Returns (index, info) with info = {cached, seconds, first_episode_s}."""
    t0 = time.perf_counter()
    key = _cache_key(src, spec, split)
    cpath = cache_dir / f"{spec.name}@{src.version}-{split}-{key}.pkl" if cache_dir else None
    if cpath is not None and cpath.is_file():
        try:
            with open(cpath, "rb") as f:
                idx = pickle.load(f)
            return idx, {"cached": True, "seconds": time.perf_counter() - t0, "first_episode_s": 0.0}
        except Exception:  # noqa: BLE001 - a stale/corrupt cache is rebuilt
            log.warning("index cache %s unreadable; rebuilding", cpath)
    layout = src.splits[split]
    file_idx, offs, sizes, lengths, acts, states, langs, robots = [], [], [], [], [], [], [], []
    strings: dict[str, int] = {}

    def sid(s: str) -> int:
        if s not in strings:
            strings[s] = len(strings)
        return strings[s]

    first_s = None
    for fi, path in enumerate(layout.files):
        count = 0
        for off, n in iter_records(path):
            where = f"{path} (record at byte {off})"
            ex = parse_example(read_record(path, off, n), where)
            try:
                lab = labels_of(ex, spec, where)
            except (ValueError, IndexError, TypeError) as exc:
                raise CorruptShardError(f"{where}: episode features do not fit the registry spec of {spec.name} "
                                        f"({type(exc).__name__}: {exc}); the shard is corrupt or from another build: "
                                        "re-sync it") from None
            if first_s is None:
                frames_of(ex, spec, where)  # check the camera key exists now, not mid-run
                first_s = time.perf_counter() - t0
            file_idx.append(fi)
            offs.append(off)
            sizes.append(n)
            lengths.append(lab["T"])
            acts.append(lab["action"])
            states.append(lab["state"])
            langs.append(np.array([sid(s) for s in lab["language"]], np.int32))
            robots.append(sid(lab["robot"]))
            count += 1
        if count != layout.shard_lengths[fi]:
            raise CorruptShardError(f"{path}: holds {count} episodes but dataset_info.json says "
                                    f"{layout.shard_lengths[fi]}; the shard is corrupt or from another build: re-sync")
    lengths_a = np.asarray(lengths, np.int32)
    idx = SplitIndex(
        split=split, files=list(layout.files), file_idx=np.asarray(file_idx, np.int32),
        offset=np.asarray(offs, np.int64), nbytes=np.asarray(sizes, np.int64), length=lengths_a,
        step_start=np.concatenate([[0], np.cumsum(lengths_a, dtype=np.int64)]),
        action=np.concatenate(acts) if acts else np.zeros((0, spec.action_dims), np.float32),
        state=np.concatenate(states) if states else np.zeros((0, spec.state_dims), np.float32),
        lang_id=np.concatenate(langs) if langs else np.zeros(0, np.int32),
        robot_id=np.asarray(robots, np.int32), strings=list(strings))
    if cpath is not None:
        try:
            cpath.parent.mkdir(parents=True, exist_ok=True)
            tmp = cpath.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                pickle.dump(idx, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cpath)
        except OSError as exc:
            log.warning("could not write index cache %s: %s", cpath, exc)
    return idx, {"cached": False, "seconds": time.perf_counter() - t0, "first_episode_s": first_s or 0.0}


def reduce_action(idx: SplitIndex, e: int, t: int, k: int, kind: str) -> np.ndarray:
    """The label of pair (t, t+k) of episode e: ``delta`` sums a[t:t+k], ``absolute`` a[t+k] - a[t], ``none`` []."""
    s = int(idx.step_start[e])
    a = idx.action
    if a.shape[1] == 0 or kind == "none":
        return np.zeros(0, np.float32)
    if kind == "absolute":
        return a[s + t + k] - a[s + t]
    return a[s + t: s + t + k].sum(axis=0)
