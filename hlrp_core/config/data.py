"""``data.*``: dataset list, loader, preprocessing and the ``data.adapter.*`` knobs (every seed knob).

The ``data.adapter.tf.*`` namespace keeps the predecessor's knob names (DATA_ADAPTER.md section 1.2) so the
researcher's commands run unchanged. hlrp does not build one tf.data pipeline per dataset; it samples frame pairs
from an episode index and decodes them in one shared thread pool under one byte budget. Every knob is therefore
treated as one of (DATA_ADAPTER section 1.2, last column):

- **keep**: same meaning;
- **budget**: accepted; it becomes a share of the global thread budget ``data.adapter.threads`` or of the byte
  budget ``data.adapter.ram_budget_mb``; the effective value is reported by ``effective_knobs``;
- **derived**: computed by hlrp; a user value that cannot be honoured is an error (or, where the seed's own
  commands rely on the predecessor's silent clamp, a warning that names the effective value);
- **no-op**: accepted so old commands still run; a non-default value logs a warning that it has no effect.

All cross-knob rules (section 1.5, C1-C11) run in ``DataConfig.validate``, which ``hlrp_core.config.load`` calls
before any thread, TF object or file handle exists. ``effective_knobs(cfg)`` returns the values after clamping and
derivation (``hlrp_core.runs.start`` records them; the loader prints them at startup).
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import check, check_choice

log = logging.getLogger(__name__)

AUTOTUNE = -1


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
            pipeline, about 6 GB each in the predecessor: DATA_ADAPTER F8); the adapter's own threads do the work.
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
        return_metadata: Kept for seed commands. ``true`` (default): a dict batch (DATA_ADAPTER section 2).
            ``false``: hlrp still returns a dict (so every consumer sees one shape), documented as a no-op.
        resize_mode: ``letterbox`` (keep aspect, pad; default), ``center_crop`` (keep aspect, crop) or ``squash``
            (legacy: stretch to a square). Applied identically to every frame of a sample.
    """

    image_size: int = 64
    return_metadata: bool = True
    resize_mode: str = "letterbox"


