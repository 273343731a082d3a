"""data.* config: every seed knob loads, cross-knob rules (DATA_ADAPTER 1.5) fail at load time naming knob, value
and fix, effective values are derived, weights follow DATASETS.md section 3, and sample keys are a pure function."""

import logging
import time

import numpy as np
import pytest

from hlrp_core.config import ConfigError, load
from hlrp_core.config.data import DatasetEntry, effective_knobs, resolve_weights, split_episodes
from hlrp_core.data.sampler import DatasetDraw, KeySampler

SHARED_FAMILY = """experiment=vla_smol_flow_shared cluster=local_dev
model.laq.checkpoint=/mnt/data/workspace/code/high-level-robot-planner/laq-stepstep052500.ckpt
data=oxe_local_spe0 data.loader.num_workers=0 data.loader.pin_memory=false
data.adapter.tf.sampling.samples_per_episode=0 data.adapter.tf.mixing.strategy=python
data.adapter.tf.mixing.mix_block_length=4 data.adapter.tf.mixing.python_prefetch_queue_size=1
data.adapter.tf.mixing.python_prefetch_min_ready_datasets=1 data.adapter.tf.tfds_read.skip_steps_decoding=true
data.adapter.tf.pipeline.emit_encoded_pairs=true data.adapter.tf.tfds_read.decode_parallelism=4
data.adapter.tf.tfds_read.interleave_parallelism=1 data.adapter.tf.pipeline.episode_concurrency=1
data.adapter.tf.pipeline.transform_parallelism=4 data.adapter.tf.pipeline.interleave_parallelism=1
data.adapter.tf.prefetch.final_stream_buffer=2 data.adapter.tf.prefetch.per_dataset_stream_buffer=0
data.adapter.tf.prefetch.episode_queue_buffer=0 training.max_steps=2000 training.max_epochs=-1
training.validation.check_interval=500 training.validation.limit_batches=1 training.validation.num_sanity_val_steps=0
training.validation.visualization.enabled=false training.train_visualization.enabled=false
training.profiler.enabled=false logging.use_wandb=true""".split()

OVERNIGHT = """experiment=vla_smol_flow_shared cluster=local_dev
experiment.name=local_s2_overnight_bs48_steps25k_oxe_local_spe0_pscan_best
model.laq.checkpoint=/mnt/data/workspace/code/high-level-robot-planner/laq-stepstep052500.ckpt
data=oxe_local_spe0 data.loader.batch_size=48 training.max_steps=25000 training.max_epochs=-1
training.validation.check_interval=2000 training.validation.visualization.enabled=true
training.train_visualization.enabled=true training.profiler.enabled=false
data.adapter.tf.tfds_read.interleave_parallelism=2 logging.use_wandb=true""".split()

DIFFS = [["experiment.name=local_s2_scale29_valcheck_bs32_python_v1_tmux", "data.loader.batch_size=32"],
         ["experiment.name=local_s2_scale29_valcheck_bs48_python_v2_tmux", "data.loader.batch_size=48"],
         ["data.loader.batch_size=48", "training.checkpoint.every_n_train_steps=200",
          "training.resume_from_checkpoint=/mnt/data/workspace/runs/hlrp/x/checkpoints/last.ckpt"]]


def _list_problems(preset, **fields):
    """Problems of ``preset`` after setting fields of its first entry (list items are not reachable by dotlist)."""
    from hlrp_core.config.data import validate_data

    cfg = load("", [f"data={preset}"])
    for k, v in fields.items():
        if k == "allow_split_overlap":
            cfg.data.adapter.allow_split_overlap = v
        elif k == "all_weights":
            for e in cfg.data.dataset.oxe.datasets:
                e.weight = v
        else:
            setattr(cfg.data.dataset.oxe.datasets[0], k, v)
    problems = []
    validate_data(cfg.data, problems)
    return "\n".join(problems)


def _problems(overrides):
    with pytest.raises(ConfigError) as err:
        load("", overrides)
    return str(err.value)


