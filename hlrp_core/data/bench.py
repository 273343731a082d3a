"""Loader-only benchmark (docs/data_at_scale.md): ``hlrp data bench`` and ``notebooks/01_data_throughput.ipynb``
both call :func:`run_bench`.

Measures, on the same cores and thread count:
- loader pairs/s over ``batches`` batches after ``warmup`` batches (metadata on, mixing on);
- the decode + resize bound B: the same frames (JPEG bytes already in RAM) decoded and resized to the target by the
  cheapest correct path (DCT-scaled ``draft`` when the source is >= 2x the target, then bilinear), split into one
  contiguous chunk per thread, no I/O, no mixing; and the bare full-size decode rate;
- R = pairs/s / B, first-batch seconds, peak RSS, RSS and thread count after each of 10 validation cycles, per-stage
  seconds, realised dataset shares, and the time ``close()`` takes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from typing import Any, Optional

import numpy as np


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_chunks(fn, items: list, threads: int) -> float:
    """Run ``fn(chunk)`` over ``threads`` contiguous chunks in parallel; return wall seconds."""
    chunks = [items[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=fn, args=(c,), name=f"hlrp-bench-{i}") for i, c in enumerate(chunks)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def decode_bound(pairs: list[list[bytes]], size: int, mode: str, threads: int) -> dict:
    """B (decode + resize, pairs/s) and the bare full-size decode rate over the given frames (bytes in RAM)."""
    from .decode import decode_only, decode_resize

    T = max(len(p) for p in pairs)

    def resize_chunk(chunk):
        out = np.zeros((3, T, size, size), np.uint8)
        for p in chunk:
            for j, b in enumerate(p):
                decode_resize(b, size, mode, out=out[:, j], chw=True)

    def bare_chunk(chunk):
        for p in chunk:
            for b in p:
                decode_only(b)

    t_bound = _run_chunks(resize_chunk, pairs, threads)
    t_bare = _run_chunks(bare_chunk, pairs, threads)
    return {"decode_bound_pairs_per_s": len(pairs) / t_bound, "bare_decode_pairs_per_s": len(pairs) / t_bare}


def reference_bench(loader, batches: int, warmup: int, timeout_s: float = 600.0) -> dict:
    """Run the Octo/dlimp-style tf.data pipeline (``hlrp_core.data.reference``) on the loader's datasets, in a child
    process on the same cores, and return its figures (``reference_*`` keys) or ``{"reference_error": ...}``."""
    import subprocess
    import tempfile

    spec = {"threads": loader.threads, "batch_size": loader.batch_size, "image_size": loader.size,
            "batches": batches, "warmup": warmup, "shuffle": 1000,
            "datasets": [{"files": ds.train.files, "image_feature": f"steps/{ds.spec.image_path}",
                          "k": ds.k_min, "weight": ds.weight} for ds in loader.datasets]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        out = subprocess.run([sys.executable, "-m", "hlrp_core.data.reference", f.name], capture_output=True,
                             text=True, timeout=timeout_s, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode != 0 or not line:
            return {"reference_error": (out.stderr or out.stdout)[-500:]}
        return json.loads(line[-1])
    except subprocess.TimeoutExpired:
        return {"reference_error": f"timed out after {timeout_s} s"}
    finally:
        os.unlink(f.name)


def run_bench(cfg: Any, batches: Optional[int] = None, warmup: Optional[int] = None,
              val_cycles: Optional[int] = None, rounds: Optional[int] = None, reference: Optional[bool] = None,
              log=print) -> dict:
    """Benchmark the loader for ``cfg`` (a loaded ``Config``); sizes default to ``cfg.data.bench``. Returns the
    figures as a dict (see the module docstring; ``--json`` prints it)."""
    import torch  # noqa: F401 - part of the import baseline, not of the loader's RSS

    from .loader import PairLoader

    bc = (cfg.data if hasattr(cfg, "data") else cfg).bench
    batches = bc.batches if batches is None else batches
    warmup = bc.warmup if warmup is None else warmup
    val_cycles = bc.val_cycles if val_cycles is None else val_cycles
    rounds = bc.rounds if rounds is None else rounds
    reference = bc.reference if reference is None else reference
    base_rss = rss_mb()
    threads_before = threading.active_count()
    t0 = time.perf_counter()
    loader = PairLoader(cfg)
    out: dict[str, Any] = {}
    try:
        bs = loader.batch_size
        startup_s = time.perf_counter() - t0
        for _ in range(warmup):
            loader.next_train()
        out["first_batch_s"] = round(loader.first_batch_s or 0.0, 3)
        loader_rates, bound, bare, stage_s, cpu_rates, cpu_util = [], [], [], {}, [], []
        for r in range(rounds):
            s0 = dict(loader.timers.s)
            i_start = loader.next_index
            tb, cb = time.perf_counter(), time.process_time()
            for _ in range(batches):
                loader.next_train()
            dt, cpu = time.perf_counter() - tb, time.process_time() - cb
            loader_rates.append(batches * bs / dt)
            cpu_rates.append(batches * bs / max(cpu, 1e-9))
            cpu_util.append(cpu / dt)
            stage_s = {k: round(v - s0.get(k, 0.0), 3) for k, v in loader.timers.s.items()}
            # the same frames, from RAM: bound and bare decode on the same thread count
            keys = loader.keys(i_start, min(batches * bs, 4000))
            pairs = []
            from ..config.data import frame_offsets

            for di, pos, t_, k_ in keys.tolist():
                ds = loader.datasets[di]
                fr = loader.episode(ds, "train", pos).frames
                pairs.append([fr[t_ + o] for o in frame_offsets(loader.pf.mode, loader.pf.stride, loader.pf.n, k_)])
            b = decode_bound(pairs, loader.size, loader.mode, loader.threads)
            bound.append(b["decode_bound_pairs_per_s"])
            bare.append(b["bare_decode_pairs_per_s"])
            log(f"round {r}: loader {loader_rates[-1]:.1f} pairs/s, bound B {bound[-1]:.1f}, bare decode "
                f"{bare[-1]:.1f}, R {loader_rates[-1] / bound[-1]:.3f}")
        train_rss = rss_mb()
        rss_val, thr_val = [], []
        for _ in range(val_cycles):
            for _vb in loader.val_batches():
                pass
            rss_val.append(round(rss_mb(), 1))
            thr_val.append(threading.active_count())
        st = loader.stats()
        pps, B = float(np.median(loader_rates)), float(np.median(bound))
        out.update({
            "pairs_per_s": round(pps, 2), "decode_bound_pairs_per_s": round(B, 2),
            "bare_decode_pairs_per_s": round(float(np.median(bare)), 2), "ratio": round(pps / B, 4),
            "pairs_per_s_rounds": [round(x, 2) for x in loader_rates],
            "pairs_per_cpu_s": round(float(np.median(cpu_rates)), 2),
            "cpu_utilisation": round(float(np.median(cpu_util)), 3),
            "decode_bound_rounds": [round(x, 2) for x in bound],
            "ratio_best_round": round(max(a / b for a, b in zip(loader_rates, bound)), 4),
            "startup_s": round(startup_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "import_baseline_rss_mb": round(base_rss, 1), "rss_after_train_mb": round(train_rss, 1),
            "loader_rss_mb": round(train_rss - base_rss, 1),
            "rss_after_val_cycles_mb": rss_val, "threads_after_val_cycles": thr_val,
            "num_datasets": len(loader.dataset_names), "batch_size": bs, "image_size": loader.size,
            "threads": loader.threads, "batches": batches, "warmup": warmup, "rounds": rounds,
            "stage_s_last_round": stage_s, "realised_share": st["realised_share"],
            "episode_cache_mb": st["episode_cache_mb"], "episode_cache_hit_rate": st["episode_cache_hit_rate"],
            "val_samples": st["val_samples"], "input_wait_s": st["input_wait_s"],
            "startup_report": loader.report,
        })
        if reference:
            log("running the Octo/dlimp-style tf.data reference pipeline in a child process ...")
            ref = reference_bench(loader, batches, warmup)
            out.update(ref)
            if "reference_pairs_per_s" in ref:
                out["speedup_vs_reference"] = round(pps / ref["reference_pairs_per_s"], 3)
                out["cpu_efficiency_vs_reference"] = round(out["pairs_per_cpu_s"] / ref["reference_pairs_per_cpu_s"],
                                                           3)
    finally:
        tc = time.perf_counter()
        loader.close()
        out["close_s"] = round(time.perf_counter() - tc, 3)
        out["loader_threads_left"] = [t.name for t in threading.enumerate() if t.name.startswith("hlrp-data")]
        out["threads_before"] = threads_before
        out["threads_after_close"] = threading.active_count()
    return out


# ---------------------------------------------------------------------------------------------------------------- CLI
def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments ``config_for`` reads; shared by ``hlrp data bench``, ``stats`` and ``verify``."""
    p.add_argument("--datasets", default=None,
                   help="all29 | embedded | NAME,NAME,... (replaces the config's dataset list; equal weights, "
                        "splits train[:90%%]/train[90%%:])")
    p.add_argument("--root", default=None, help="data root (sets data.root); default: the config's / embedded data")
    p.add_argument("--experiment", default="", help="experiment preset to start from")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set data=oxe_local_spe0 --set data.loader.batch_size=48)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--batches", type=int, default=None, help="measured batches per round (default data.bench.batches)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up batches (default data.bench.warmup)")
    p.add_argument("--rounds", type=int, default=None, help="measurement rounds, median reported")
    p.add_argument("--val-cycles", type=int, default=None, help="validation passes (RSS logged after each)")
    p.add_argument("--reference", action="store_true", default=None,
                   help="also run the Octo/dlimp-style tf.data pipeline on the same data (child process)")
    p.add_argument("--json", action="store_true", help="print one JSON object only")
    p.add_argument("--cold", action="store_true",
                   help="start-up at scale: fresh index cache, shards evicted from the page cache; reports first "
                        "batch, bytes read before it, peak RSS, USS/PSS (docs/data_at_scale.md)")
    p.add_argument("--processes", type=int, default=1,
                   help="with --cold: N loader processes on one cache (the shared index's PSS is counted once)")
    p.add_argument("--cache-dir", default="", help="index cache directory for --cold (default: a new temp dir)")


