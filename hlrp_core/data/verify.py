"""``hlrp data verify``: check every record of a mirror (TFRecord framing, CRC, parse against the registry) and
record every episode length in the index cache (what ``data.adapter.tf.sampling.unit=step`` needs).

Parallel over shards within the thread budget (``--threads``, default ``data.adapter.threads``); resumable: each
finished shard is recorded in ``<index cache>/<split dir>/verify.json`` with the shard's size and mtime, so a
second run skips shards already verified and unchanged. Broken shards are listed with the first error of each.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..io import atomic_write_json


def verify_split(split, spec, threads: int, progress=None) -> dict:
    """Verify one ``ShardedSplit``; returns {"shards", "verified", "skipped_unchanged", "broken": {path: error}}."""
    from .episode import LayoutError, parse_episode
    from .tfrecord import CorruptShardError, is_remote, read_record

    state_path = split.cache_path / "verify.json" if split.cache_path else None
    done: dict = {}
    if state_path is not None and state_path.is_file():
        done = json.loads(state_path.read_text())
    lock = threading.Lock()
    broken: dict[str, str] = {}
    counts = {"verified": 0, "skipped_unchanged": 0, "episodes": 0}

    def one(s: int) -> None:
        path = split.files[s]
        state = list(split.shard_state(s))
        if done.get(os.path.basename(path)) == state:
            with lock:
                counts["skipped_unchanged"] += 1
            return
        try:
            split.ensure_shard(s)
            a, b = int(split.cum[s]), int(split.cum[s + 1])
            fd = os.open(path, os.O_RDONLY) if not is_remote(path) else None
            try:
                for pos in range(a, b):
                    off, n = (int(x) for x in split.records[pos])
                    ep = parse_episode(read_record(path, off, n, fd), spec, f"{path} (record at byte {off - 12})",
                                       frames=True)
                    split.set_length(pos, ep.T)
                    split.failed[pos] = 1 if ep.success is False else 0
            finally:
                if fd is not None:
                    os.close(fd)
            with lock:
                counts["verified"] += 1
                counts["episodes"] += b - a
                done[os.path.basename(path)] = state
        except (CorruptShardError, LayoutError, OSError) as exc:
            with lock:
                broken[path] = str(exc)
        if progress is not None:
            progress()

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="hlrp-verify") as pool:
        list(pool.map(one, range(len(split.files))))
    if state_path is not None:
        atomic_write_json(state_path, done)
    return {"shards": len(split.files), **counts, "broken": broken}


def verify(cfg: Any, threads: int = 0, log=print) -> dict:
    """Verify every split of every dataset of ``cfg.data``; returns {dataset: {split: report}}."""
    from ..config.data import loader_seed
    from ..paths import data_root, resolve
    from ..progress import Ticker
    from .plan import open_datasets

    d = cfg.data
    cd = d.adapter.index_cache_dir
    cache = resolve(cd) if cd else data_root() / ".index_cache"
    threads = threads or d.adapter.threads or max(1, (os.cpu_count() or 2) - 1)
    out: dict = {}
    for ds in open_datasets(d, loader_seed(cfg), cache, "episode"):
        out[ds.name] = {}
        splits = {ds.train.split: ds.train, ds.val.split: ds.val}
        for name, sp in splits.items():
            t0, tick = time.perf_counter(), Ticker(len(sp.files), f"verify {ds.name}/{name}", unit="shard")
            rep = verify_split(sp, ds.spec, threads, tick)
            tick.close()
            rep["seconds"] = round(time.perf_counter() - t0, 2)
            out[ds.name][name] = rep
            log(f"{ds.name:50s} {name:8s} shards {rep['shards']:6d} verified {rep['verified']:6d} unchanged "
                f"{rep['skipped_unchanged']:6d} broken {len(rep['broken']):4d} {rep['seconds']:.1f} s")
            for path, err in rep["broken"].items():
                log(f"  BROKEN {path}: {err}")
    return out


def cmd_verify(args) -> int:
    from ..progress import cli_progress_lines

    cli_progress_lines()
    from ..config.errors import ConfigError
    from .bench import config_for
    from .sources import DataSourceError

    try:
        cfg = config_for(args)
        res = verify(cfg, threads=args.threads)
    except (ConfigError, DataSourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    broken = sum(len(r["broken"]) for x in res.values() for r in x.values())
    return 1 if broken else 0


def register(data_sub) -> None:
    p = data_sub.add_parser("verify", help="check every record's CRC and layout; record episode lengths; list "
                                           "broken shards (parallel, resumable)")
    from .bench import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="parallel shards (default data.adapter.threads)")
    p.add_argument("--json", action="store_true", help="also print the report as one JSON object")
    p.set_defaults(func=cmd_verify)
