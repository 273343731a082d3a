"""``data.*``: dataset list, loader, preprocessing and the ``data.adapter.*`` knobs (every seed knob).

The ``data.adapter.tf.*`` namespace keeps the predecessor's knob names so the researcher's commands run
unchanged; how each is read (keep / budget / derived / no-op) is in ``docs/DATA.md`` (predecessor knobs).

All cross-knob rules run in ``DataConfig.validate``, which ``hlrp_core.config.load`` calls
before any thread, TF object or file handle exists. ``effective_knobs(cfg)`` returns the values after clamping and
derivation (``hlrp_core.runs.start`` records them; the loader prints them at startup).

Layout: the ``data.adapter.tf.*`` compatibility tree is in ``data_tf.py``, the effective-knob and budget arithmetic
in ``data_effective.py``; both are re-exported here, so every dotted knob name and import stays as it was.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .data_tf import (AUTOTUNE, DebugConfig, IteratorConfig, MetadataConfig, MixingConfig,  # noqa: F401 - re-exported
                      PairFramesConfig, PipelineConfig, PrefetchConfig, SamplingConfig, ShuffleConfig,
                      TfAdapterConfig, TfdsReadConfig)
from .errors import check, check_choice

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# data.loader / data.preprocess
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LoaderConfig:
    """``data.loader.*``.

    Args:
        batch_size: Samples per batch (the adapter batches; the torch DataLoader uses ``batch_size=None``). Must be
            a multiple of ``data.adapter.tf.mixing.mix_block_length``.
        num_workers: Torch worker processes. Must be 0 while TF runs in-process (each worker would build a full
            pipeline, about 6 GB each in the predecessor); the adapter's own threads do the work.
        pin_memory: Pinned host batches (useful on GPU only). **keep**
        prefetch_factor: Accepted for seed commands; a documented **no-op** (the adapter prefetches by bytes).
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
        return_metadata: Kept for seed commands. ``true`` (default): a dict batch (docs/DATA.md, batch contract).
            ``false``: hlrp still returns a dict (so every consumer sees one shape), documented as a no-op.
        resize_mode: ``letterbox`` (keep aspect, pad; default), ``center_crop`` (keep aspect, crop) or ``squash``
            (legacy: stretch to a square). Applied identically to every frame of a sample.
        normalize: Per-step actions and states before the pair reducer, from each dataset's full-pass
            ``dataset_statistics.json`` (``hlrp data stats``): ``none`` (default), ``gaussian`` ((x - mean) / std)
            or ``bounds`` (2 (x - q01) / (q99 - q01) - 1, clipped to [-1, 1]; Octo's two modes).
    """

    image_size: int = 64
    return_metadata: bool = True
    resize_mode: str = "letterbox"
    normalize: str = "none"


# ----------------------------------------------------------------------------------------------------------------
# dataset list
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class DatasetEntry:
    """One entry of ``data.dataset.oxe.datasets``.

    Args:
        name: Registry name (e.g. ``bridge``) or an embedded dataset name.
        train_split: TFDS slice syntax for training episodes (``train[:90%]``, ``train[:20]``, ``train``).
        val_split: TFDS slice syntax for validation episodes (must be non-empty and disjoint from train, unless
            ``data.adapter.allow_split_overlap=true``).
        pair_offset_steps: Gap k between the first and last frame of a pair (k_min when a range is given).
        pair_offset_max_steps: Optional upper end of a per-sample gap range [k, k_max]; null = fixed k.
        pair_offset_seconds: Optional gap in seconds, ``[dt]`` or ``[dt_min, dt_max]``; replaces the steps above with
            k = max(1, round(dt * control_hz)) from the registry's control frequency. A dataset with
            unknown Hz is an error at loader start.
        weight: A number, ``"proportionate"`` or null (= proportionate). 0 drops the dataset.
        approx_num_pairs: Size hint for proportionate weights; null = the pair count from hlrp's episode index.
        seed: Per-dataset seed; null = (global seed + crc32(name)) & 0x7FFFFFFF.
    """

    name: str = "???"
    train_split: str = "train[:90%]"
    val_split: str = "train[90%:]"
    pair_offset_steps: int = 5
    pair_offset_max_steps: Optional[int] = None
    pair_offset_seconds: Optional[list[float]] = None
    weight: Any = None
    approx_num_pairs: Optional[int] = None
    seed: Optional[int] = None


@dataclass
class OXEListConfig:
    """Args:
        datasets: The dataset list (see ``hlrp_core/configs/data/*.yaml`` for the researcher's lists).
    """

    # Default: the embedded procedural dataset, so a config with no data selection is valid and runs anywhere.
    datasets: list[DatasetEntry] = field(default_factory=lambda: [DatasetEntry(name="embedded_tabletop", weight=1.0)])


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
class AdapterConfig:
    """``data.adapter.*``: hlrp's global budgets plus the seed namespace ``tf``.

    Args:
        threads: The one global thread budget for reading + decoding + resizing (never multiplied by the dataset
            count). 0 = auto: usable cores - 1, at least 1.
        ram_budget_mb: The one byte budget (MiB) for the episode cache, in-flight work and ready batches; at
            most half the memory headroom (host or memory cgroup) per training process on the node (the clamp
            is logged and recorded as ``data.effective.ram_budget_clamp``).
        val_samples_per_dataset: N_val: fixed validation keys per dataset, drawn once with a derived seed and
            materialised once as encoded bytes.
        allow_split_overlap: Accept a val split that overlaps train (the researcher's ``tiny_val`` lists); a
            warning is logged. false = an overlapping split is an error.
        index_cache_dir: Where episode indexes are cached (keyed by directory, version and shard sizes).
            Empty = ``<data_root>/.index_cache``.
        ram_guard_min_available_mb: Stop cleanly (``RamGuardError`` with the reason) when MemAvailable falls below
            this; 0 = off (``training.ram_guard.min_available_mb`` applies when larger).
        io_threads: Concurrent record reads and shard scans while a batch is assembled (I/O-bound; they release
            the GIL): a cold batch on a network or virtual disk pays about one read latency per this many reads.
        verify_crc: Check each record's TFRecord CRC (crc32c in C) when it is read; false skips the check (its cost
            is in ``hlrp data bench``).
        bad_records: A record that fails its CRC or does not parse: ``fail`` (error naming shard and offset) or
            ``skip`` (redrawn deterministically, counted per dataset in the loader's stats).
        success_only: Skip episodes whose registry ``success_key`` is false (kuka; rlds_dataset_mod's
            ``filter_success``); skipped deterministically and counted per dataset.
        versions: ``{dataset name: version directory}`` to pick one when several versions sit side by side.
        tf: The seed's ``data.adapter.tf.*`` knobs.
    """

    threads: int = 0
    ram_budget_mb: int = 1024
    val_samples_per_dataset: int = 16
    allow_split_overlap: bool = False
    index_cache_dir: str = ""
    ram_guard_min_available_mb: int = 0
    io_threads: int = 16
    verify_crc: bool = True
    bad_records: str = "fail"
    success_only: bool = True
    versions: dict[str, str] = field(default_factory=dict)
    tf: TfAdapterConfig = field(default_factory=TfAdapterConfig)


@dataclass
class BenchConfig:
    """``data.bench.*``: the loader-only benchmark (``hlrp data bench``, ``notebooks/01_data_throughput.ipynb``).

    Args:
        batches: Measured batches per round, after the warm-up.
        warmup: Warm-up batches (not measured; the first one gives ``first_batch_s``).
        rounds: Measurement rounds, each followed by the decode bound on the same frames; medians are reported.
        val_cycles: Validation passes over the fixed val set; RSS and thread count are logged after each.
        reference: Also run the Octo/dlimp-style tf.data reference pipeline on the same data and cores.
    """

    batches: int = 100
    warmup: int = 10
    rounds: int = 2
    val_cycles: int = 10
    reference: bool = False


@dataclass
class DataConfig:
    """``data.*``.

    Args:
        root: Root of the local mirror laid out ``<root>/<tfds_dir>/<version>/``; empty = the embedded data
            (``hlrp_core.paths.embedded_data_root()``). Existence is checked when the loader starts.
        dataset: Which datasets, with splits, k and weights.
        loader: Batching and worker knobs.
        preprocess: Image size and resize mode.
        adapter: Budgets and the seed's ``data.adapter.tf.*`` knobs.
        bench: Loader benchmark sizing.
        effective: Derived, read-only: the effective knob values (``effective_knobs``) that ``hlrp_core.runs.start``
            records in the run's ``config.yaml``, so a ladder can never again compare a no-op rung. Any value set
            by the user is replaced.
    """

    root: str = ""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    effective: dict[str, Any] = field(default_factory=dict)

    def validate(self, problems: list[str]) -> None:
        """All cross-knob rules. Pure: no thread, TF object or file handle."""
        from .data_effective import inert_warnings

        validate_data(self, problems)
        for w in inert_warnings(self):
            log.warning(w)


# ----------------------------------------------------------------------------------------------------------------
# validation (pure functions so tests and `effective_knobs` share them)
# ----------------------------------------------------------------------------------------------------------------
_SPLIT_RE = re.compile(r"^\s*(?P<split>[A-Za-z_][\w\-]*)\s*(\[\s*(?P<a>-?\d+(\.\d+)?%?)?\s*:\s*"
                       r"(?P<b>-?\d+(\.\d+)?%?)?\s*\])?\s*$")


def parse_split(spec: str) -> tuple[str, Optional[str], Optional[str]]:
    """``"train[:90%]"`` -> ``("train", None, "90%")``. Raises ``ValueError`` for anything else (``+`` unions and
    the ``k%`` rounding suffixes of TFDS are not used by the researcher's lists)."""
    m = _SPLIT_RE.match(str(spec))
    if not m:
        raise ValueError(spec)
    return m.group("split"), m.group("a"), m.group("b")


def _bounds_on(n: int, a: Optional[str], b: Optional[str]) -> tuple[int, int]:
    def conv(x: Optional[str], default: int) -> int:
        if x is None:
            return default
        if x.endswith("%"):
            v = int(round(float(x[:-1]) * n / 100.0))
        else:
            v = int(float(x))
        if v < 0:
            v += n
        return max(0, min(n, v))
    return conv(a, 0), conv(b, n)


def split_episodes(spec: str, num_episodes: int) -> range:
    """Resolve a TFDS slice (``train[:90%]``, ``train[20:40]``) to episode positions of a split of
    ``num_episodes`` episodes. Percent boundaries round to the closest episode, like TFDS."""
    _, a, b = parse_split(spec)
    lo, hi = _bounds_on(num_episodes, a, b)
    return range(lo, max(lo, hi))


def _split_problems(name: str, entry: DatasetEntry, allow_overlap: bool, problems: list[str]) -> None:
    parsed = {}
    for key in ("train_split", "val_split"):
        spec = getattr(entry, key)
        try:
            parsed[key] = parse_split(spec)
        except ValueError:
            problems.append(f"data.dataset.oxe.datasets[{name}].{key}={spec!r}: not TFDS slice syntax; write e.g. "
                            "'train[:90%]', 'train[90%:]' or 'train[:20]'")
    if len(parsed) < 2:
        return
    # Syntactic emptiness/overlap on probe sizes (exact check against real episode counts at loader start).
    probes = (24, 100, 1000, 100000)
    for key, (_, a, b) in parsed.items():
        if all(len(range(*_bounds_on(n, a, b))) == 0 for n in probes):
            problems.append(f"data.dataset.oxe.datasets[{name}].{key}={getattr(entry, key)!r} selects no episodes; "
                            "use a non-empty slice such as 'train[90%:]' or 'train[:20]'")
    (s1, a1, b1), (s2, a2, b2) = parsed["train_split"], parsed["val_split"]
    if s1 == s2 and not allow_overlap:
        for n in probes:
            r1, r2 = range(*_bounds_on(n, a1, b1)), range(*_bounds_on(n, a2, b2))
            if len(r1) and len(r2) and max(r1.start, r2.start) < min(r1.stop, r2.stop):
                problems.append(
                    f"data.dataset.oxe.datasets[{name}]: val_split={entry.val_split!r} overlaps "
                    f"train_split={entry.train_split!r} (e.g. with {n} episodes); use disjoint slices such as "
                    "'train[:90%]'/'train[90%:]', or set data.adapter.allow_split_overlap=true to accept it")
                break


def resolve_weights(entries: list[DatasetEntry], sizes: Optional[dict[str, float]] = None,
                    warnings: Optional[list[str]] = None) -> dict[str, float]:
    """Numeric weights kept; ``"proportionate"``/null entries share max(0, 1 - sum(explicit))
    by size (``sizes`` from the index when given, else ``approx_num_pairs``; all sizes 0 -> equal split);
    renormalise; entries with final weight <= 0 are dropped. Returns {name: weight} of the kept entries."""
    explicit: dict[str, float] = {}
    prop: list[DatasetEntry] = []
    for e in entries:
        if e.weight is None or (isinstance(e.weight, str) and e.weight.strip().lower() == "proportionate"):
            prop.append(e)
        else:
            explicit[e.name] = float(e.weight)
    total_explicit = sum(explicit.values())
    rest = max(0.0, 1.0 - total_explicit)
    if prop and total_explicit >= 1.0 and warnings is not None:
        warnings.append(f"explicit weights sum to {total_explicit:.3g} >= 1: the proportionate entries "
                        f"{[e.name for e in prop]} receive 0 and are dropped")
    out = dict(explicit)
    if prop:
        sz = [float((sizes or {}).get(e.name, e.approx_num_pairs or 0) or 0) for e in prop]
        tot = sum(sz)
        for e, s in zip(prop, sz):
            out[e.name] = rest * (s / tot if tot > 0 else 1.0 / len(prop))
    total = sum(w for w in out.values() if w > 0)
    if total <= 0:
        return {}
    return {n: w / total for n, w in out.items() if w > 0}


def validate_data(d: DataConfig, problems: list[str]) -> None:
    t = d.adapter.tf
    L, P = d.loader, d.preprocess
    check(problems, L.batch_size >= 1, f"data.loader.batch_size={L.batch_size} must be >= 1")
    check(problems, L.num_workers == 0,
          f"data.loader.num_workers={L.num_workers}: must be 0 (TF runs in-process and every worker would build its "
          "own pipeline, F8); the adapter's own threads do the parallel work (data.adapter.threads)")
    check(problems, P.image_size >= 8, f"data.preprocess.image_size={P.image_size} must be >= 8")
    check_choice(problems, "data.preprocess.resize_mode", P.resize_mode, ["letterbox", "center_crop", "squash"])
    check_choice(problems, "data.preprocess.normalize", P.normalize, ["none", "gaussian", "bounds"])
    # choices
    check_choice(problems, "data.adapter.tf.metadata.mode", t.metadata.mode, ["full", "dataset_only"])
    check_choice(problems, "data.adapter.tf.pair_frames.mode", t.pair_frames.mode,
                 ["endpoints", "all", "stride", "fixed_n"])
    check_choice(problems, "data.adapter.tf.tfds_read.source", t.tfds_read.source, ["local", "gcs", "auto"])
    check_choice(problems, "data.adapter.tf.mixing.strategy", t.mixing.strategy, ["sample", "choose", "python"])
    check_choice(problems, "data.adapter.tf.mixing.parallelism_mode", t.mixing.parallelism_mode,
                 ["full", "sqrt", "divide"])
    # budgets
    check(problems, d.adapter.threads >= 0, f"data.adapter.threads={d.adapter.threads} must be >= 0 (0 = auto)")
    check(problems, d.adapter.ram_budget_mb >= 64,
          f"data.adapter.ram_budget_mb={d.adapter.ram_budget_mb} must be >= 64 (MiB)")
    b = d.bench
    check(problems, b.batches >= 1 and b.warmup >= 1 and b.rounds >= 1 and b.val_cycles >= 0,
          f"data.bench: batches={b.batches}, warmup={b.warmup}, rounds={b.rounds} must be >= 1 and val_cycles="
          f"{b.val_cycles} >= 0")
    check(problems, d.adapter.val_samples_per_dataset >= 1,
          f"data.adapter.val_samples_per_dataset={d.adapter.val_samples_per_dataset} must be >= 1 (the val set must "
          "be non-empty per dataset)")
    for key, v in (("tfds_read.cycle_length", t.tfds_read.cycle_length),
                   ("tfds_read.block_length", t.tfds_read.block_length),
                   ("tfds_read.decode_parallelism", t.tfds_read.decode_parallelism),
                   ("tfds_read.interleave_parallelism", t.tfds_read.interleave_parallelism),
                   ("pipeline.episode_concurrency", t.pipeline.episode_concurrency),
                   ("pipeline.transform_parallelism", t.pipeline.transform_parallelism),
                   ("pipeline.interleave_parallelism", t.pipeline.interleave_parallelism)):
        check(problems, v == AUTOTUNE or v >= 1,
              f"data.adapter.tf.{key}={v} must be >= 1 or -1 (AUTOTUNE, which hlrp maps to its thread budget)")
    for key, v in (("prefetch.final_stream_buffer", t.prefetch.final_stream_buffer),
                   ("prefetch.per_dataset_stream_buffer", t.prefetch.per_dataset_stream_buffer)):
        check(problems, v >= AUTOTUNE, f"data.adapter.tf.{key}={v} must be >= -1")
    check(problems, t.prefetch.episode_queue_buffer >= 0,
          f"data.adapter.tf.prefetch.episode_queue_buffer={t.prefetch.episode_queue_buffer}: must be >= 0; -1 "
          "(AUTOTUNE over whole episodes) is rejected because it buffers unbounded raw episodes; use 0 "
          "(hlrp's episode cache is bounded by data.adapter.ram_budget_mb)")
    # C1: pipeline interleave vs episode concurrency
    pi, ec = t.pipeline.interleave_parallelism, t.pipeline.episode_concurrency
    check(problems, pi == AUTOTUNE or ec == AUTOTUNE or pi <= ec,
          f"data.adapter.tf.pipeline.interleave_parallelism={pi} exceeds data.adapter.tf.pipeline.episode_concurrency="
          f"{ec} (an interleave cannot run more parallel calls than its cycle length; TF fails at runtime, C1); "
          f"it is derived from episode_concurrency, so drop the override or set episode_concurrency>={pi}")
    # C3: block mixing
    b = t.mixing.mix_block_length
    check(problems, b >= 1, f"data.adapter.tf.mixing.mix_block_length={b} must be >= 1")
    if b >= 1 and L.batch_size >= 1:
        check(problems, L.batch_size % b == 0,
              f"data.loader.batch_size={L.batch_size} is not a multiple of data.adapter.tf.mixing.mix_block_length="
              f"{b}; set the batch size to a multiple (e.g. {max(b, (L.batch_size // b) * b)}) or change the block")
    check(problems, t.mixing.selector_run_length >= 1,
          f"data.adapter.tf.mixing.selector_run_length={t.mixing.selector_run_length} must be >= 1")
    check(problems, t.mixing.python_prefetch_queue_size >= 1,
          f"data.adapter.tf.mixing.python_prefetch_queue_size={t.mixing.python_prefetch_queue_size} must be >= 1")
    check(problems, t.mixing.python_prefetch_min_ready_datasets >= 1,
          f"data.adapter.tf.mixing.python_prefetch_min_ready_datasets={t.mixing.python_prefetch_min_ready_datasets}"
          " must be >= 1")
    check(problems, t.mixing.python_prefetch_wait_timeout_s > 0,
          f"data.adapter.tf.mixing.python_prefetch_wait_timeout_s={t.mixing.python_prefetch_wait_timeout_s} must be "
          "> 0 (seconds)")
    check(problems, t.mixing.per_dataset_private_threadpool_size >= 0,
          f"data.adapter.tf.mixing.per_dataset_private_threadpool_size={t.mixing.per_dataset_private_threadpool_size}"
          " must be >= 0")
    # C5 (hlrp form): encoded pairs are derived from skip-decoding; re-encoding is never done
    enc = t.pipeline.emit_encoded_pairs
    if enc is not None and enc != t.tfds_read.skip_steps_decoding:
        if enc:
            problems.append(
                "data.adapter.tf.pipeline.emit_encoded_pairs=true with data.adapter.tf.tfds_read.skip_steps_decoding="
                "false cannot work: it would re-encode decoded frames, which hlrp never does; drop emit_encoded_pairs "
                "(it is derived) or set skip_steps_decoding=true")
        else:
            problems.append(
                "data.adapter.tf.pipeline.emit_encoded_pairs=false with data.adapter.tf.tfds_read.skip_steps_decoding="
                "true cannot work: skip-decoded steps are encoded bytes, so pairs are encoded; drop "
                "emit_encoded_pairs (it is derived) or set skip_steps_decoding=false")
    # dataset_only metadata vs bare frames
    if t.metadata.mode == "dataset_only" and not P.return_metadata:
        problems.append("data.adapter.tf.metadata.mode=dataset_only asks for a dict with dataset names but "
                        "data.preprocess.return_metadata=false asks for bare frames; set one of them "
                        "(metadata.mode=full or return_metadata=true)")
    # C8
    if t.iterator.cache_first_train_batch:
        check(problems, L.num_workers == 0,
              f"data.adapter.tf.iterator.cache_first_train_batch=true needs data.loader.num_workers=0 "
              f"(got {L.num_workers})")
    # C9 (config-time part): gcs source must not be combined with a local-only setup silently
    if t.tfds_read.source == "gcs":
        check(problems, "://" in t.tfds_read.gcs_root,  # gs://; any URL TF's gfile reads (tests use ram://)
              f"data.adapter.tf.tfds_read.gcs_root={t.tfds_read.gcs_root!r} must be a gs:// URL when "
              "data.adapter.tf.tfds_read.source=gcs")
    # C10
    pf = t.pair_frames
    check(problems, pf.stride >= 1, f"data.adapter.tf.pair_frames.stride={pf.stride} must be >= 1")
    check(problems, pf.n >= 2, f"data.adapter.tf.pair_frames.n={pf.n} must be >= 2 (fixed_n always includes 0 and k)")
    check(problems, t.sampling.samples_per_episode >= 0,
          f"data.adapter.tf.sampling.samples_per_episode={t.sampling.samples_per_episode} must be >= 0")
    check(problems, t.sampling.seed >= 0, f"data.adapter.tf.sampling.seed={t.sampling.seed} must be >= 0")
    check_choice(problems, "data.adapter.tf.sampling.unit", t.sampling.unit, ["episode", "step"])
    check_choice(problems, "data.adapter.bad_records", d.adapter.bad_records, ["fail", "skip"])
    check(problems, d.adapter.io_threads >= 1, f"data.adapter.io_threads={d.adapter.io_threads} must be >= 1")
    if t.sampling.unit == "step":
        check(problems, t.sampling.samples_per_episode <= 1,
              f"data.adapter.tf.sampling.unit=step draws each key's episode by its pair count, so "
              f"samples_per_episode={t.sampling.samples_per_episode} cannot share episodes; use unit=episode or "
              "samples_per_episode=0")
    check(problems, t.debug.synthetic_num_samples >= 1,
          f"data.adapter.tf.debug.synthetic_num_samples={t.debug.synthetic_num_samples} must be >= 1")
    entries = d.dataset.oxe.datasets
    if not t.debug.use_synthetic_data:
        check(problems, len(entries) > 0,
              "data.dataset.oxe.datasets is empty; select a list (data=embedded, data=oxe_all, data=oxe_local_spe0)")
    names = [e.name for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    check(problems, not dup, f"data.dataset.oxe.datasets lists {dup} more than once; keep one entry per dataset")
    for e in entries:
        nm = e.name
        check(problems, bool(nm) and nm != "???", "data.dataset.oxe.datasets: an entry has no name")
        check(problems, e.pair_offset_steps >= 1,
              f"data.dataset.oxe.datasets[{nm}].pair_offset_steps={e.pair_offset_steps} must be >= 1")
        if e.pair_offset_max_steps is not None:
            check(problems, e.pair_offset_max_steps >= e.pair_offset_steps,
                  f"data.dataset.oxe.datasets[{nm}].pair_offset_max_steps={e.pair_offset_max_steps} must be >= "
                  f"pair_offset_steps={e.pair_offset_steps}")
        if e.pair_offset_seconds is not None:
            ps = list(e.pair_offset_seconds)
            check(problems, len(ps) in (1, 2) and all(x > 0 for x in ps) and ps == sorted(ps),
                  f"data.dataset.oxe.datasets[{nm}].pair_offset_seconds={ps}: give [dt] or [dt_min, dt_max] with "
                  "0 < dt_min <= dt_max (seconds)")
        w = e.weight
        if w is not None and not (isinstance(w, str) and w.strip().lower() == "proportionate"):
            try:
                fw = float(w)
                check(problems, fw >= 0, f"data.dataset.oxe.datasets[{nm}].weight={w} must be >= 0 (0 drops it)")
            except (TypeError, ValueError):
                problems.append(f"data.dataset.oxe.datasets[{nm}].weight={w!r}: use a number >= 0, "
                                "'proportionate' or null")
        if e.approx_num_pairs is not None:
            check(problems, e.approx_num_pairs >= 0,
                  f"data.dataset.oxe.datasets[{nm}].approx_num_pairs={e.approx_num_pairs} must be >= 0")
        _split_problems(nm, e, d.adapter.allow_split_overlap, problems)
    if entries and not any("weight" in p for p in problems):
        if not resolve_weights(entries):
            problems.append("data.dataset.oxe.datasets: every weight is 0, so no dataset is left; give at least one "
                            "dataset a weight > 0 (or 'proportionate')")


# the effective-knob arithmetic lives in its own module; these names stay importable from here
from .data_effective import (effective_knobs, frame_offsets, inert_warnings, loader_seed,  # noqa: E402,F401
                             num_frames, per_dataset_seed, usable_cores)