def config_for(args) -> Any:
    from ..config import load
    from ..config.data import DatasetEntry, validate_data
    from ..config.errors import ConfigError

    overrides = list(args.overrides)
    if args.root:
        overrides.append(f"data.root={args.root}")
    cfg = load(args.experiment, overrides)
    if args.datasets:
        from . import registry as reg

        names = reg.resolve_list(args.datasets)
        cfg.data.dataset.oxe.datasets = [
            DatasetEntry(n, "train[:90%]", "train[90%:]", reg.get(n).pair_offset_steps, weight=1.0) for n in names]
        cfg.data.dataset.name = str(args.datasets)
        problems: list[str] = []
        validate_data(cfg.data, problems)
        if problems:
            raise ConfigError(problems)
    return cfg


def cmd_bench(args) -> int:
    from ..config.errors import ConfigError
    from .episode import LayoutError
    from .sources import DataSourceError
    from .tfrecord import CorruptShardError

    if args.cold or args.processes > 1:
        from .bench_scale import print_scale, run_scale

        try:
            res = run_scale(args, log=(lambda *a: None) if args.json else print)
        except (ConfigError, DataSourceError, CorruptShardError, LayoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print_scale(res, args.json)
        return 0
    try:
        cfg = config_for(args)
        res = run_bench(cfg, batches=args.batches, warmup=args.warmup, val_cycles=args.val_cycles,
                        rounds=args.rounds, reference=args.reference,
                        log=(lambda *a: None) if args.json else print)
    except (ConfigError, DataSourceError, CorruptShardError, LayoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
        return 0
    for r in res.get("startup_report", []):
        print(f"  {r['dataset']:40s} {r['source']:12s} v{r['version']:6s} train {r['train_episodes']:7d} "
              f"val {r['val_episodes']:5d} shards {r['shards']:5d} first {r['first_element_s']:.3f}s")
    keys = ["num_datasets", "batch_size", "image_size", "threads", "pairs_per_s", "decode_bound_pairs_per_s",
            "bare_decode_pairs_per_s", "ratio", "first_batch_s", "startup_s", "peak_rss_mb", "loader_rss_mb",
            "rss_after_val_cycles_mb", "threads_after_val_cycles", "stage_s_last_round", "close_s",
            "loader_threads_left", "pairs_per_cpu_s", "cpu_utilisation", "reference_pairs_per_s", "reference_pairs_per_cpu_s",
            "reference_cpu_utilisation", "reference_peak_rss_mb", "speedup_vs_reference",
            "cpu_efficiency_vs_reference",
            "reference_error"]
    for k in keys:
        if k in res:
            print(f"{k:28s} {res.get(k)}")
    return 0
