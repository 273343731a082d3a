"""Start-up and memory at scale (docs/data_at_scale.md): ``hlrp data bench --cold [--first-batch-only]
[--processes N]``.

``--cold``: a fresh index cache directory, and every shard of the configured datasets evicted from the page cache
(``posix_fadvise(DONTNEED)``, no root needed) before the loader is built, so the first batch pays every read.
Reports first batch seconds, bytes read before the first batch (this process's ``read`` syscalls from
``/proc/self/io`` and the TFRecord layer's own count, split into record bytes and header bytes), peak RSS, and
USS / PSS / RSS (psutil) plus the RSS and PSS of the index cache's memory maps.

``--processes N``: N loader processes on one (cold) cache, started together; after the first batch each maps the
whole index of its datasets (every shard scanned, as after a long run) and waits for the others, then reports its
figures: PSS of the shared index counts it once across the processes (each shows about 1/N of its RSS).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any


def _io() -> dict:
    out = {}
    try:
        with open("/proc/self/io") as f:
            for line in f:
                k, v = line.split(":")
                out[k.strip()] = int(v)
    except OSError:
        pass
    return out


def mapped_mb(prefix: str) -> dict:
    """RSS and PSS (MiB) of this process's memory maps of files under ``prefix`` (from /proc/self/smaps)."""
    rss = pss = 0
    take = False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                parts = line.split()
                if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                    take = len(parts) >= 6 and parts[5].startswith(prefix)
                elif take and parts[0] == "Rss:":
                    rss += int(parts[1])
                elif take and parts[0] == "Pss:":
                    pss += int(parts[1])
    except OSError:
        pass
    return {"rss_mb": round(rss / 1024, 3), "pss_mb": round(pss / 1024, 3)}


def memory() -> dict:
    import psutil

    from .bench import peak_rss_mb

    m = psutil.Process().memory_full_info()
    return {"rss_mb": round(m.rss / 2 ** 20, 1), "uss_mb": round(m.uss / 2 ** 20, 1),
            "pss_mb": round(getattr(m, "pss", 0) / 2 ** 20, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def evict(cfg: Any) -> int:
    """Drop every shard of the configured datasets from the page cache; returns the bytes advised."""
    from . import registry as reg
    from .sources import data_root_of, resolve_source
    from .tfrecord import is_remote

    d = cfg.data
    total = 0
    for e in d.dataset.oxe.datasets:
        src = resolve_source(reg.get(e.name), d.adapter.tf.tfds_read, data_root_of(d),
                             d.adapter.versions.get(e.name, ""))
        for lay in src.splits.values():
            for path in lay.files:
                if is_remote(path):
                    continue
                fd = os.open(path, os.O_RDONLY)
                try:
                    total += os.fstat(fd).st_size
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
    return total


def first_batch(cfg: Any, cold: bool = True, touch_index: bool = False, barrier=None) -> dict:
    """Build a loader, take one train batch; the figures of the docstring."""
    import torch  # noqa: F401 - part of the import baseline, not of the loader's cost

    from . import tfrecord
    from .loader import PairLoader

    out: dict = {}
    if cold:
        out["evicted_mb"] = round(evict(cfg) / 2 ** 20, 1)
    base = memory()
    io0, tr0 = _io(), tfrecord.BYTES_READ.snapshot()
    t0 = time.perf_counter()
    loader = PairLoader(cfg, with_val=False)
    t_init = time.perf_counter()
    try:
        loader.next_train()
        out["first_batch_s"] = round(time.perf_counter() - t0, 3)
        io1, tr1 = _io(), tfrecord.BYTES_READ.snapshot()
        out.update({"bytes_read_before_first_batch": io1.get("rchar", 0) - io0.get("rchar", 0),
                    "disk_bytes_before_first_batch": io1.get("read_bytes", 0) - io0.get("read_bytes", 0),
                    "tfrecord_bytes": tr1["bytes"] - tr0["bytes"], "records_read": tr1["records"] - tr0["records"],
                    "headers_read": tr1["headers"] - tr0["headers"]})
        st = loader.stats()
        out["shards_scanned"] = st["shards_scanned"]
        out["stage_s"] = st["stage_s"]  # summed over threads; prefetch_wall is the wall time of concurrent reads
        out["loader_init_s"] = round(t_init - t0, 3)
        out["short_episodes_skipped"] = st["short_episodes_skipped"]
        out["episodes"] = {ds.name: ds.train.num_episodes for ds in loader.datasets}
        out["shards"] = {ds.name: len(ds.train.files) for ds in loader.datasets}
        if touch_index:
            t1 = time.perf_counter()
            for ds in loader.datasets:
                for s in range(len(ds.train.files)):
                    ds.train.ensure_shard(s)
                _ = int(ds.train.records[:, 0].sum() + ds.train.lengths.sum())  # map every page
            out["touch_index_s"] = round(time.perf_counter() - t1, 3)
        if barrier is not None:
            barrier.wait(120)
        out["memory_after_first_batch"] = memory()
        out["import_baseline"] = base
        cache = str(loader.datasets[0].train.cache_path.parent) if loader.datasets[0].train.cache_path else ""
        out["index_cache_maps"] = mapped_mb(cache) if cache else {}
        out["index_cache_file_mb"] = round(sum(ds.train.cache_bytes() for ds in loader.datasets) / 2 ** 20, 3)
        if barrier is not None:
            barrier.wait(120)  # every process measured while all are alive
    finally:
        loader.close()
    return out


def _child(cfg_args: dict, cache_dir: str, barrier, queue) -> None:
    try:
        cfg = _load(cfg_args, cache_dir)
        queue.put(first_batch(cfg, cold=False, touch_index=True, barrier=barrier))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        barrier.abort()
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _load(cfg_args: dict, cache_dir: str):
    from types import SimpleNamespace

    from .bench import config_for

    args = SimpleNamespace(**cfg_args)
    args.overrides = list(args.overrides) + [f"data.adapter.index_cache_dir={cache_dir}"]
    return config_for(args)


def run_scale(args, log=print) -> dict:
    """``hlrp data bench --cold`` / ``--processes N``: see the module docstring."""
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="hlrp-index-cold-")
    cfg_args = {"overrides": list(args.overrides), "root": args.root, "experiment": args.experiment,
                "datasets": args.datasets}
    res: dict = {"index_cache_dir": cache_dir}
    cfg = _load(cfg_args, cache_dir)
    if int(args.processes or 1) <= 1:
        res.update(first_batch(cfg, cold=bool(args.cold)))
        return res
    import multiprocessing as mp

    n = int(args.processes)
    if args.cold:
        res["evicted_mb"] = round(evict(cfg) / 2 ** 20, 1)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(cfg_args, cache_dir, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    res["processes"] = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    maps = [r.get("index_cache_maps", {}) for r in res["processes"]]
    res["index_rss_mb_sum"] = round(sum(m.get("rss_mb", 0) for m in maps), 3)
    res["index_pss_mb_sum"] = round(sum(m.get("pss_mb", 0) for m in maps), 3)
    log(f"{n} processes on one cache: index maps RSS sum {res['index_rss_mb_sum']} MiB, PSS sum "
        f"{res['index_pss_mb_sum']} MiB (shared pages counted once)")
    return res


def print_scale(res: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(res))
        return
    for k, v in res.items():
        print(f"{k:32s} {v}")

