"""Embedded known-answer datasets: real TFDS datasets, documented keys, frames move as the actions say."""

import os

import numpy as np
import pytest

from hlrp_core.data import demo, registry as reg, rlds_writer as rw
from hlrp_core.data.synth import tabletop as tt

pytestmark = pytest.mark.integration


def _builder(root, name):
    from hlrp_core.data.tfenv import import_tfds

    return import_tfds().builder_from_directory(str(demo.dataset_path(name, root)))


def _episodes(root, name, n, split="train"):
    ds = _builder(root, name).as_dataset(split=split)
    out = []
    for ep in ds.take(n):
        steps = list(ep["steps"].as_numpy_iterator())
        out.append((steps, {k: v.numpy() for k, v in ep["episode_metadata"].items()}))
    return out


def _get(d, path):
    for part in path.split("/"):
        d = d[part]
    return d


@pytest.mark.parametrize("name", reg.EMBEDDED)
def test_readable_with_documented_keys(embedded_root, name):
    spec = reg.get(name)
    path = demo.dataset_path(name, embedded_root)
    if name == "embedded_fetch" and not rw.is_complete(path):
        pytest.fail("embedded_fetch missing: MuJoCo rendering must work on this machine")
    b = _builder(embedded_root, name)
    assert b.info.splits["train"].num_examples == demo.PLAN[name][0]["train"] or os.environ.get("HLRP_DATA_ROOT")
    (steps, meta), = _episodes(embedded_root, name, 1)
    assert steps[0]["is_first"] and steps[-1]["is_last"] and steps[-1]["is_terminal"]
    assert not any(s["is_first"] for s in steps[1:])
    s = steps[0]
    assert _get(s, spec.image_path).shape == (*spec.image_hw, 3)
    instr = _get(s, spec.instruction_path)
    text = tt.decode_codepoints(instr) if spec.instruction_encoding == "codepoints" else instr.decode()
    assert text and any(d in text for d in tt.DIRECTION_NAMES)
    assert _get(s, spec.state_path).shape == (spec.state_source_dims,)
    assert _get(s, spec.action_path).shape == (spec.action_source_dims,)
    assert 0 <= int(meta["primitive_id"]) < 8


@pytest.mark.parametrize("name", reg.EMBEDDED_PROCEDURAL)
def test_gripper_displacement_matches_action(embedded_root, name):
    spec = reg.get(name)
    h, w = spec.image_hw
    for steps, meta in _episodes(embedded_root, name, 4):
        frames = np.stack([_get(s, spec.image_path) for s in steps])
        actions = np.stack([_get(s, spec.action_path)[:2] for s in steps])
        c = np.array([tt.gripper_centroid(f) for f in frames])
        for k in (1, spec.pair_offset_steps):
            measured = (c[k:] - c[:-k]) * [w, h]
            expected = np.stack([actions[t:t + k].sum(0) for t in range(len(steps) - k)]) * [w, h]
            assert np.abs(measured - expected).max() < 1.0, (name, k)
        dx, dy = tt.DIRECTIONS[int(meta["primitive_id"])]
        assert np.allclose(np.sign(actions[0]), [dx, dy])


def test_fetch_state_moves_with_action(embedded_root):
    path = demo.dataset_path("embedded_fetch", embedded_root)
    assert rw.is_complete(path), "MuJoCo Fetch dataset was not built"
    for steps, _ in _episodes(embedded_root, "embedded_fetch", 3):
        states = np.stack([s["observation"]["state"] for s in steps])
        action = steps[0]["action"]
        moved = states[-1, :2] - states[0, :2]
        assert np.dot(moved, action[:2]) > 0 and np.linalg.norm(moved) > 0.1
        frames = np.stack([s["observation"]["image"] for s in steps]).astype(np.float32)
        assert np.abs(frames[-1] - frames[0]).mean() > 0.5  # the arm visibly moved


def test_tabletop_has_val_split_and_second_build_skips(embedded_root, tmp_path):
    assert _builder(embedded_root, "embedded_tabletop").info.splits["val"].num_examples > 0
    root = tmp_path / "emb"
    first = demo.make_demo(root=root, quick=True, names=["embedded_multicam"])
    assert first["datasets"]["embedded_multicam"]["status"] == "built"
    assert os.path.isfile(first["contact_sheet"])
    second = demo.make_demo(root=root, quick=True, names=["embedded_multicam"])
    assert second["datasets"]["embedded_multicam"]["status"] == "present"


def test_partial_write_never_looks_complete(tmp_path):
    spec = reg.get("embedded_multicam")
    from hlrp_core.data import mirror

    def boom():
        yield from ()
        raise RuntimeError("interrupted")

    with pytest.raises(Exception):
        rw.write_dataset(tmp_path, spec.tfds_dir, spec.version, mirror.spec_features(spec), {"train": boom},
                         num_episodes={"train": 3})
    assert not rw.is_complete(rw.dataset_dir(tmp_path, spec.tfds_dir, spec.version))
    assert not rw.dataset_dir(tmp_path, spec.tfds_dir, spec.version).exists()
    assert not list((tmp_path / spec.tfds_dir).glob(".tmp-*"))
