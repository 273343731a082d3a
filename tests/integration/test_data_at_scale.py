"""The data path at scale (docs/data_at_scale.md) on real TFDS/RLDS shards on disk: lazy start-up (only sampled
shards are scanned, headers only), a cold-cache restart yields the same batch, short episodes skipped and counted,
CRC-checked reads (a flipped JPEG byte fails or is skipped by policy), layout/version/instruction errors with their
text, the BGR and UTF-8 fixes, and the per-dataset seed the run records is the loader's."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hlrp_core.config import load
from hlrp_core.config.data import DatasetEntry, effective_knobs
from hlrp_core.data import registry as reg
from hlrp_core.data import tfrecord
from hlrp_core.data.episode import LayoutError, parse_episode
from hlrp_core.data.loader import PairLoader
from hlrp_core.data.index import ShardedSplit
from hlrp_core.data.sources import DataSourceError, resolve_source
from hlrp_core.data.tfrecord import CorruptShardError, read_record, scan_offsets

pytestmark = pytest.mark.integration

HYDRA = "stanford_hydra_dataset_converted_externally_to_rlds"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from hlrp_core.data.mirror import write_mirror

    r = tmp_path_factory.mktemp("scale")
    write_mirror(r, "bridge", episodes=40, num_shards=8, contact_sheet=False)
    write_mirror(r, f"{HYDRA},language_table", episodes=6, contact_sheet=False)
    return r


def _cfg(root, cache, entries, extra=(), seed=0):
    cfg = load("", [f"data.root={root}", "data.loader.batch_size=6", "data.preprocess.image_size=32",
                    "data.adapter.threads=1", "data.adapter.val_samples_per_dataset=3",
                    f"data.adapter.index_cache_dir={cache}", *extra], seed=seed)
    cfg.data.dataset.oxe.datasets = entries
    return cfg


def _bridge(k=3, train="train[:36]", val="train[36:]"):
    return [DatasetEntry("bridge", train, val, k, weight=1.0)]


def _shard(root, i=0):
    return sorted((Path(root) / "bridge" / "0.1.0").glob("bridge-train.tfrecord-*"))[i]


def _deepest(ld, keys, into: dict) -> dict:
    """shard -> highest ordinal among the episode positions ``keys`` (merged into ``into``)."""
    for pos in keys:
        s, o = ld.datasets[0].train.locate(pos)
        into[s] = max(into.get(s, -1), o)
    return into


def test_start_up_reads_only_what_the_first_batch_needs(root, tmp_path):
    # one batch in flight: while the test looks at batch 0, only batch 1 may already be reading (the prefetch)
    one_ahead = ["data.adapter.tf.prefetch.final_stream_buffer=0"]
    with PairLoader(_cfg(root, tmp_path / "ref", _bridge(), one_ahead), with_val=False) as ld:
        keys = [ld.next_train()["sample_key"][:, 1].tolist() for _ in range(2)]  # sampling is a pure function
    before = tfrecord.BYTES_READ.snapshot()
    with PairLoader(_cfg(root, tmp_path / "c", _bridge(), one_ahead), with_val=False) as ld:
        assert ld.effective["batches_in_flight"] == 1
        mid = tfrecord.BYTES_READ.snapshot()
        assert ld.datasets[0].train.scanned_shards() == 1  # the first-element check touched shard 0 only
        assert mid["records"] - before["records"] == 1 and mid["headers"] - before["headers"] == 1  # episode 0
        batch = ld.next_train()
        after = tfrecord.BYTES_READ.snapshot()
        scanned = ld.stats()["shards_scanned"]["bridge"]
        assert batch["sample_key"][:, 1].tolist() == keys[0]
        low = _deepest(ld, keys[0], {0: 0})  # the first element is ordinal 0 of shard 0
        high = _deepest(ld, keys[1], dict(low))  # plus whatever of batch 1 has started
    assert len(low) <= scanned <= len(high) and 6 <= after["records"] - mid["records"] <= 12
    # prefix scans: each shard's headers only as far as its highest sampled ordinal (5 episodes per shard)
    lo, hi = sum(o + 1 for o in low.values()), sum(o + 1 for o in high.values())
    assert lo <= after["headers"] - before["headers"] <= hi < 5 * len(high) + 1, (lo, hi, after, before)
    total = sum(f.stat().st_size for f in _shard(root).parent.glob("bridge-train.*"))
    assert after["bytes"] - before["bytes"] < total / 2


def test_a_prefix_scan_is_continued_not_repeated(root, tmp_path):
    tfds_read = _cfg(root, tmp_path / "p", _bridge()).data.adapter.tf.tfds_read
    src = resolve_source(reg.get("bridge"), tfds_read, str(root))
    sp = ShardedSplit("bridge", src, "train", tmp_path / "p")
    full = scan_offsets(str(_shard(root, 2)))
    h0 = tfrecord.BYTES_READ.snapshot()["headers"]
    assert sp.ensure_shard(2, 1) and not sp.ensure_shard(2, 0)  # ordinals 0..1, then nothing new
    assert sp.ensure_shard(2, 3) and tfrecord.BYTES_READ.snapshot()["headers"] - h0 == 4  # 2 + 2, none twice
    again = ShardedSplit("bridge", src, "train", tmp_path / "p")  # another process on the same cache
    assert not again.ensure_shard(2, 3) and again.ensure_shard(2)  # its prefix is reused, then completed
    a = int(sp.cum[2])
    assert (again.records[a:a + 5, 0] == full[0]).all() and (again.records[a:a + 5, 1] == full[1]).all()
    assert tfrecord.BYTES_READ.snapshot()["headers"] - h0 == 5


def test_cold_cache_restart_yields_the_same_batch(root, tmp_path):
    cfg = _cfg(root, tmp_path / "a", _bridge())
    with PairLoader(cfg) as a:
        ref = [a.next_train() for _ in range(4)]
    cold = _cfg(root, tmp_path / "fresh", _bridge())
    with PairLoader(cold, start_index=2 * 6) as b:
        got = b.next_train()
    assert torch.equal(got["sample_key"], ref[2]["sample_key"]) and torch.equal(got["frames"], ref[2]["frames"])
    cache = next((tmp_path / "a").iterdir())
    assert {p.name for p in cache.iterdir()} == {"records.i64", "lengths.i32", "failed.u8", "shards.i64"}


def test_short_episodes_are_skipped_deterministically_and_counted(root, tmp_path):
    # stand-in lengths are 12..20: k=15 makes the episodes with T <= 15 too short
    keys, counts = [], []
    for cache in ("x", "y"):
        with PairLoader(_cfg(root, tmp_path / cache, _bridge(k=15)), with_val=False) as ld:
            bs = [ld.next_train() for _ in range(5)]
            keys.append(torch.cat([b["sample_key"] for b in bs]))
            counts.append(ld.stats()["short_episodes_skipped"]["bridge"])
            for b in bs:
                for e, t, k in b["sample_key"][:, 1:].tolist():
                    assert k == 15 and t + k <= ld.datasets[0].train.length(e) - 1
    assert torch.equal(keys[0], keys[1]) and counts[0] == counts[1] > 0


def _flip_inside_a_jpeg(path: Path, record: int) -> int:
    offs, lens = scan_offsets(str(path))
    data = bytearray(path.read_bytes())
    o, n = int(offs[record]), int(lens[record])
    jpeg = data.find(b"\xff\xd8\xff", o, o + n)  # a JPEG inside the record's payload
    assert jpeg > 0
    data[jpeg + 300] ^= 0x55
    path.write_bytes(bytes(data))
    return o - 12


def test_a_flipped_byte_fails_its_crc_or_is_skipped_and_counted(root, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(Path(root) / "bridge", broken / "bridge")
    shard = _shard(broken, 0)
    at = _flip_inside_a_jpeg(shard, 2)
    offs, lens = scan_offsets(str(shard))
    with pytest.raises(CorruptShardError) as err:
        read_record(str(shard), int(offs[2]), int(lens[2]))
    msg = str(err.value)
    assert str(shard) in msg and f"byte {at}" in msg and "CRC" in msg and "data.adapter.bad_records=skip" in msg
    assert read_record(str(shard), int(offs[2]), int(lens[2]), verify=False)  # without the check it "reads fine"
    only_shard0 = [DatasetEntry("bridge", "train[:5]", "train[36:]", 3, weight=1.0)]
    with PairLoader(_cfg(broken, tmp_path / "c1", only_shard0), with_val=False) as ld:
        with pytest.raises(CorruptShardError, match="CRC"):
            for _ in range(6):
                ld.next_train()
    with PairLoader(_cfg(broken, tmp_path / "c2", only_shard0, ["data.adapter.bad_records=skip"]),
                    with_val=False) as ld:
        eps = {e for _ in range(6) for e in ld.next_train()["sample_key"][:, 1].tolist()}
        assert ld.stats()["bad_records_skipped"] == {"bridge": 1}
    assert 2 not in eps and len(eps) >= 3


def test_layout_and_instruction_errors_say_what_is_wrong(root):
    spec = reg.get("bridge")
    path = str(_shard(root))
    offs, lens = scan_offsets(path)
    raw = read_record(path, int(offs[0]), int(lens[0]))
    with pytest.raises(LayoutError) as err:
        parse_episode(raw, dataclasses.replace(spec, image_key="front_rgb"), "here")
    msg = str(err.value)
    assert "image_key" in msg and "'steps/observation/front_rgb'" in msg and "steps/observation/image" in msg
    assert "registry" in msg and "weight: 0" in msg
    with pytest.raises(LayoutError) as err:
        parse_episode(raw, dataclasses.replace(spec, instruction_key="goal_text"), "here")
    assert "instruction_key" in str(err.value) and "goal_text" in str(err.value)
    ep = parse_episode(raw, dataclasses.replace(spec, instruction_key="goal_text", has_instruction=False), "here")
    assert ep.language == [""] * ep.T


def test_two_versions_side_by_side_need_a_choice(root, tmp_path):
    r = tmp_path / "two"
    shutil.copytree(Path(root) / "bridge" / "0.1.0", r / "bridge" / "0.1.0")
    shutil.copytree(Path(root) / "bridge" / "0.1.0", r / "bridge" / "0.2.0")
    with pytest.raises(DataSourceError) as err:
        PairLoader(_cfg(r, tmp_path / "c", _bridge()), with_val=False)
    msg = str(err.value)
    assert "['0.1.0', '0.2.0']" in msg and "data.adapter.versions.bridge=" in msg
    with PairLoader(_cfg(r, tmp_path / "c", _bridge(), ["data.adapter.versions.bridge=0.2.0"]),
                    with_val=False) as ld:
        assert ld.datasets[0].src.version == "0.2.0" and "bridge@0.2.0/" in ld.next_train()["episode_id"][0]


def test_bgr_camera_is_flipped_and_language_table_decodes_utf8_bytes(root, tmp_path):
    from hlrp_core.data.decode import decode_resize

    entries = [DatasetEntry(HYDRA, "train[:5]", "train[5:]", 3, weight=1.0)]
    with PairLoader(_cfg(root, tmp_path / "c", entries), with_val=False) as ld:
        b = ld.next_train()
        ds = ld.datasets[0]
        assert ds.spec.image_bgr
        e, t, _ = b["sample_key"][0, 1:].tolist()
        stored = decode_resize(ld.episode(ds, "train", e).frames[t], 32)  # HWC as stored: BGR
    got = b["frames"][0, :, 0].permute(1, 2, 0).numpy()
    assert np.array_equal(got, stored[..., ::-1]) and not np.array_equal(got, stored)
    # language_table: int32 array of UTF-8 bytes (not code points)
    from hlrp_core.data.synth import tabletop as tt

    text = "déplace le bloc à gauche"
    arr = tt.codepoints(text, reg.CODEPOINT_LEN)
    assert arr.max() < 256 and (arr > 0).sum() == len(text.encode())
    assert tt.decode_codepoints(arr) == text
    spec = reg.get("language_table")
    path = str(sorted((Path(root) / spec.tfds_dir / spec.version).glob("*.tfrecord-*"))[0])
    offs, lens = scan_offsets(path)
    ep = parse_episode(read_record(path, int(offs[0]), int(lens[0])), spec, path)
    assert ep.language[0] and all(c.isascii() for c in ep.language[0])


def test_effective_seed_is_the_seed_the_loader_uses(root, tmp_path):
    entries = _bridge() + [DatasetEntry(HYDRA, "train[:5]", "train[5:]", 3, weight=1.0)]
    cfg = _cfg(root, tmp_path / "c", entries, seed=3)
    eff = effective_knobs(cfg)
    with PairLoader(cfg, with_val=False) as ld:
        for ds in ld.datasets:
            assert eff[f"seed.{ds.name}"] == ds.seed
        assert eff["loader_seed"] == ld.seed
    cfg0 = _cfg(root, tmp_path / "c", entries, seed=0)
    assert effective_knobs(cfg0)["seed.bridge"] != eff["seed.bridge"]


def test_verify_lists_broken_shards_resumes_and_enables_step_sampling(root, tmp_path):
    from hlrp_core.data.verify import verify

    broken = tmp_path / "broken"
    shutil.copytree(Path(root) / "bridge", broken / "bridge")
    _flip_inside_a_jpeg(_shard(broken, 3), 1)
    step = _cfg(broken, tmp_path / "c", _bridge(train="train[:5]"), ["data.adapter.tf.sampling.unit=step"])
    with pytest.raises(DataSourceError) as err:
        PairLoader(step, with_val=False)
    assert "unit=step" in str(err.value) and "hlrp data verify --datasets bridge" in str(err.value)
    cfg = _cfg(broken, tmp_path / "c", _bridge())
    rep = verify(cfg, threads=2, log=lambda *a: None)["bridge"]["train"]
    assert rep["shards"] == 8 and rep["verified"] == 7 and list(rep["broken"]) == [str(_shard(broken, 3))]
    assert "CRC" in rep["broken"][str(_shard(broken, 3))]
    again = verify(cfg, threads=2, log=lambda *a: None)["bridge"]["train"]
    assert again["skipped_unchanged"] == 7 and again["verified"] == 0 and len(again["broken"]) == 1
    with PairLoader(step, with_val=False) as ld:  # shard 0's lengths are known now
        b = ld.next_train()
        assert ld.stats()["sampling_unit"] == "step" and (b["sample_key"][:, 1] < 5).all()


def test_dataset_statistics_equal_numpy_over_all_episodes_and_the_estimate_is_within_tolerance(root, tmp_path):
    from hlrp_core.data import stats
    from hlrp_core.data.tfenv import import_tfds

    tfds = import_tfds()
    entries = _bridge() + [DatasetEntry("language_table", "train[:5]", "train[5:]", 3, weight=1.0)]
    cfg = _cfg(root, tmp_path / "c", entries)
    full = stats.run(cfg, threads=2, log=lambda *a: None)
    est = stats.run(cfg, sample=True, log=lambda *a: None)
    for name, akey, skey in (("bridge", ("action", "world_vector"), ("observation", "state")),
                             ("language_table", ("action",), ("observation", "effector_translation"))):
        spec = reg.get(name)
        b = tfds.builder_from_directory(str(Path(root) / spec.tfds_dir / spec.version))
        acts, sts, n = [], [], 0
        for ep in tfds.as_numpy(b.as_dataset(split="train")):
            steps = list(ep["steps"])
            a, s = steps, steps
            for k in akey:
                a = [x[k] for x in a]
            for k in skey:
                s = [x[k] for x in s]
            acts.append(np.stack(a)[:, : spec.action_dims])
            sts.append(np.stack(s)[:, : spec.state_dims])
            n += 1
        A, S = np.concatenate(acts), np.concatenate(sts)
        st = full[name]
        assert st["num_transitions"] == len(A) and st["num_trajectories"] == n and not st["estimate"]
        for got, x in ((st["action"], A), (st["proprio"], S)):
            np.testing.assert_allclose(got["mean"], x.mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["std"], x.std(0), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(got["min"], x.min(0))
            np.testing.assert_allclose(got["max"], x.max(0))
            np.testing.assert_allclose(got["q01"], np.quantile(x, 0.01, axis=0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["q99"], np.quantile(x, 0.99, axis=0), rtol=1e-5, atol=1e-6)
        e = est[name]
        assert e["estimate"] and e["sample_episodes"] == stats.SAMPLE_EPISODES
        assert (np.abs(np.array(e["action"]["mean"]) - A.mean(0)) <= np.array(e["action"]["mean_tolerance"])).all()
    sp = Path(full["bridge"]["shards"][0].split(":")[0])
    assert sp.name.startswith("bridge-train.tfrecord-") and len(full["bridge"]["shards"]) == 8


def test_normalisation_uses_the_full_pass_statistics(root, tmp_path):
    from hlrp_core.data import stats

    entries = [DatasetEntry("bridge", "train[:36]", "train[36:]", 1, weight=1.0)]
    cfg = _cfg(root, tmp_path / "c", entries, ["data.preprocess.normalize=gaussian",
                                               "data.adapter.tf.pair_frames.mode=endpoints"])
    with pytest.raises(DataSourceError, match="hlrp data stats --datasets bridge"):
        PairLoader(cfg, with_val=False)
    st = stats.run(cfg, threads=2, log=lambda *a: None)["bridge"]
    raw = _cfg(root, tmp_path / "c", entries)
    with PairLoader(cfg, with_val=False) as ld, PairLoader(raw, with_val=False) as lr:
        a, b = ld.next_train(), lr.next_train()
        assert ld.statistics["bridge"]["num_transitions"] == st["num_transitions"]
    mean, std = np.array(st["action"]["mean"]), np.array(st["action"]["std"])
    assert torch.equal(a["sample_key"], b["sample_key"])  # k=1: the label is one step's action
    np.testing.assert_allclose(a["action"][:, :3].numpy(), (b["action"][:, :3].numpy() - mean) / (std + 1e-8),
                               rtol=1e-4, atol=1e-4)


def test_kuka_success_filter_skips_failed_episodes(tmp_path):
    from hlrp_core.data.mirror import write_mirror

    write_mirror(tmp_path / "m", "kuka", episodes=9, contact_sheet=False)  # stand-in: episodes 2, 5, 8 failed
    entries = [DatasetEntry("kuka", "train[:9]", "train[8:]", 3, weight=1.0)]
    seen = {}
    for only in ("true", "false"):
        cfg = _cfg(tmp_path / "m", tmp_path / f"c{only}", entries,
                   [f"data.adapter.success_only={only}", "data.adapter.allow_split_overlap=true"])
        with PairLoader(cfg, with_val=False) as ld:
            seen[only] = {e for _ in range(8) for e in ld.next_train()["sample_key"][:, 1].tolist()}
            st = ld.stats()["unsuccessful_episodes_skipped"]["kuka"]
        if only == "true":
            assert st > 0 and not (seen[only] & {2, 5, 8})
    assert seen["false"] & {2, 5, 8}


def test_an_explicit_remote_source_reads_records_by_byte_range(root, tmp_path):
    """``tfds_read.source=gcs`` goes through TF's gfile, as a gs:// bucket does. No bucket is reachable here, so
    TensorFlow's in-process ``ram://`` filesystem holds a copy of the mirror: the same gfile calls (listdir, stat,
    seek + read). The batch equals the local one, and it costs byte ranges, not whole shards."""
    import os

    from hlrp_core.data.tfenv import import_tf

    tf = import_tf()
    base = f"ram://hlrp-{os.getpid()}/oxe"
    tf.io.gfile.makedirs(f"{base}/bridge/0.1.0")
    for f in sorted((Path(root) / "bridge" / "0.1.0").iterdir()):
        tf.io.gfile.copy(str(f), f"{base}/bridge/0.1.0/{f.name}", overwrite=True)
    remote = _cfg(root, tmp_path / "c1", _bridge(), ["data.adapter.tf.tfds_read.source=gcs",
                                                     f"data.adapter.tf.tfds_read.gcs_root={base}"])
    before = tfrecord.BYTES_READ.snapshot()
    with PairLoader(remote, with_val=False) as ld:
        src = ld.datasets[0].src
        assert src.how == "gcs" and src.path == f"{base}/bridge/0.1.0", (src.how, src.path)
        assert all(p.startswith(base) for lay in src.splits.values() for p in lay.files)
        got = ld.next_train()
    after = tfrecord.BYTES_READ.snapshot()
    with PairLoader(_cfg(root, tmp_path / "c2", _bridge()), with_val=False) as ld:
        ref = ld.next_train()
    local = tfrecord.BYTES_READ.snapshot()
    assert torch.equal(got["sample_key"], ref["sample_key"]) and torch.equal(got["frames"], ref["frames"])
    remote_io = {k: after[k] - before[k] for k in ("bytes", "records", "headers")}
    assert remote_io == {k: local[k] - after[k] for k in remote_io}  # the very same byte ranges as on disk
    total = sum(f.stat().st_size for f in _shard(root).parent.glob("bridge-train.*"))
    assert 0 < remote_io["bytes"] < total / 2, (remote_io, total)