# ----------------------------------------------------------------------------------------------------------------
# dataset list
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class DatasetEntry:
    """One entry of ``data.dataset.oxe.datasets`` (DATASETS.md section 2).

    Args:
        name: Registry name (e.g. ``bridge``) or an embedded dataset name.
        train_split: TFDS slice syntax for training episodes (``train[:90%]``, ``train[:20]``, ``train``).
        val_split: TFDS slice syntax for validation episodes (must be non-empty and disjoint from train, unless
            ``data.adapter.allow_split_overlap=true``).
        pair_offset_steps: Gap k between the first and last frame of a pair (k_min when a range is given).
        pair_offset_max_steps: Optional upper end of a per-sample gap range [k, k_max]; null = fixed k.
        pair_offset_seconds: Optional gap in seconds, ``[dt]`` or ``[dt_min, dt_max]``; replaces the steps above with
            k = max(1, round(dt * control_hz)) from the registry's control frequency (DATASETS Q8). A dataset with
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


# ----------------------------------------------------------------------------------------------------------------
# data.adapter.tf.* (seed knobs; DATA_ADAPTER section 1.2). Defaults are the base preset L unless marked hlrp.
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class MetadataConfig:
    """Args:
        mode: ``full`` (every per-pair field) or ``dataset_only`` (frames + dataset_name/dataset_id only). **keep**,
            with any mixing strategy (the predecessor's C4 rule is dropped).
    """

    mode: str = "full"


@dataclass
class PairFramesConfig:
    """Which frames of [t, t+k] a sample carries; T (the frames axis) = their number. **keep**

    Args:
        mode: ``endpoints`` {0,k}; ``all`` 0..k; ``stride`` {0,s,2s,...,k}; ``fixed_n`` n rounded-linspace indices
            that always include 0 and k. Every mode works with encoded frames (C5 dropped).
        stride: Step s of ``stride`` mode; >= 1.
        n: Frame count of ``fixed_n`` mode; >= 2.
    """

    mode: str = "endpoints"
    stride: int = 1
    n: int = 2


@dataclass
class DebugConfig:
    """Args:
        use_synthetic_data: Zero frames and dummy metadata; TFDS is not touched (CI). **keep**
        synthetic_num_samples: Samples per "epoch" of the synthetic stream. **keep**
    """

    use_synthetic_data: bool = False
    synthetic_num_samples: int = 10000


@dataclass
class IteratorConfig:
    """Args:
        persistent: **keep**, always true in effect: the train iterator is built once per run and validation
            reads the fixed cached set (F2). ``false`` logs a warning that it has no effect.
        cache_first_train_batch: Replay batch 0 forever (overfit check). Needs ``data.loader.num_workers=0`` (C8).
    """

    persistent: bool = True
    cache_first_train_batch: bool = False


@dataclass
class SamplingConfig:
    """Args:
        samples_per_episode: 0 or 1: every key draws its own episode. N >= 2: N consecutive keys share one
            episode read, each with its own uniform t and k (never "the first N pairs"; DATA_ADAPTER section 3.3).
        seed: Sampling seed. Every sample key (dataset, episode, t, k) is a pure function of (seed, epoch, index);
            the loader's seed is (seed + 1000003 x the run seed) & 0x7FFFFFFF (``loader_seed``), per dataset
            (that + crc32(name)) & 0x7FFFFFFF unless the entry sets ``seed`` (``data.effective.seed.<name>``).
        unit: ``episode`` (default): the episode is uniform over the split slice, known from dataset_info.json
            alone (then t uniform in [0, T-k)); ``step``: P(episode) proportional to its pairs T - k, which needs
            every length (recorded by ``hlrp data verify``); docs/data_at_scale.md.
    """

    samples_per_episode: int = 0
    seed: int = 42
    unit: str = "episode"


@dataclass
class ShuffleConfig:
    """Shuffle buffers (elements). hlrp draws every sample independently from an index, so stream shuffles have
    nothing to shuffle: all are accepted as **no-op** (train) / **no-op** (val: the val set is fixed), and a
    non-default value logs a warning.

    Args:
        episode_queue_shuffle_buffer: Episode shuffle before pairing.
        intra_episode_sample_shuffle_buffer: Pair shuffle within one episode (<= 1 = off).
        global_stream_shuffle_buffer: Sample shuffle after mixing.
    """

    episode_queue_shuffle_buffer: int = 0
    intra_episode_sample_shuffle_buffer: int = 0
    global_stream_shuffle_buffer: int = 0


def _train_shuffle() -> ShuffleConfig:
    return ShuffleConfig(1000, 200, 5000)


@dataclass
class PrefetchConfig:
    """Args:
        final_stream_buffer: Ready batches queued after batching. **budget**: the ready-batch queue depth, capped
            by the byte budget.
        per_dataset_stream_buffer: Per-dataset prefetch (>= -1). **budget**: folded into the shared episode
            cache (never multiplied by the dataset count).
        episode_queue_buffer: Raw-episode prefetch. **budget** (episode cache bytes); -1 (AUTOTUNE over whole
            episodes) is rejected.
    """

    final_stream_buffer: int = 8
    per_dataset_stream_buffer: int = 0
    episode_queue_buffer: int = 0


@dataclass
class TfdsReadConfig:
    """Args:
        source: ``local`` (``<local_root>/<dir>/<ver>`` must exist), ``gcs`` (``gs://`` paths, explicit) or
            ``auto`` (local when present; GCS only when ``allow_gcs=true``, and every resolution is logged). **keep**
        local_root: Root of the mirror, laid out ``<root>/<tfds_dir>/<version>/``. Empty = ``data.root`` (and
            empty ``data.root`` = the embedded data). Checked when the loader starts, not at load time. **keep**
        gcs_root: Bucket prefix used by ``source=gcs``/``auto`` (hlrp).
        allow_gcs: hlrp: explicit opt-in for ``source=auto`` to fall back to GCS (never silent; F4).
        skip_steps_decoding: TFDS ``SkipDecoding`` on step images; images stay JPEG bytes until the last stage.
            **keep**, default true (hlrp); ``false`` is legacy and logs a warning (hlrp still decodes last).
        cycle_length: File-interleave cycle. **budget** (reads are index-driven positional reads; reported).
        block_length: File-interleave block. **budget**
        decode_parallelism: Decode calls in flight. **budget**: a share of ``data.adapter.threads``.
        interleave_parallelism: **derived** = min(value, cycle_length) as the predecessor clamped it (C2); a
            larger value is accepted with a warning naming the effective value (the seed's overnight command sets
            2 with cycle 1).
    """

    source: str = "auto"
    local_root: str = ""
    gcs_root: str = "gs://gresearch/robotics"
    allow_gcs: bool = False
    skip_steps_decoding: bool = True
    cycle_length: int = 1
    block_length: int = 1
    decode_parallelism: int = 1
    interleave_parallelism: int = 1


@dataclass
class PipelineConfig:
    """Args:
        episode_concurrency: Episodes in flight. **budget** (episode-cache share).
        transform_parallelism: Per-pair map parallelism. **budget**: a share of ``data.adapter.threads``.
        interleave_parallelism: **derived** = episode_concurrency (as dlimp does). A value above it cannot work
            (TF fails at runtime, C1) and is an error; -1 is accepted.
        emit_encoded_pairs: **derived** = ``skip_steps_decoding`` (pairs carry encoded bytes whenever frames are
            encoded; re-encoding is never done). null = derived; a value that disagrees is an error.
        post_mix_decode_resize: **derived**: hlrp always decodes and resizes last, after mixing. Accepted, no-op.
    """

    episode_concurrency: int = 1
    transform_parallelism: int = 1
    interleave_parallelism: int = 1
    emit_encoded_pairs: Optional[bool] = None
    post_mix_decode_resize: bool = False


@dataclass
class MixingConfig:
    """Args:
        strategy: ``sample``, ``choose`` or ``python``: recorded; hlrp runs one deterministic block mixer (alias
            draws by weight) for all three, so each is seeded and reproducible. **keep** (name)
        mix_block_length: Consecutive samples drawn from one dataset per switch (1 = independent draws). The
            batch size must be a multiple of it (C3). **keep**
        selector_run_length: ``choose`` only. **no-op**
        parallelism_mode: ``full``/``sqrt``/``divide``. **no-op**: replaced by one global thread budget.
        python_prefetch_queue_size: Blocks buffered per dataset; >= 1. **budget** (bytes)
        python_prefetch_min_ready_datasets: >= 1. **no-op** under index sampling.
        python_prefetch_wait_timeout_s: > 0. **keep** as the stall timeout; the error names the stalled dataset.
        per_dataset_private_threadpool_size: **no-op**: one shared pool.
    """

    strategy: str = "sample"
    mix_block_length: int = 1
    selector_run_length: int = 1
    parallelism_mode: str = "full"
    python_prefetch_queue_size: int = 2
    python_prefetch_min_ready_datasets: int = 1
    python_prefetch_wait_timeout_s: float = 600.0
    per_dataset_private_threadpool_size: int = 16


@dataclass
class TfAdapterConfig:
    """``data.adapter.tf.*``: the predecessor's knob namespace (DATA_ADAPTER section 1.2), accepted unchanged.

    Args:
        metadata: Per-pair metadata fields.
        pair_frames: Frames per sample.
        debug: Synthetic data switch.
        iterator: Iterator lifetime.
        sampling: Pair sampling and seed.
        train: Train shuffle buffers (no-op under index sampling).
        val: Val shuffle buffers (no-op: the val set is fixed).
        prefetch: Prefetch buffers (budget).
        tfds_read: Where and how TFDS data is read.
        pipeline: Per-pair pipeline parallelism (budget/derived).
        mixing: Mixing strategy and per-dataset prefetch.
    """

    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    pair_frames: PairFramesConfig = field(default_factory=PairFramesConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    iterator: IteratorConfig = field(default_factory=IteratorConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: ShuffleConfig = field(default_factory=_train_shuffle)
    val: ShuffleConfig = field(default_factory=ShuffleConfig)
    prefetch: PrefetchConfig = field(default_factory=PrefetchConfig)
    tfds_read: TfdsReadConfig = field(default_factory=TfdsReadConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)


@dataclass
class AdapterConfig:
    """``data.adapter.*``: hlrp's global budgets plus the seed namespace ``tf``.

    Args:
        threads: The one global thread budget for reading + decoding + resizing (never multiplied by the dataset
            count). 0 = auto: usable cores - 1, at least 1.
        ram_budget_mb: The one byte budget (MiB) for the episode cache, in-flight work and ready batches.
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
        """All cross-knob rules (DATA_ADAPTER 1.5, C1-C11). Pure: no thread, TF object or file handle."""
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
    """DATASETS.md section 3: numeric weights kept; ``"proportionate"``/null entries share max(0, 1 - sum(explicit))
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


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def validate_data(d: DataConfig, problems: list[str]) -> None:
    t = d.adapter.tf
    L, P = d.loader, d.preprocess
    check(problems, L.batch_size >= 1, f"data.loader.batch_size={L.batch_size} must be >= 1")
    check(problems, L.num_workers == 0,
          f"data.loader.num_workers={L.num_workers}: must be 0 (TF runs in-process and every worker would build its "
          "own pipeline, F8); the adapter's own threads do the parallel work (data.adapter.threads)")
    check(problems, P.image_size >= 8, f"data.preprocess.image_size={P.image_size} must be >= 8")
    check_choice(problems, "data.preprocess.resize_mode", P.resize_mode, ["letterbox", "center_crop", "squash"])
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
        check(problems, t.tfds_read.gcs_root.startswith("gs://"),
              f"data.adapter.tf.tfds_read.gcs_root={t.tfds_read.gcs_root!r} must start with gs:// when "
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
    budget = a.ram_budget_mb * 2 ** 20
    queue_bytes = budget // 4
    fsb = t.prefetch.final_stream_buffer
    want_ready = threads if fsb == AUTOTUNE else max(0, fsb)
    ready = max(1, min(want_ready + threads, max(1, queue_bytes // max(1, batch_bytes))))
    weights = resolve_weights(d.dataset.oxe.datasets) if d.dataset.oxe.datasets else {}
    ti, cyc = t.tfds_read.interleave_parallelism, t.tfds_read.cycle_length
    eff: dict[str, Any] = {
        "threads": threads,
        "usable_cores": cores,
        "ram_budget_mb": a.ram_budget_mb,
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
