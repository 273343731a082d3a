"""``data.adapter.tf.*``: the predecessor's knob namespace, accepted unchanged.

The ``data.adapter.tf.*`` namespace keeps the predecessor's knob names (docs/DATA.md, predecessor knobs) so the
researcher's commands run unchanged. hlrp does not build one tf.data pipeline per dataset; it samples frame pairs
from an episode index and decodes them in one shared thread pool under one byte budget. Every knob is therefore
treated as one of (docs/DATA.md, predecessor knobs):

- **keep**: same meaning;
- **budget**: accepted; it becomes a share of the global thread budget ``data.adapter.threads`` or of the byte
  budget ``data.adapter.ram_budget_mb``; the effective value is reported by ``effective_knobs``;
- **derived**: computed by hlrp; a user value that cannot be honoured is an error (or, where the seed's own
  commands rely on the predecessor's silent clamp, a warning that names the effective value);
- **no-op**: accepted so old commands still run; a non-default value logs a warning that it has no effect.

All cross-knob rules run in ``DataConfig.validate``, which ``hlrp_core.config.load`` calls
before any thread, TF object or file handle exists. ``effective_knobs(cfg)`` returns the values after clamping and
derivation (``hlrp_core.runs.start`` records them; the loader prints them at startup).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

AUTOTUNE = -1


# ----------------------------------------------------------------------------------------------------------------
# data.adapter.tf.* (seed knobs; docs/DATA.md, predecessor knobs). Defaults are the base preset L unless marked hlrp.
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
            episode read, each with its own uniform t and k (never "the first N pairs").
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
    """``data.adapter.tf.*``: the predecessor's knob namespace (docs/DATA.md, predecessor knobs), accepted unchanged.

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