# --------------------------------------------------------------------------------------------- seed commands load
@pytest.mark.parametrize("extra", DIFFS)
def test_seed_shared_command_family_loads_unchanged(extra):
    cfg = load("", SHARED_FAMILY + extra)
    t = cfg.data.adapter.tf
    assert t.mixing.strategy == "python" and t.mixing.mix_block_length == 4
    assert t.pipeline.emit_encoded_pairs is True and t.tfds_read.decode_parallelism == 4
    assert len(cfg.data.dataset.oxe.datasets) == 29
    assert cfg.data.loader.batch_size % t.mixing.mix_block_length == 0


def test_seed_overnight_command_loads_and_records_the_clamp(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = load("", OVERNIGHT)
    eff = effective_knobs(cfg)
    assert cfg.data.adapter.tf.tfds_read.interleave_parallelism == 2
    assert eff["tf.tfds_read.interleave_parallelism"] == 1  # derived: min(2, cycle_length=1), printed, not silent
    assert any("interleave_parallelism=2" in r.getMessage() and "effective value is 1" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("preset", ["embedded", "embedded_procedural", "oxe_all", "oxe_all_smoke", "oxe_bridge",
                                    "oxe_local_spe0", "oxe_local_spe0_tiny_val", "oxe_cluster_spe0",
                                    "oxe_cluster_spe1", "laq_oxe_all_low_ram", "laq_oxe_all_high_ram",
                                    "laq_oxe_all_minimal", "laq_oxe_all_smoke", "oxe_cluster_mirror_extended",
                                    "oxe_cluster_mirror_extended_smoke", "oxe_cluster_mirror_large"])
def test_every_data_preset_loads(preset):
    cfg = load("", [f"data={preset}"])
    assert cfg.data.dataset.oxe.datasets
    assert effective_knobs(cfg)["threads"] >= 1


def test_config_validation_is_fast():
    from hlrp_core.config.data import validate_data

    cfg = load("", SHARED_FAMILY)
    t0 = time.perf_counter()
    problems = []
    validate_data(cfg.data, problems)
    assert not problems and time.perf_counter() - t0 < 1.0


def test_local_paths_are_strings_checked_later():
    cfg = load("", ["data.root=/does/not/exist", "data.adapter.tf.tfds_read.local_root=/nope"])
    assert cfg.data.root == "/does/not/exist"  # existence is checked when the loader starts


# ----------------------------------------------------------------------------------------------------- bad input
def test_unknown_knob_suggests_the_right_one():
    msg = _problems(["data.adapter.tf.mixing.strategyy=python"])
    assert "strategyy" in msg and "data.adapter.tf.mixing.strategy" in msg


def test_wrong_type():
    msg = _problems(["data.adapter.tf.tfds_read.decode_parallelism=four"])
    assert "decode_parallelism" in msg and "four" in msg


def test_bad_choice():
    msg = _problems(["data.adapter.tf.mixing.strategy=pyhton"])
    assert "data.adapter.tf.mixing.strategy" in msg and "'python'" in msg


def test_pipeline_interleave_above_cycle_length():
    msg = _problems(["data.adapter.tf.pipeline.interleave_parallelism=2",
                     "data.adapter.tf.pipeline.episode_concurrency=1"])
    assert "pipeline.interleave_parallelism=2" in msg and "episode_concurrency=1" in msg and "C1" in msg


def test_pipeline_interleave_autotune_is_accepted():
    load("", ["data.adapter.tf.pipeline.interleave_parallelism=-1"])


def test_block_length_not_dividing_batch_size():
    msg = _problems(["data.loader.batch_size=30", "data.adapter.tf.mixing.mix_block_length=4"])
    assert "batch_size=30" in msg and "mix_block_length=4" in msg and "multiple" in msg


@pytest.mark.parametrize("overrides,needles", [
    (["data.adapter.tf.tfds_read.skip_steps_decoding=false", "data.adapter.tf.pipeline.emit_encoded_pairs=true"],
     ["emit_encoded_pairs=true", "re-encode"]),
    (["data.adapter.tf.tfds_read.skip_steps_decoding=true", "data.adapter.tf.pipeline.emit_encoded_pairs=false"],
     ["emit_encoded_pairs=false", "skip_steps_decoding"]),
    (["data.adapter.tf.metadata.mode=dataset_only", "data.preprocess.return_metadata=false"],
     ["dataset_only", "return_metadata=false"]),
    (["data.adapter.tf.iterator.cache_first_train_batch=true", "data.loader.num_workers=2"],
     ["cache_first_train_batch", "num_workers"]),
    (["data.adapter.tf.prefetch.episode_queue_buffer=-1"], ["episode_queue_buffer=-1", "rejected"]),
    (["data.adapter.tf.pair_frames.mode=fixed_n", "data.adapter.tf.pair_frames.n=1"], ["pair_frames.n=1"]),
    (["data.adapter.tf.pair_frames.stride=0"], ["pair_frames.stride=0"]),
    (["data.adapter.tf.mixing.python_prefetch_wait_timeout_s=0"], ["python_prefetch_wait_timeout_s=0"]),
    (["data.adapter.tf.mixing.python_prefetch_queue_size=0"], ["python_prefetch_queue_size=0"]),
])
def test_combinations_that_cannot_work(overrides, needles):
    msg = _problems(overrides)
    for n in needles:
        assert n in msg, (n, msg)


def test_metadata_full_skip_decoding_sample_strategy_works():
    # C7: crashed the predecessor (SIGABRT); must be accepted here
    load("", ["data.adapter.tf.metadata.mode=full", "data.adapter.tf.tfds_read.skip_steps_decoding=true",
              "data.adapter.tf.mixing.strategy=sample"])
    load("", ["data.adapter.tf.metadata.mode=dataset_only", "data.adapter.tf.mixing.strategy=sample"])  # C4 dropped


def test_empty_split_rejected():
    msg = _list_problems("oxe_bridge", val_split="train[5:5]")
    assert "val_split='train[5:5]'" in msg and "no episodes" in msg


def test_overlapping_split_rejected_unless_allowed():
    msg = _list_problems("oxe_bridge", val_split="train[:10]")
    assert "overlaps" in msg and "allow_split_overlap" in msg
    assert _list_problems("oxe_bridge", val_split="train[:10]", allow_split_overlap=True) == ""
    load("", ["data=oxe_local_spe0_tiny_val"])  # the researcher's overlapping list: accepted (warning)


def test_bad_split_syntax():
    msg = _list_problems("oxe_bridge", train_split="train(:90%)")
    assert "train(:90%)" in msg and "slice syntax" in msg


def test_all_weights_zero():
    assert "every weight is 0" in _list_problems("oxe_all_smoke", all_weights=0)


def test_negative_weight_and_bad_k():
    assert "weight=-1" in _list_problems("oxe_bridge", weight=-1)
    assert "pair_offset_steps=0" in _list_problems("oxe_bridge", pair_offset_steps=0)


def test_num_workers_must_be_zero():
    assert "num_workers=2" in _problems(["data.loader.num_workers=2"])


# ------------------------------------------------------------------------------------------ derived / no-op / weights
def test_inert_knobs_warn(caplog):
    with caplog.at_level(logging.WARNING):
        load("", ["data.adapter.tf.mixing.selector_run_length=3", "data.loader.prefetch_factor=4",
                  "data.adapter.tf.mixing.parallelism_mode=sqrt"])
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "selector_run_length=3 has no effect" in text and "prefetch_factor=4 has no effect" in text
    assert "parallelism_mode='sqrt' has no effect" in text


def test_effective_budget_values():
    cfg = load("", ["data.adapter.threads=3", "data.adapter.tf.tfds_read.decode_parallelism=8"])
    eff = effective_knobs(cfg)
    assert eff["threads"] == 3 and "shared pool of 3" in eff["tf.tfds_read.decode_parallelism"]
    assert eff["tf.pipeline.emit_encoded_pairs"] is True and eff["batches_in_flight"] >= 1


def test_proportionate_weights_oxe_all():
    cfg = load("", ["data=oxe_all"])
    w = resolve_weights(cfg.data.dataset.oxe.datasets)
    assert w["language_table"] == pytest.approx(0.1)
    assert w["bridge"] == pytest.approx(0.200, abs=5e-4)
    assert w["rt1"] == pytest.approx(0.410, abs=5e-4)
    assert w["robonet"] == pytest.approx(0.290, abs=5e-4)


def test_weight_zero_drops_and_explicit_over_one():
    es = [DatasetEntry("a", weight=0), DatasetEntry("b", weight=2.0), DatasetEntry("c", weight="proportionate",
                                                                                    approx_num_pairs=10)]
    warn = []
    assert resolve_weights(es, warnings=warn) == {"b": 1.0}
    assert warn and "receive 0" in warn[0]


def test_split_resolution_rounds_like_tfds():
    assert list(split_episodes("train[:90%]", 24)) == list(range(22))
    assert list(split_episodes("train[90%:]", 24)) == [22, 23]
    assert len(split_episodes("train[:1%]", 24)) == 0  # F5: caught at loader start with a clear message
    assert list(split_episodes("train[20:40]", 30)) == list(range(20, 30))


# ------------------------------------------------------------------------------------------------- sample keys
def _sampler(seed=42, spe=0, block=1, unit="episode"):
    rng = np.random.default_rng(0)
    lengths = [rng.integers(4, 60, size=50), rng.integers(11, 20, size=7), np.array([6, 6, 3])]  # T=3 < k+1: skipped
    draws = [DatasetDraw(0, 50, 3, 3, 11), DatasetDraw(0, 7, 5, 10, 12), DatasetDraw(0, 3, 5, 5, 13)]
    if unit == "step":
        for dr, T in zip(draws, lengths):
            dr.cum_pairs = np.cumsum(np.maximum(0, T - dr.k_min)).astype(np.float64)
    s = KeySampler(draws, np.array([0.5, 0.3, 0.2]), seed, block=block, samples_per_episode=spe, unit=unit)
    return draws, lengths, s, (lambda di, pos: lengths[di][pos])


def test_sample_keys_are_a_pure_function_of_seed_and_index():
    _, _, s1, L = _sampler()
    _, _, s2, _ = _sampler()
    a = np.stack(s1.keys(0, 10000, L), 1)
    b = np.stack(s2.keys(0, 10000, L), 1)
    assert (a == b).all()
    # any window reproduces the same keys (resume at step s == index s*B)
    assert (np.stack(s1.keys(4800, 96, L), 1) == a[4800:4896]).all()
    _, _, s3, _ = _sampler(seed=43)
    assert not (np.stack(s3.keys(0, 1000, L), 1) == a[:1000]).all()


@pytest.mark.parametrize("spe,unit", [(0, "episode"), (1, "episode"), (4, "episode"), (0, "step")])
def test_sample_keys_never_clamped_and_t_uniform(spe, unit):
    draws, lengths, s, L = _sampler(spe=spe, unit=unit)
    d, e, t, k = s.keys(0, 20000, L)
    for di, dr in enumerate(draws):
        m = d == di
        T = lengths[di][e[m]]
        assert (k[m] >= dr.k_min).all() and (k[m] <= np.minimum(dr.k_max, T - 1)).all()
        assert (t[m] >= 0).all() and (t[m] + k[m] <= T - 1).all()
    assert not ((d == 2) & (e == 2)).any()  # the too-short episode is never used
    m = d == 0
    # starts are spread over the episode, not "always the episode start" (spe1 defect)
    assert (t[m] == 0).mean() < 0.2 and t[m].max() > 20
    shares = np.bincount(d, minlength=3) / len(d)
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    # the unit decides P(episode): uniform over episodes, or proportional to T - k_min
    counts = np.bincount(e[m], minlength=50) / m.sum()
    pairs = np.maximum(0, lengths[0] - 3)
    want = pairs / pairs.sum() if unit == "step" else np.full(50, 1 / 50)
    assert np.abs(counts - want).max() < 0.012


def test_block_mixing_keeps_blocks_in_one_dataset():
    _, _, s, L = _sampler(block=4)
    d = s.keys(0, 400, L)[0].reshape(-1, 4)
    assert (d == d[:, :1]).all()
