"""Dataset statistics as Octo writes them (``dataset_statistics.json``): action and proprio mean, std, min, max, q01,
q99, num_transitions, num_trajectories, keyed by the shards they were computed from (name, size, mtime).

``hlrp data stats`` computes them over every episode of a split: parallel over shards within the thread budget,
resumable (each finished shard's per-step arrays are kept as ``stats-<shard>.npz`` in the split's index cache
directory until the merge), with a progress line. Until a full pass exists, :func:`estimate` gives the same fields
at once from a fixed seeded sample of episodes, marked ``"estimate": true`` with its tolerance for the mean.
Files land in the split's index cache directory (docs/data_at_scale.md).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..io import atomic_write_json

STATS_FILE = "dataset_statistics.json"
#: Episodes in the seeded sample estimate.
SAMPLE_EPISODES = 64


def _summary(x: np.ndarray) -> dict:
    if x.shape[1] == 0:
        return {k: [] for k in ("mean", "std", "min", "max", "q01", "q99")}
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
            "max": x.max(0).tolist(), "q01": np.quantile(x, 0.01, axis=0).tolist(),
            "q99": np.quantile(x, 0.99, axis=0).tolist()}


def _shard_key(split, s: int) -> str:
    size, mtime = split.shard_state(s)
    return f"{os.path.basename(split.files[s])}:{size}:{mtime}"


def _episode_arrays(split, spec, pos: int, fd: Optional[int] = None):
    from .episode import parse_episode
    from .tfrecord import read_record

    path, off, n = split.record(pos)
    ep = parse_episode(read_record(path, off, n, fd), spec, f"{path} (record at byte {off - 12})", frames=False)
    split.set_length(pos, ep.T)
    return ep.action, ep.state


def compute(split, spec, threads: int = 1, progress=None) -> dict:
    """Full statistics of one ``ShardedSplit`` (written to its cache directory as ``dataset_statistics.json``)."""
    from .tfrecord import is_remote

    cache: Path = split.cache_path
    lock = threading.Lock()

    def one(s: int) -> None:
        part = cache / f"stats-{s:05d}.npz"
        key = _shard_key(split, s)
        if part.is_file():
            with np.load(part) as z:
                if str(z["key"]) == key:
                    return
        split.ensure_shard(s)
        path = split.files[s]
        fd = os.open(path, os.O_RDONLY) if not is_remote(path) else None
        try:
            acts, sts = zip(*[_episode_arrays(split, spec, p, fd) for p in range(int(split.cum[s]),
                                                                                  int(split.cum[s + 1]))])
        finally:
            if fd is not None:
                os.close(fd)
        tmp = cache / f".stats-{s:05d}.{os.getpid()}.{threading.get_ident()}.npz"
        np.savez(tmp, key=key, action=np.concatenate(acts), state=np.concatenate(sts), n=len(acts))
        os.replace(tmp, part)
        if progress is not None:
            with lock:
                progress()

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="hlrp-stats") as pool:
        list(pool.map(one, range(len(split.files))))
    acts, sts, n = [], [], 0
    for s in range(len(split.files)):
        with np.load(cache / f"stats-{s:05d}.npz") as z:
            acts.append(z["action"])
            sts.append(z["state"])
            n += int(z["n"])
    a, st = np.concatenate(acts), np.concatenate(sts)
    out = {"action": _summary(a), "proprio": _summary(st), "num_transitions": int(len(a)), "num_trajectories": n,
           "estimate": False, "shards": [_shard_key(split, s) for s in range(len(split.files))]}
    atomic_write_json(cache / STATS_FILE, out)
    for s in range(len(split.files)):
        (cache / f"stats-{s:05d}.npz").unlink(missing_ok=True)
    return out


def estimate(split, spec, seed: int, n: int = SAMPLE_EPISODES) -> dict:
    """Statistics from a fixed seeded sample of ``n`` episodes (with replacement), marked as an estimate. The
    stated tolerance of each mean is 4 x (between-episode std of the episode means) / sqrt(n)."""
    from .sampler import uniform

    E = split.num_episodes
    pos = np.minimum((uniform(seed, 300, np.arange(n)) * E).astype(np.int64), E - 1)
    acts, sts = zip(*[_episode_arrays(split, spec, int(p)) for p in pos])
    a, st = np.concatenate(acts), np.concatenate(sts)
    out = {"action": _summary(a), "proprio": _summary(st), "estimate": True, "sample_episodes": int(n),
           "num_transitions": int(round(len(a) / n * E)), "num_trajectories": int(E)}
    for key, parts in (("action", acts), ("proprio", sts)):
        if parts[0].shape[1]:
            means = np.stack([p.mean(0) for p in parts])
            out[key]["mean_tolerance"] = (4 * means.std(0) / np.sqrt(n) + 1e-6).tolist()
    return out


def load_stats(split) -> Optional[dict]:
    """The full-pass statistics of a split when present and computed from its current shards, else None."""
    if split.cache_path is None or not (split.cache_path / STATS_FILE).is_file():
        return None
    st = json.loads((split.cache_path / STATS_FILE).read_text())
    if st.get("shards") != [_shard_key(split, s) for s in range(len(split.files))]:
        return None
    return st


def run(cfg: Any, threads: int = 0, sample: bool = False, log=print) -> dict:
    """Statistics of every dataset's train split (``sample``: the seeded estimate only)."""
    from ..config.data import loader_seed
    from ..paths import data_root, resolve
    from ..progress import Ticker
    from .plan import open_datasets

    d = cfg.data
    cd = d.adapter.index_cache_dir
    cache = resolve(cd) if cd else data_root() / ".index_cache"
    threads = threads or d.adapter.threads or max(1, (os.cpu_count() or 2) - 1)
    out = {}
    for ds in open_datasets(d, loader_seed(cfg), cache, "episode"):
        if sample:
            out[ds.name] = estimate(ds.train, ds.spec, ds.seed)
        else:
            tick = Ticker(len(ds.train.files), f"{ds.name} statistics", unit="shard")
            out[ds.name] = compute(ds.train, ds.spec, threads, tick)
            tick.close()
        st = out[ds.name]
        log(f"{ds.name:50s} transitions {st['num_transitions']:9d} trajectories {st['num_trajectories']:7d}"
            f"{' (estimate)' if st['estimate'] else ''}  {ds.train.cache_path / STATS_FILE if not sample else ''}")
    return out


