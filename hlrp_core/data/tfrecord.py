"""TFRecord framing without TensorFlow: header-only offset scans, byte-range record reads with the CRC check, and
the ``tf.train.Example`` proto class.

A TFRecord file is a sequence of ``uint64 length | uint32 masked_crc32c(length) | payload | uint32
masked_crc32c(payload)`` (little endian). :func:`scan_offsets` reads only the 12-byte headers (seeking past each
payload), so indexing a shard costs 12 bytes per episode instead of the episode's bytes (docs/data_at_scale.md).
:func:`read_record` reads one payload plus its CRC by byte range, locally (``os.pread``) or from ``gs://`` (a
seek + read on a ``GFile``: never the whole shard). The CRC is crc32c in C (``google-crc32c``), the same check
TensorFlow's reader does (it reports ``DATA_LOSS``); a flipped byte is therefore never trained on silently.

Every byte this module reads is counted in :data:`BYTES_READ` (``headers`` counts scan reads): the benchmark's
"bytes read before the first batch".
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Optional

import numpy as np


class CorruptShardError(RuntimeError):
    """A shard that cannot be read as TFRecords of RLDS episodes; the message names the file and the offset."""


class _Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self.bytes = 0
        self.records = 0
        self.headers = 0

    def add(self, n: int, records: int = 0, headers: int = 0) -> None:
        with self._lock:
            self.bytes += int(n)
            self.records += records
            self.headers += headers

    def snapshot(self) -> dict:
        with self._lock:
            return {"bytes": self.bytes, "records": self.records, "headers": self.headers}


#: Bytes / records / headers read by this process through this module.
BYTES_READ = _Counter()

_MASK_DELTA = 0xA282EAD8


def _crc32c():
    import google_crc32c

    return google_crc32c.value


def masked_crc(data: bytes) -> int:
    """TFRecord's masked crc32c of ``data``."""
    c = _crc32c()(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def is_remote(path: str) -> bool:
    """A URL that TensorFlow's gfile reads (``gs://``; tests use its in-process ``ram://``), not a local path."""
    return "://" in str(path)


def _gfile(path: str):
    from .tfenv import import_tf

    return import_tf().io.gfile.GFile(path, "rb")


def file_size(path: str) -> int:
    if is_remote(path):
        from .tfenv import import_tf

        return int(import_tf().io.gfile.stat(path).length)
    return os.path.getsize(path)


#: Header scans read this many bytes at a time while records are tiny (below ``SCAN_CHUNK // 64`` = 4 KiB: label-only
#: datasets), so such a shard costs a few reads, not one per record; other records are skipped by seeking (12 bytes).
SCAN_CHUNK = 256 * 1024


def scan_offsets(path: str, check_header_crc: bool = True, start: int = 0,
                 count: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """(payload offsets int64 [n], payload lengths int64 [n]) of the records of one shard from byte ``start`` (a
    record boundary), at most ``count`` of them (None = to the end of the file), from their headers only.

    Raises ``CorruptShardError`` naming the file and byte offset on a truncated file, a length that runs past the
    end, or (``check_header_crc``) a header whose length CRC does not match."""
    size = file_size(path)
    offs: list[int] = []
    lens: list[int] = []
    local = not is_remote(path)
    fd = os.open(path, os.O_RDONLY) if local else None
    f = None if local else _gfile(path)
    value = _crc32c()
    buf, buf_at = b"", 0
    try:
        off, last = int(start), SCAN_CHUNK
        while off < size and (count is None or len(offs) < count):
            if not (buf_at <= off and off + 12 <= buf_at + len(buf)):
                want = min(SCAN_CHUNK if last < SCAN_CHUNK // 64 else 12, size - off)
                if local:
                    buf = os.pread(fd, want, off)  # one syscall per header: the scan is latency-bound
                else:
                    f.seek(off)
                    buf = f.read(want)
                buf_at = off
                BYTES_READ.add(len(buf), headers=1)
            head = buf[off - buf_at: off - buf_at + 12]
            if len(head) < 12:
                raise CorruptShardError(f"{path}: truncated TFRecord header at byte {off} (file size {size}); the "
                                        "shard is corrupt or partially copied: re-sync it")
            (n,) = struct.unpack("<Q", head[:8])
            if check_header_crc:
                c = value(head[:8])
                want_crc = ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF
                if struct.unpack("<I", head[8:12])[0] != want_crc:
                    raise CorruptShardError(f"{path}: TFRecord header at byte {off} fails its CRC (the length field "
                                            "is damaged); the shard is corrupt: re-sync it (hlrp data verify lists "
                                            "every broken shard)")
            if off + 12 + n + 4 > size:
                raise CorruptShardError(f"{path}: TFRecord at byte {off} claims {n} bytes but the file has {size}; "
                                        "the shard is corrupt or truncated: re-sync it")
            offs.append(off + 12)
            lens.append(n)
            off += 12 + n + 4
            last = n
    finally:
        if fd is not None:
            os.close(fd)
        if f is not None:
            f.close()
    return np.asarray(offs, np.int64), np.asarray(lens, np.int64)


def read_record(path: str, offset: int, length: int, fd: Optional[int] = None, verify: bool = True) -> bytes:
    """The payload of the record at ``offset`` (payload start) of ``length`` bytes; with ``verify`` its trailing
    CRC is read in the same call and checked (``CorruptShardError`` naming file and offset when it differs)."""
    want = length + 4 if verify else length
    if is_remote(path):
        with _gfile(path) as f:
            f.seek(offset)
            data = f.read(want)
    elif fd is not None:
        data = os.pread(fd, want, offset)
    else:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(want)
    BYTES_READ.add(len(data), records=1)
    if len(data) != want:
        raise CorruptShardError(f"{path}: short read at byte {offset} ({len(data)} of {want} bytes); re-sync it")
    if not verify:
        return data
    payload = data[:length]
    if struct.unpack("<I", data[length:])[0] != masked_crc(payload):
        raise CorruptShardError(f"{path}: record at byte {offset - 12} ({length} bytes) fails its TFRecord CRC "
                                "(the bytes on disk changed after writing); re-sync this shard, or set "
                                "data.adapter.bad_records=skip to skip and count such records")
    return payload


_EXAMPLE_CLS = None


def example_cls():
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


def parse_example(raw: bytes, where: str):
    try:
        return example_cls().FromString(raw)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise CorruptShardError(f"{where}: not a tf.train.Example ({type(exc).__name__}); the shard is corrupt: "
                                "re-sync it or drop the dataset (weight: 0)") from None
