"""The 29-dataset stand-in mirror: every directory readable by TFDS, structure as the registry says, seeded."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from hlrp_core.data import mirror, registry as reg, rlds_writer as rw

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    report = mirror.write_mirror(root, "all29", episodes=2, seed=0)
    return root, report


def _get(d, path, literal):
    if literal:
        return d[path]
    for part in path.split("/"):
        d = d[part]
    return d


def test_report_and_contact_sheet(mirror_root):
    root, report = mirror_root
    assert set(report["datasets"]) == set(reg.OXE_29)
    assert report["bytes"] > 0 and report["seconds"] > 0
    assert (root / mirror.MIRROR_CONTACT_SHEET).is_file()


@pytest.mark.parametrize("name", reg.OXE_29)
def test_dataset_matches_registry(mirror_root, name):
    from hlrp_core.data.tfenv import import_tfds

    tfds = import_tfds()
    root, _ = mirror_root
    spec = reg.get(name)
    path = rw.dataset_dir(root, spec.tfds_dir, spec.version)
    assert rw.is_complete(path)
    b = tfds.builder_from_directory(str(path))
    assert b.info.name == spec.tfds_dir and str(b.info.version) == spec.version
    steps_feat = b.info.features["steps"]
    assert isinstance(steps_feat, tfds.features.Dataset)
    literal = name in mirror.LITERAL_SLASH_DATASETS
    obs_feat = steps_feat.feature["observation"]
    img_feat = _get(obs_feat, spec.image_key, literal) if "/" in spec.image_key else obs_feat[spec.image_key]
    assert isinstance(img_feat, tfds.features.Image) and img_feat.shape == (*spec.image_hw, 3)
    ep = next(iter(b.as_dataset(split="train")))
    assert b.info.splits["train"].num_examples == 2
    steps = list(ep["steps"].as_numpy_iterator())
    assert len(steps) >= spec.pair_offset_steps + 1
    s = steps[0]
    assert _get(s["observation"], spec.image_key, literal).shape == (*spec.image_hw, 3)
    for cam in spec.extra_cameras:
        assert _get(s["observation"], cam.key, literal).shape == (*cam.hw, 3)
    instr = _get(s, spec.instruction_path, False)
    if spec.instruction_encoding == "codepoints":
        assert instr.dtype == np.int32 and instr.shape == (reg.CODEPOINT_LEN,)
    else:
        assert isinstance(instr, bytes) and instr
    if spec.instruction_location == "obs":
        assert spec.instruction_key in s["observation"] and spec.instruction_key not in s
    else:
        assert spec.instruction_key in s and spec.instruction_key not in s["observation"]
    if spec.state_key:
        st = _get(s["observation"], spec.state_key, literal)
        assert st.dtype == np.float32 and st.shape == (spec.state_source_dims,)
    if spec.action_layout == "string":
        assert isinstance(s["action"], bytes)
    elif spec.action_layout == "flat":
        assert s["action"].dtype == np.float32 and s["action"].shape == (spec.action_source_dims,)
    else:
        assert isinstance(s["action"], dict)
        a = _get(s["action"], spec.action_key, literal)
        assert a.dtype == np.float32 and a.shape == (spec.action_source_dims,)
    if spec.robot_key:
        assert ep["episode_metadata"]["robot"].numpy()
    assert s["is_first"] and steps[-1]["is_last"] and steps[-1]["is_terminal"]


def _tree_digest(path):
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*.tfrecord*")):
        h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_identical_and_refusal(tmp_path):
    names = ["language_table", "bc_z"]
    a = mirror.write_mirror(tmp_path / "a", names, episodes=2, seed=5, contact_sheet=False)
    b = mirror.write_mirror(tmp_path / "b", names, episodes=2, seed=5, contact_sheet=False)
    c = mirror.write_mirror(tmp_path / "c", names, episodes=2, seed=6, contact_sheet=False)
    for n in names:
        da, db, dc = (rw.dataset_dir(r["root"], reg.get(n).tfds_dir, reg.get(n).version) for r in (a, b, c))
        assert _tree_digest(da) == _tree_digest(db)
        assert _tree_digest(da) != _tree_digest(dc)
    with pytest.raises(rw.TargetNotEmptyError):
        mirror.write_mirror(tmp_path / "a", names, episodes=1, seed=5)
    again = mirror.write_mirror(tmp_path / "a", ["bc_z"], episodes=1, seed=5, overwrite=True, contact_sheet=False)
    assert again["datasets"]["bc_z"]["episodes"] == {"train": 1}


def test_cli_unknown_name_lists_known(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hlrp_core.cli", "data", "mirror", "--datasets", "bridge,brigde",
                           "--root", str(tmp_path), "--episodes", "1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Did you mean 'bridge'" in proc.stderr and "utaustin_mutex" in proc.stderr
    assert not any(tmp_path.iterdir())