def cmd_stats(args) -> int:
    from ..progress import cli_progress_lines

    cli_progress_lines()
    from ..config.errors import ConfigError
    from .bench import config_for
    from .sources import DataSourceError
    from .tfrecord import CorruptShardError

    try:
        res = run(config_for(args), threads=args.threads, sample=args.sample)
    except (ConfigError, DataSourceError, CorruptShardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    return 0


def register(data_sub) -> None:
    p = data_sub.add_parser("stats", help="dataset_statistics.json per dataset (parallel, resumable; --sample: "
                                          "seeded estimate at once)")
    from .bench import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="parallel shards (default data.adapter.threads)")
    p.add_argument("--sample", action="store_true", help="only the seeded sample estimate (marked as such)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)


def normalizer(st: dict, mode: str):
    """``f(action, state) -> (action, state)`` for ``data.preprocess.normalize`` from full-pass statistics."""
    def one(x: np.ndarray, s: dict) -> np.ndarray:
        if x.shape[1] == 0:
            return x
        if mode == "gaussian":
            return ((x - np.asarray(s["mean"], np.float32)) / (np.asarray(s["std"], np.float32) + 1e-8)).astype(
                np.float32)
        lo, hi = np.asarray(s["q01"], np.float32), np.asarray(s["q99"], np.float32)
        return np.clip(2 * (x - lo) / np.maximum(hi - lo, 1e-8) - 1, -1, 1).astype(np.float32)

    return lambda a, s: (one(a, st["action"]), one(s, st["proprio"]))


def normalizers_for(datasets: list, mode: str) -> tuple[dict, dict]:
    """({name: statistics}, {dataset id: normalizer}) for the loader; a dataset without full-pass statistics for
    its current shards is an error naming the command that computes them."""
    from .sources import DataSourceError

    stats, norm = {}, {}
    for ds in datasets:
        st = load_stats(ds.train)
        if st is None:
            raise DataSourceError(f"data.preprocess.normalize={mode} needs the full-pass statistics of {ds.name} "
                                  f"(none for its current shards in {ds.train.cache_path}); run `hlrp data stats "
                                  f"--datasets {ds.name}` with the same data.root and index cache, or set "
                                  "data.preprocess.normalize=none")
        stats[ds.name] = st
        norm[ds.id] = normalizer(st, mode)
    return stats, norm
