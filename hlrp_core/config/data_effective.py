"""Effective data knobs and budget arithmetic: what each ``data.adapter.*`` knob became after clamping and
derivation (``effective_knobs``; recorded by ``hlrp_core.runs.start`` under ``data.effective``), the warnings for
knobs that have no effect (``inert_warnings``), the loader's seeds and the frame-offset geometry of a sample.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Optional

from .data_tf import AUTOTUNE


def _data():
    from . import data

    return data


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_NOOP_DEFAULTS: dict[str, Any] = {
    "tf.iterator.persistent": True,
    "tf.train.episode_queue_shuffle_buffer": 1000,
    "tf.train.intra_episode_sample_shuffle_buffer": 200,
    "tf.train.global_stream_shuffle_buffer": 5000,
    "tf.val.episode_queue_shuffle_buffer": 0,
    "tf.val.intra_episode_sample_shuffle_buffer": 0,
    "tf.val.global_stream_shuffle_buffer": 0,
    "tf.pipeline.post_mix_decode_resize": False,
    "tf.mixing.selector_run_length": 1,
    "tf.mixing.parallelism_mode": "full",
    "tf.mixing.python_prefetch_min_ready_datasets": 1,
    "tf.mixing.per_dataset_private_threadpool_size": 16,
}

_NOOP_WHY = {
    "tf.iterator.persistent": "the train iterator is always persistent and validation reads the fixed cached set",
    "tf.train.episode_queue_shuffle_buffer": "samples are drawn independently from the episode index",
    "tf.train.intra_episode_sample_shuffle_buffer": "samples are drawn independently from the episode index",
    "tf.train.global_stream_shuffle_buffer": "samples are drawn independently from the episode index",
    "tf.val.episode_queue_shuffle_buffer": "the val set is a fixed key list",
    "tf.val.intra_episode_sample_shuffle_buffer": "the val set is a fixed key list",
    "tf.val.global_stream_shuffle_buffer": "the val set is a fixed key list",
    "tf.pipeline.post_mix_decode_resize": "hlrp always decodes and resizes last, after mixing",
    "tf.mixing.selector_run_length": "only the 'choose' strategy has a selector",
    "tf.mixing.parallelism_mode": "one global thread budget (data.adapter.threads) is split by weight",
    "tf.mixing.python_prefetch_min_ready_datasets": "there is no per-dataset initial fill under index sampling",
    "tf.mixing.per_dataset_private_threadpool_size": "one shared thread pool serves every dataset",
}


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def inert_warnings(d: DataConfig) -> list[str]:
    """C11 and the no-op column: one message per knob set to a value that has no effect."""
    out = []
    for key, default in _NOOP_DEFAULTS.items():
        val = _get(d.adapter, key)
        if val != default:
            if key == "tf.mixing.selector_run_length" and d.adapter.tf.mixing.strategy == "choose":
                continue
            out.append(f"data.adapter.{key}={val!r} has no effect in hlrp ({_NOOP_WHY[key]})")
    t = d.adapter.tf
    if t.mixing.strategy == "python" and t.train.global_stream_shuffle_buffer not in (0, 5000):
        out.append("data.adapter.tf.train.global_stream_shuffle_buffer is ignored with mixing.strategy=python "
                   "(as in the predecessor)")
    if d.loader.prefetch_factor is not None:
        out.append(f"data.loader.prefetch_factor={d.loader.prefetch_factor} has no effect (the adapter prefetches by "
                   "bytes: data.adapter.tf.prefetch.final_stream_buffer, data.adapter.ram_budget_mb)")
    if not t.tfds_read.skip_steps_decoding:
        out.append("data.adapter.tf.tfds_read.skip_steps_decoding=false is legacy: hlrp still keeps frames encoded "
                   "and decodes only the used frames, last")
    if not d.preprocess.return_metadata:
        out.append("data.preprocess.return_metadata=false: hlrp always returns a dict batch; use batch['frames']")
    ti = t.tfds_read.interleave_parallelism
    cyc = t.tfds_read.cycle_length
    if ti != AUTOTUNE and cyc != AUTOTUNE and ti > cyc:
        out.append(f"data.adapter.tf.tfds_read.interleave_parallelism={ti} exceeds tfds_read.cycle_length={cyc}: the "
                   f"effective value is {cyc} (derived, C2); this rung differs from baseline only by name")
    pi, ec = t.pipeline.interleave_parallelism, t.pipeline.episode_concurrency
    if pi != AUTOTUNE and ec != AUTOTUNE and pi < ec:
        out.append(f"data.adapter.tf.pipeline.interleave_parallelism={pi} is derived; effective value = "
                   f"episode_concurrency={ec}")
    return out


def loader_seed(cfg: Any) -> int:
    """The loader's sampling seed: ``data.adapter.tf.sampling.seed`` combined with the run seed ``cfg.seed``
    (a ``DataConfig`` alone has no run seed: 0)."""
    d = cfg.data if hasattr(cfg, "data") else cfg
    gseed = int(getattr(cfg, "seed", 0) or 0) if hasattr(cfg, "data") else 0
    return (int(d.adapter.tf.sampling.seed) + 1000003 * gseed) & 0x7FFFFFFF


def per_dataset_seed(seed: int, entry: DatasetEntry) -> int:
    """One dataset's seed from the loader's seed (``loader_seed``) unless the entry sets its own."""
    if entry.seed is not None:
        return int(entry.seed)
    return (int(seed) + zlib.crc32(entry.name.encode())) & 0x7FFFFFFF


BUDGET_SHARE = 0.5  # of the memory headroom per process on a node: the model, optimizer and CUDA need the rest


def local_processes() -> int:
    """Training processes sharing this node's memory (torchrun's ``LOCAL_WORLD_SIZE``, SLURM's tasks per node)."""
    for var in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        try:
            return max(1, int(os.environ.get(var, "")))
        except ValueError:
            continue
    return 1


