"""The dataset table (hlrp_core.data.registry) against DATASETS.md facts."""

import dataclasses

import pytest

from hlrp_core.data import registry as reg


def test_counts_and_names():
    assert len(reg.OXE_29) == 29
    assert set(reg.EXCLUDED) == {"aloha_mobile", "mimic_play", "dobbe"}
    assert all(reg.REGISTRY[n].excluded for n in reg.EXCLUDED)
    assert not any(reg.REGISTRY[n].excluded for n in reg.OXE_29)
    assert len({reg.REGISTRY[n].tfds_dir for n in reg.OXE_29}) == 29


def test_spot_facts():
    lt = reg.get("language_table")
    assert (lt.image_key, lt.image_hw, lt.instruction_encoding, lt.pair_offset_steps) == ("rgb", (360, 640),
                                                                                        "codepoints", 10)
    rt1 = reg.get("rt1")
    assert rt1.tfds_dir == "fractal20220817_data" and rt1.state_dims == 3 and rt1.action_path == "action/world_vector"
    assert reg.get("robonet").robot_key == "episode_metadata/robot"
    assert reg.get("taco_play").action_kind == "absolute"
    assert reg.get("tidybot").action_kind == "none" and reg.get("tidybot").action_layout == "string"
    assert reg.get("bc_z").action_dims == 30
    assert reg.get("droid").version == "1.0.1"
    assert reg.get("mimic_play").image_key == "image/front_image_1"
    assert reg.get("berkeley_fanuc_manipulation").instruction_path == "language_instruction"
    assert reg.get("bridge").instruction_path == "observation/natural_language_instruction"
    assert {n for n in reg.OXE_29 if not reg.REGISTRY[n].language_ok} == {
        "kuka", "roboturk", "berkeley_cable_routing", "viola", "toto",
        "stanford_hydra_dataset_converted_externally_to_rlds", "utaustin_mutex"}
    assert max(reg.REGISTRY[n].action_dims for n in reg.OXE_29) == reg.ACTION_PAD
    assert max(reg.REGISTRY[n].state_dims for n in reg.OXE_29) == reg.STATE_PAD
    assert sum(reg.REGISTRY[n].state_key is None for n in reg.OXE_29) == 6  # kuka roboturk spoc tidybot viola vima


def test_frozen_and_validated():
    spec = reg.get("bridge")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.version = "9"  # type: ignore[misc]
    with pytest.raises(ValueError, match="action_kind"):
        dataclasses.replace(spec, action_kind="sum")


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(reg.UnknownDatasetError) as exc:
        reg.get("brigde")
    msg = str(exc.value)
    assert "'bridge'" in msg and "language_table" in msg and "utaustin_mutex" in msg


def test_lookup_by_tfds_dir_and_lists():
    assert reg.get("fractal20220817_data").name == "rt1"
    assert reg.resolve_list("all29") == list(reg.OXE_29)
    assert reg.resolve_list("bridge,rt1") == ["bridge", "rt1"]
    assert set(reg.EMBEDDED) >= set(reg.EMBEDDED_PROCEDURAL)
    assert all(reg.REGISTRY[n].embedded for n in reg.EMBEDDED)
    with pytest.raises(reg.UnknownDatasetError):
        reg.resolve_list("bridge,nope")