def loader_budget_mb(requested_mb: int, headroom_bytes: Optional[int] = None,
                     processes: Optional[int] = None) -> tuple[int, str]:
    """(the loader's byte budget in MiB, why it was clamped or ""): ``data.adapter.ram_budget_mb``, but at most
    ``BUDGET_SHARE`` of the memory headroom (host MemAvailable or the memory cgroup's, ``hlrp_core.sysmem``) split
    over the node's training processes, and never below the 64 MiB the config accepts."""
    from ..sysmem import headroom

    room = headroom(host_available=None) if headroom_bytes is None else None
    avail = room.available if room is not None else int(headroom_bytes)
    procs = processes or local_processes()
    cap = max(64, int(avail * BUDGET_SHARE / procs / 2 ** 20))
    if requested_mb <= cap:
        return requested_mb, ""
    where = room.describe() if room is not None else f"headroom {avail / 2 ** 20:.0f} MB"
    return cap, (f"data.adapter.ram_budget_mb={requested_mb} clamped to {cap} MiB: {BUDGET_SHARE} x headroom / "
                 f"{procs} process(es) ({where})")


def effective_knobs(cfg: Any) -> dict[str, Any]:
    """The effective data knobs after clamping and derivation, as a flat {dotted key: value} dict.

    ``cfg`` is a ``Config`` (or a ``DataConfig``). ``hlrp_core.runs.start`` records this under ``data.effective``;
    the loader prints it at startup. Budget knobs report the requested value and what it became.
    """
    d: DataConfig = cfg.data if hasattr(cfg, "data") else cfg
    a, t = d.adapter, d.adapter.tf
    cores = usable_cores()
    threads = a.threads or max(1, cores - 1)
    bs, size = d.loader.batch_size, d.preprocess.image_size
    nf = num_frames(t.pair_frames.mode, t.pair_frames.stride, t.pair_frames.n, None)
    batch_bytes = bs * 3 * size * size * (nf if nf else 2)
    budget_mb, clamp = loader_budget_mb(a.ram_budget_mb)
    budget = budget_mb * 2 ** 20
    queue_bytes = budget // 4
    fsb = t.prefetch.final_stream_buffer
    want_ready = threads if fsb == AUTOTUNE else max(0, fsb)
    ready = max(1, min(want_ready + threads, max(1, queue_bytes // max(1, batch_bytes))))
    weights = _data().resolve_weights(d.dataset.oxe.datasets) if d.dataset.oxe.datasets else {}
    ti, cyc = t.tfds_read.interleave_parallelism, t.tfds_read.cycle_length
    eff: dict[str, Any] = {
        "threads": threads,
        "usable_cores": cores,
        "ram_budget_mb": budget_mb,
        "ram_budget_clamp": clamp,
        "episode_cache_mb": round((budget - queue_bytes) / 2 ** 20, 1),
        "ready_queue_mb": round(queue_bytes / 2 ** 20, 1),
        "batches_in_flight": ready,
        "frames_per_sample": nf if nf else "k+1 (mode=all)",
        "tf.tfds_read.source": t.tfds_read.source,
        "tf.tfds_read.skip_steps_decoding": True,
        "tf.tfds_read.interleave_parallelism": min(ti, cyc) if AUTOTUNE not in (ti, cyc) else threads,
        "tf.tfds_read.decode_parallelism": f"shared pool of {threads} (requested {t.tfds_read.decode_parallelism})",
        "tf.pipeline.transform_parallelism": f"shared pool of {threads} (requested "
                                             f"{t.pipeline.transform_parallelism})",
        "tf.pipeline.episode_concurrency": f"episode cache (requested {t.pipeline.episode_concurrency})",
        "tf.pipeline.interleave_parallelism": t.pipeline.episode_concurrency,
        "tf.pipeline.emit_encoded_pairs": True,
        "tf.pipeline.post_mix_decode_resize": True,
        "tf.prefetch.final_stream_buffer": ready,
        "tf.mixing.strategy": t.mixing.strategy,
        "tf.mixing.mix_block_length": t.mixing.mix_block_length,
        "tf.mixing.stall_timeout_s": t.mixing.python_prefetch_wait_timeout_s,
        "tf.sampling.seed": t.sampling.seed,
        "tf.sampling.samples_per_episode": t.sampling.samples_per_episode,
        "tf.sampling.unit": t.sampling.unit,
        "loader_seed": loader_seed(cfg),
        "verify_crc": a.verify_crc,
        "bad_records": a.bad_records,
        "tf.iterator.persistent": True,
        "no_op_knobs_set": [w.split("=")[0] for w in inert_warnings(d) if "has no effect" in w],
    }
    for name, w in weights.items():
        eff[f"weight.{name}"] = round(w, 6)
        eff[f"thread_share.{name}"] = round(w * threads, 4)
    for e in d.dataset.oxe.datasets:
        if e.name in weights:
            eff[f"seed.{e.name}"] = per_dataset_seed(loader_seed(cfg), e)
    return eff


def num_frames(mode: str, stride: int, n: int, k: Optional[int]) -> Optional[int]:
    """Frames per sample for a pair-frame mode (None when it depends on k and k is unknown)."""
    if mode == "endpoints":
        return 2
    if mode == "fixed_n":
        return n
    if k is None:
        return None
    if mode == "all":
        return k + 1
    if mode == "stride":
        return len(frame_offsets(mode, stride, n, k))
    raise ValueError(mode)


def frame_offsets(mode: str, stride: int, n: int, k: int) -> list[int]:
    """Offsets within [0, k] of the frames a sample carries (always includes 0 and k)."""
    if mode == "endpoints":
        return [0, k]
    if mode == "all":
        return list(range(k + 1))
    if mode == "stride":
        offs = list(range(0, k + 1, max(1, stride)))
        if offs[-1] != k:
            offs.append(k)
        return offs
    if mode == "fixed_n":
        return [int(round(i * k / (n - 1))) for i in range(n)]
    raise ValueError(mode)
