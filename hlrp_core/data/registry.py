"""The dataset table as data: the 29 OXE datasets, the 3 excluded ones and hlrp's embedded known-answer datasets.

One frozen :class:`DatasetSpec` per dataset in :data:`REGISTRY` (name -> spec). Facts and their sources are in
the OXE dataset catalogue and each dataset's TFDS page. Per-dataset behaviour (action reducer,
state/instruction decoding, known-bad notes) is expressed here as columns, never as code branches elsewhere.
A question number such as (Q7) names a known dataset quirk in docs/DATASETS.md.

``*_source_dims`` give the width of the feature in the real dataset (used by the stand-in mirror to write the real
structure); ``*_dims`` are the leading dimensions the loader keeps. Source widths the spec table does not give are
taken from the TFDS catalog pages (tag P) and marked as such in ``notes``.

No TF import here: pure data, importable anywhere.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Optional

INSTRUCTION_LOCATIONS = ("obs", "step")
INSTRUCTION_ENCODINGS = ("string", "codepoints", "multimodal")
ACTION_LAYOUTS = ("dict", "flat", "string")
ACTION_KINDS = ("delta", "absolute", "none")

#: Mix-wide padding across the 29 datasets: bc_z's 30-dim action, ur5/taco's 15-dim state.
ACTION_PAD = 30
STATE_PAD = 15

#: Length of language_table's int32 code-point instruction (NUL padded).
CODEPOINT_LEN = 512


@dataclass(frozen=True)
class ExtraCamera:
    """Another camera of the same step; never decoded by the loader unless selected.

    Args:
        key: Observation key (nested path allowed with ``/``).
        hw: Raw (H, W).
        kind: ``rgb`` (3 channels, JPEG) or ``depth`` (1 channel, PNG uint16 in the real data; stand-ins use uint8).
    """

    key: str
    hw: tuple[int, int]
    kind: str = "rgb"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset.

    Args:
        name: Registry name (what dataset lists use).
        tfds_dir: Directory under the data root (``<root>/<tfds_dir>/<version>``).
        version: TFDS version string of the mirror.
        image_key: The camera that is read: ``steps/observation/<image_key>``; a ``/`` means a nested path.
        image_hw: Raw (H, W) of that camera.
        instruction_key: Key of the instruction.
        instruction_location: ``obs`` = ``steps/observation/<key>``, ``step`` = ``steps/<key>``.
        instruction_encoding: ``string`` (tf.string), ``codepoints`` (int32[512] holding UTF-8 bytes, NUL padded:
            language_table) or ``multimodal`` (vima template whose placeholders point into assets; text incomplete).
        state_key: Observation key of the state (nested path allowed), None = no state (zeros, state_dim 0).
        state_dims: Leading state dimensions kept (0 when state_key is None).
        state_source_dims: Width of the state feature in the real data (0 when none).
        action_layout: ``dict`` (one entry ``action_key`` of the step's action dict), ``flat`` (the action tensor
            itself) or ``string`` (tidybot: not numeric; action_dim 0, masked).
        action_key: Key inside the action dict (``dict`` layout only; nested path allowed).
        action_dims: Leading action dimensions kept (0 for ``string``).
        action_source_dims: Width of the action feature in the real data (0 for ``string``).
        action_kind: Reducer over [t, t+k): ``delta`` (sum), ``absolute`` (a[t+k] - a[t]) or ``none`` (masked).
        pair_offset_steps: Default k (29-list value).
        control_hz: Control frequency (public value); None = unknown.
        num_episodes: Episodes in the real ``train`` split (mirror inventory); for embedded data, what make-demo
            writes.
        public_weight: Multiplier in OpenVLA's ``oxe_magic_soup_plus``; None = not in that mix.
        excluded: Excluded from the 29-list (broken on the cluster mirror, Q1).
        known_bad: Free-text known-bad note (Q1/Q2), "" when none.
        language_ok: False where Octo blanks the instruction as uninformative (Q10).
        robot_key: Where the robot name lives (robonet: ``episode_metadata/robot``), None = "".
        extra_cameras: Other cameras in the step (Q15).
        extra_obs: Other numeric observation features written by the stand-in mirror, as (key, width) pairs.
        extra_action: Other entries of a ``dict`` action, as (key, width, dtype) triples (width 0 = scalar).
        embedded: True for hlrp's own known-answer datasets (built by ``make_demo``).
        has_instruction: False where the dataset has no instruction feature (then "" per step); otherwise a
            record without ``instruction_key`` is a layout error.
        success_key: Top-level boolean episode feature marking a successful episode (kuka: ``success``); with
            ``data.adapter.success_only`` (default on) unsuccessful episodes are skipped, as rlds_dataset_mod's
            ``filter_success`` does for kuka in ``prepare_open_x``. None = no such feature.
        image_bgr: The main camera is stored BGR (channels flipped at decode; kpertsch/rlds_dataset_mod's
            ``prepare_open_x`` fixes the same three datasets: docs/data_at_scale.md).
        notes: Provenance of non-table facts and other remarks.
    """

    name: str
    tfds_dir: str
    version: str
    image_key: str
    image_hw: tuple[int, int]
    instruction_key: str
    instruction_location: str
    instruction_encoding: str = "string"
    state_key: Optional[str] = None
    state_dims: int = 0
    state_source_dims: int = 0
    action_layout: str = "flat"
    action_key: Optional[str] = None
    action_dims: int = 0
    action_source_dims: int = 0
    action_kind: str = "delta"
    pair_offset_steps: int = 5
    control_hz: Optional[float] = None
    num_episodes: int = 0
    public_weight: Optional[float] = None
    excluded: bool = False
    known_bad: str = ""
    language_ok: bool = True
    robot_key: Optional[str] = None
    extra_cameras: tuple[ExtraCamera, ...] = ()
    extra_obs: tuple[tuple[str, int], ...] = ()
    extra_action: tuple[tuple[str, int, str], ...] = ()
    embedded: bool = False
    has_instruction: bool = True
    image_bgr: bool = False
    success_key: Optional[str] = None
    notes: str = ""

    # --- derived -----------------------------------------------------------------------------------------------
    @property
    def path_suffix(self) -> str:
        """``<tfds_dir>/<version>`` relative to a data root."""
        return f"{self.tfds_dir}/{self.version}"

    @property
    def instruction_path(self) -> str:
        """Full path of the instruction inside a step, e.g. ``observation/natural_language_instruction``."""
        return f"observation/{self.instruction_key}" if self.instruction_location == "obs" else self.instruction_key

    @property
    def image_path(self) -> str:
        return f"observation/{self.image_key}"

    @property
    def state_path(self) -> Optional[str]:
        return None if self.state_key is None else f"observation/{self.state_key}"

    @property
    def action_path(self) -> str:
        """``action`` (flat/string) or ``action/<key>`` (dict)."""
        return f"action/{self.action_key}" if self.action_layout == "dict" else "action"

    @property
    def fps(self) -> Optional[float]:
        return self.control_hz

    def __post_init__(self) -> None:
        problems = []
        if self.instruction_location not in INSTRUCTION_LOCATIONS:
            problems.append(f"instruction_location={self.instruction_location!r} not in {INSTRUCTION_LOCATIONS}")
        if self.instruction_encoding not in INSTRUCTION_ENCODINGS:
            problems.append(f"instruction_encoding={self.instruction_encoding!r} not in {INSTRUCTION_ENCODINGS}")
        if self.action_layout not in ACTION_LAYOUTS:
            problems.append(f"action_layout={self.action_layout!r} not in {ACTION_LAYOUTS}")
        if self.action_kind not in ACTION_KINDS:
            problems.append(f"action_kind={self.action_kind!r} not in {ACTION_KINDS}")
        if self.action_layout == "dict" and not self.action_key:
            problems.append("action_layout='dict' needs action_key")
        if self.action_dims > self.action_source_dims:
            problems.append(f"action_dims {self.action_dims} > action_source_dims {self.action_source_dims}")
        if self.state_dims > self.state_source_dims:
            problems.append(f"state_dims {self.state_dims} > state_source_dims {self.state_source_dims}")
        if (self.state_key is None) != (self.state_dims == 0):
            problems.append("state_key None <=> state_dims 0")
        if problems:
            raise ValueError(f"DatasetSpec {self.name!r}: " + "; ".join(problems))


_WV = ("world_vector", 3)  # the common RT-1 style action dict
_RT1_ACTION = (("rotation_delta", 3, "float32"), ("gripper_closedness_action", 1, "float32"),
               ("terminate_episode", 0, "float32"))
_NLI = "natural_language_instruction"
_LI = "language_instruction"
_P_SRC = "source widths not in the table are from the TFDS catalog (P)"


def _oxe(name, tfds_dir, version, image_key, hw, ikey, iloc, *, state=None, sdims=0, ssrc=0, layout="flat",
         akey=None, adims=0, asrc=0, k=5, hz=None, eps=0, w=None, **kw) -> DatasetSpec:
    return DatasetSpec(name=name, tfds_dir=tfds_dir or name, version=version, image_key=image_key,
                       image_hw=hw, instruction_key=ikey, instruction_location=iloc, state_key=state,
                       state_dims=sdims, state_source_dims=ssrc, action_layout=layout, action_key=akey,
                       action_dims=adims, action_source_dims=asrc, pair_offset_steps=k, control_hz=hz,
                       num_episodes=eps, public_weight=w, notes=kw.pop("notes", _P_SRC), **kw)


_C = ExtraCamera

_OXE_29: list[DatasetSpec] = [
    _oxe("language_table", None, "0.1.0", "rgb", (360, 640), "instruction", "obs", instruction_encoding="codepoints",
         state="effector_translation", sdims=2, ssrc=2, adims=2, asrc=2, k=10, hz=10, eps=442226, w=0.1,
         extra_obs=(("effector_target_translation", 2),)),
    _oxe("bridge", None, "0.1.0", "image", (480, 640), _NLI, "obs", state="state", sdims=2, ssrc=7,
         layout="dict", akey="world_vector", adims=3, asrc=3, k=5, hz=5, eps=25460, w=1.0,
         known_bad="OXE copy is outdated; Octo/OpenVLA read bridge_orig from the Berkeley site (Q2)",
         extra_action=(("rotation_delta", 3, "float32"), ("open_gripper", 0, "bool"),
                       ("terminate_episode", 0, "float32"))),
    _oxe("rt1", "fractal20220817_data", "0.1.0", "image", (256, 320), _NLI, "obs", state="base_pose_tool_reached",
         sdims=3, ssrc=7, layout="dict", akey="world_vector", adims=3, asrc=3, k=3, hz=3, eps=87212, w=0.54,
         extra_obs=(("gripper_closed", 1),),
         extra_action=(("rotation_delta", 3, "float32"), ("gripper_closedness_action", 1, "float32"),
                       ("base_displacement_vector", 2, "float32"), ("base_displacement_vertical_rotation", 1,
                                                                     "float32"), ("terminate_episode", 3, "int32"))),
    _oxe("robonet", "robo_net", "0.1.0", "image", (240, 320), _LI, "step", state="state", sdims=3, ssrc=5,
         adims=3, asrc=5, k=10, hz=1, eps=82775, robot_key="episode_metadata/robot",
         extra_cameras=(_C("image1", (240, 320)),),
         notes="registry says 10 Hz (estimate); openx2lerobot 1 Hz. " + _P_SRC),
    _oxe("droid", None, "1.0.1", "exterior_image_1_left", (180, 320), _LI, "step", state="cartesian_position",
         sdims=6, ssrc=6, adims=7, asrc=7, k=5, hz=15, eps=95658, w=0.06,
         extra_cameras=(_C("wrist_image_left", (180, 320)),), extra_obs=(("gripper_position", 1),)),
    _oxe("berkeley_autolab_ur5", None, "0.1.0", "image", (480, 640), _NLI, "obs", state="robot_state", sdims=15,
         ssrc=15, layout="dict", akey="world_vector", adims=3, asrc=3, k=5, hz=5, eps=896, w=2.0,
         extra_cameras=(_C("hand_image", (480, 640)),), extra_action=_RT1_ACTION),
    _oxe("jaco_play", None, "0.1.0", "image", (224, 224), _NLI, "obs", state="end_effector_cartesian_pos", sdims=7,
         ssrc=7, layout="dict", akey="world_vector", adims=3, asrc=3, k=5, hz=10, eps=976, w=1.0,
         extra_cameras=(_C("image_wrist", (224, 224)),),
         extra_action=(("gripper_closedness_action", 1, "float32"), ("terminate_episode", 3, "int32"))),
    _oxe("kuka", None, "0.1.0", "image", (512, 640), _NLI, "obs", layout="dict", akey="world_vector", adims=3,
         asrc=3, k=5, hz=10, eps=580392, w=0.83, language_ok=False, success_key="success",
         known_bad="dropped by the predecessor's LeRobot v3 port (Q1); state only as ZLIB bytes (Q3)",
         extra_action=(("rotation_delta", 3, "float32"), ("gripper_closedness_action", 1, "float32"),
                       ("terminate_episode", 3, "int32"))),
    _oxe("taco_play", None, "0.1.0", "rgb_static", (150, 200), _NLI, "obs", state="robot_obs", sdims=15, ssrc=15,
         layout="dict", akey="actions", adims=7, asrc=7, k=5, hz=15, eps=3242, w=2.0, action_kind="absolute",
         extra_cameras=(_C("rgb_gripper", (84, 84)),),
         extra_action=(("rel_actions_world", 7, "float32"), ("rel_actions_gripper", 7, "float32"),
                       ("terminate_episode", 0, "float32")),
         notes="`actions` is an absolute target pose; relative one is rel_actions_world (Q7). " + _P_SRC),
    _oxe("roboturk", None, "0.1.0", "front_rgb", (480, 640), _NLI, "obs", layout="dict", akey="world_vector",
         adims=3, asrc=3, k=5, hz=10, eps=1796, w=2.0, language_ok=False, extra_action=_RT1_ACTION),
    _oxe("bc_z", None, "0.1.0", "image", (171, 213), _NLI, "obs", state="present/xyz", sdims=3, ssrc=3,
         layout="dict", akey="future/xyz_residual", adims=30, asrc=30, k=5, hz=10, eps=39350, w=0.2,
         known_bad="OpenVLA pins v0.1.0 (later versions broken); dropped in the LeRobot v3 port (Q1/Q2); "
                   "30-dim action = 10 future waypoints x xyz, Octo keeps [:3] (Q6)",
         extra_obs=(("present/axis_angle", 3), ("present/sensed_close", 1)),
         extra_action=(("future/axis_angle_residual", 30, "float32"), ("future/target_close", 10, "int64"))),
    _oxe("berkeley_cable_routing", None, "0.1.0", "image", (128, 128), _NLI, "obs", state="robot_state", sdims=2,
         ssrc=7, layout="dict", akey="world_vector", adims=3, asrc=3, k=5, hz=10, eps=1482, w=1.0,
         language_ok=False, extra_cameras=(_C("wrist45_image", (128, 128)),),
         extra_action=(("rotation_delta", 3, "float32"), ("terminate_episode", 0, "float32"))),
    _oxe("columbia_cairlab_pusht_real", None, "0.1.0", "image", (240, 320), _NLI, "obs", state="robot_state",
         sdims=2, ssrc=2, layout="dict", akey="world_vector", adims=3, asrc=3, k=5, hz=10, eps=122,
         extra_cameras=(_C("wrist_image", (240, 320)),), extra_action=_RT1_ACTION),
    _oxe("berkeley_fanuc_manipulation", None, "0.1.0", "image", (224, 224), _LI, "step", state="state", sdims=2,
         image_bgr=True, ssrc=13, adims=6, asrc=6, k=5, hz=10, eps=415, w=2.0,
         extra_cameras=(_C("wrist_image", (224, 224)),)),
    _oxe("uiuc_d3field", None, "0.1.0", "image_1", (360, 640), _LI, "step", state="state", sdims=2, ssrc=4,
         adims=3, asrc=3, k=5, hz=1, eps=192,
         known_bad="Octo comments it out of its mix as having broken raw data (Q2); proprio disputed (Q3)"),
    _oxe("ucsd_kitchen_dataset_converted_externally_to_rlds", None, "0.1.0", "image", (480, 640), _LI, "step",
         state="state", sdims=2, ssrc=21, adims=8, asrc=8, k=5, hz=2, eps=150, w=2.0),
    _oxe("ucsd_pick_and_place_dataset_converted_externally_to_rlds", None, "0.1.0", "image", (224, 224), _LI,
         "step", state="state", sdims=2, ssrc=7, adims=4, asrc=4, k=5, hz=3, eps=1355),
    _oxe("furniture_bench_dataset_converted_externally_to_rlds", None, "0.1.0", "image", (224, 224), _LI, "step",
         state="state", sdims=2, ssrc=35, adims=8, asrc=8, k=5, hz=10, eps=5100, w=0.1,
         extra_cameras=(_C("wrist_image", (224, 224)),)),
    _oxe("maniskill_dataset_converted_externally_to_rlds", None, "0.1.0", "image", (256, 256), _LI, "step",
         state="state", sdims=2, ssrc=18, adims=7, asrc=7, k=5, hz=20, eps=30213,
         extra_cameras=(_C("wrist_image", (256, 256)),)),
    _oxe("robo_set", None, "0.0.1", "image_left", (240, 424), _LI, "step", state="state", sdims=2, ssrc=8,
         adims=8, asrc=8, k=5, hz=5, eps=18250, extra_cameras=(_C("image_wrist", (240, 424)),)),
    _oxe("stanford_hydra_dataset_converted_externally_to_rlds", None, "0.1.0", "image", (240, 320), _LI, "step",
         image_bgr=True, state="state", sdims=2, ssrc=27, adims=7, asrc=7, k=5, hz=10, eps=570, w=2.0,
         language_ok=False,
         extra_cameras=(_C("wrist_image", (240, 320)),)),
    _oxe("stanford_robocook_converted_externally_to_rlds", None, "0.1.0", "image_1", (256, 256), _LI, "step",
         state="state", sdims=2, ssrc=7, adims=7, asrc=7, k=5, hz=5, eps=2460),
    _oxe("spoc", None, "0.0.1", "image", (224, 384), _LI, "step", adims=9, asrc=9, k=5, hz=None, eps=212043,
         extra_cameras=(_C("image_manipulation", (224, 384)),)),
    _oxe("tidybot", None, "0.0.1", "image", (360, 640), _LI, "step", layout="string", adims=0, asrc=0, k=5,
         hz=None, eps=24, action_kind="none",
         notes="steps/action is a string: action_dim 0, masked (Q5); TFDS catalog says 0.1.0, bucket/mirror 0.0.1"),
    _oxe("toto", None, "0.1.0", "image", (480, 640), _NLI, "obs", state="state", sdims=2, ssrc=7, layout="dict",
         akey="world_vector", adims=3, asrc=3, k=5, hz=30, eps=902, w=1.0, language_ok=False,
         extra_action=(("rotation_delta", 3, "float32"), ("open_gripper", 0, "bool"),
                       ("terminate_episode", 0, "float32"))),
    _oxe("viola", None, "0.1.0", "agentview_rgb", (224, 224), _NLI, "obs", layout="dict", akey="world_vector",
         adims=3, asrc=3, k=5, hz=20, eps=135, w=2.0, language_ok=False,
         extra_cameras=(_C("eye_in_hand_rgb", (224, 224)),),
         extra_obs=(("joint_states", 7), ("gripper_states", 2)), extra_action=_RT1_ACTION,
         notes="registry reads no state although joint_states/gripper_states exist (Q3). " + _P_SRC),
    _oxe("vima_converted_externally_to_rlds", None, "0.0.1", "image", (128, 256), "multimodal_instruction", "step",
         instruction_encoding="multimodal", layout="dict", akey="pose0_position", adims=3, asrc=3, k=5, hz=None,
         eps=660103, action_kind="absolute",
         extra_action=(("pose0_rotation", 4, "float32"), ("pose1_position", 3, "float32"),
                       ("pose1_rotation", 4, "float32")),
         notes="pose0_position is a pick/place primitive target, not a per-step delta (Q7); short episodes (Q13); "
               "instruction is a template over multimodal_instruction_assets (Q9). " + _P_SRC),
    _oxe("utaustin_mutex", None, "0.1.0", "image", (128, 128), _LI, "step", state="state", sdims=2, ssrc=24,
         image_bgr=True, adims=7, asrc=7, k=5, hz=20, eps=1500, w=1.0, language_ok=False,
         extra_cameras=(_C("wrist_image", (128, 128)),)),
    _oxe("fmb", None, "0.0.1", "image_side_1", (256, 256), _LI, "step", state="state_gripper_pose", sdims=2,
         ssrc=2, adims=7, asrc=7, k=5, hz=10, eps=8611, w=1.0, extra_cameras=(_C("image_wrist_1", (256, 256)),),
         notes="public mixes use fmb_dataset (footnote 1); state source width unknown, 2 assumed"),
]

_EXCLUDED: list[DatasetSpec] = [
    _oxe("aloha_mobile", None, "0.0.1", "cam_high", (480, 640), _LI, "step", state="state", sdims=14, ssrc=14,
         adims=16, asrc=16, k=5, hz=None, eps=276, excluded=True,
         known_bad="mirror: 166 shards listed vs 160 files (Q1)",
         extra_cameras=(_C("cam_left_wrist", (480, 640)), _C("cam_right_wrist", (480, 640)))),
    _oxe("mimic_play", None, "0.0.1", "image/front_image_1", (120, 120), _LI, "step", state="state/ee_pose",
         sdims=7, ssrc=7, adims=7, asrc=7, k=5, hz=None, eps=378, excluded=True,
         known_bad="mirror: 64 shards listed vs 204 files (Q1)",
         extra_cameras=(_C("image/front_image_2", (120, 120)),)),
    _oxe("dobbe", None, "0.0.1", "wrist_image", (256, 256), _LI, "step", state="state", sdims=2, ssrc=7, adims=7,
         asrc=7, k=5, hz=3.75, eps=5208, w=0.2, excluded=True,
         known_bad="mirror: 256 shards listed vs 1016 files (Q1); only camera is a wrist camera (Q15)"),
]

# --- embedded known-answer datasets (hlrp_core/data/demo.py builds them) -------------------------------------------
#: Normalised displacement per step of the procedural primitives (fraction of image width/height per axis).
EMBEDDED_STEP = 1.0 / 32.0

_EMB_NOTE = ("procedural known-answer data (hlrp_core/data/synth): the action is the gripper's displacement per step "
             "in fractions of image width (x, right +) and height (y, down +); frame t+k shows the gripper moved by "
             "k x action; episode_metadata/primitive_id holds the motion class 0..7")

_EMBEDDED: list[DatasetSpec] = [
    DatasetSpec(
        name="embedded_tabletop", tfds_dir="embedded_tabletop", version="1.0.0", image_key="image",
        image_hw=(64, 64), instruction_key=_NLI, instruction_location="obs", state_key="state", state_dims=2,
        state_source_dims=7, action_layout="dict", action_key="world_vector", action_dims=2, action_source_dims=3,
        action_kind="delta", pair_offset_steps=3, control_hz=10, num_episodes=200, embedded=True,
        extra_action=(("rotation_delta", 3, "float32"), ("open_gripper", 0, "bool"),
                      ("terminate_episode", 0, "float32")),
        notes="bridge-like layout; also a 'val' split of 24 episodes. " + _EMB_NOTE),
    DatasetSpec(
        name="embedded_langtable", tfds_dir="embedded_langtable", version="1.0.0", image_key="rgb",
        image_hw=(96, 128), instruction_key="instruction", instruction_location="obs",
        instruction_encoding="codepoints", state_key="effector_translation", state_dims=2, state_source_dims=2,
        action_layout="flat", action_dims=2, action_source_dims=2, action_kind="delta", pair_offset_steps=3,
        control_hz=10, num_episodes=100, embedded=True, extra_obs=(("effector_target_translation", 2),),
        notes="language_table-like layout (int32 code points). " + _EMB_NOTE),
    DatasetSpec(
        name="embedded_multicam", tfds_dir="embedded_multicam", version="1.0.0", image_key="image",
        image_hw=(128, 128), instruction_key=_LI, instruction_location="step", state_key="state", state_dims=4,
        state_source_dims=4, action_layout="flat", action_dims=4, action_source_dims=4, action_kind="delta",
        pair_offset_steps=2, control_hz=10, num_episodes=48, embedded=True,
        extra_cameras=(ExtraCamera("wrist_image", (64, 64)),),
        notes="step-level instruction, flat 4-dim action (dx, dy, 0, gripper), a second camera. " + _EMB_NOTE),
    DatasetSpec(
        name="embedded_fetch", tfds_dir="embedded_fetch", version="1.0.0", image_key="image", image_hw=(96, 96),
        instruction_key=_LI, instruction_location="step", state_key="state", state_dims=4, state_source_dims=4,
        action_layout="flat", action_dims=4, action_source_dims=4, action_kind="delta", pair_offset_steps=3,
        control_hz=25, num_episodes=110, embedded=True,
        notes="MuJoCo Fetch arm (gymnasium-robotics FetchReach) with a scripted 8-direction policy; action = Fetch "
              "action (dx, dy, dz, gripper) in [-1, 1] (x 0.05 m per step); state = gripper xyz + finger width; "
              "episode_metadata/primitive_id holds the motion class 0..7"),
]

OXE_29: tuple[str, ...] = tuple(s.name for s in _OXE_29)
EXCLUDED: tuple[str, ...] = tuple(s.name for s in _EXCLUDED)
EMBEDDED: tuple[str, ...] = tuple(s.name for s in _EMBEDDED)
#: The embedded datasets built without MuJoCo (always available).
EMBEDDED_PROCEDURAL: tuple[str, ...] = ("embedded_tabletop", "embedded_langtable", "embedded_multicam")

REGISTRY: dict[str, DatasetSpec] = {s.name: s for s in (*_OXE_29, *_EXCLUDED, *_EMBEDDED)}


class UnknownDatasetError(KeyError):
    """An unknown dataset name; the message lists the known names and the closest match."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def closest(name: str, names=None) -> Optional[str]:
    names = list(REGISTRY) if names is None else list(names)
    hits = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if not hits:
        by_dir = {s.tfds_dir: s.name for s in REGISTRY.values()}
        hits = [by_dir[h] for h in difflib.get_close_matches(name, list(by_dir), n=1, cutoff=0.5)]
    return hits[0] if hits else None


def unknown_message(name: str, names=None) -> str:
    names = sorted(REGISTRY) if names is None else sorted(names)
    guess = closest(name, names)
    hint = f" Did you mean {guess!r}?" if guess else ""
    return f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(names)}"


def get(name: str) -> DatasetSpec:
    """The spec of ``name`` (registry name, or a tfds_dir such as ``fractal20220817_data``).

    Raises:
        UnknownDatasetError: naming the closest match and listing all known names.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    for spec in REGISTRY.values():
        if spec.tfds_dir == name:
            return spec
    raise UnknownDatasetError(unknown_message(name))


def names(*, include_excluded: bool = False, include_embedded: bool = False) -> list[str]:
    """Registry names: the 29 OXE datasets, optionally the excluded and embedded ones."""
    out = list(OXE_29)
    if include_excluded:
        out += list(EXCLUDED)
    if include_embedded:
        out += list(EMBEDDED)
    return out


def resolve_list(datasets) -> list[str]:
    """``"all29"`` / ``"all32"`` / ``"embedded"`` / ``"a,b"`` / a list -> registry names (unknown ones raise)."""
    if isinstance(datasets, str):
        key = datasets.strip()
        if key == "all29":
            return list(OXE_29)
        if key == "all32":
            return list(OXE_29) + list(EXCLUDED)
        if key == "embedded":
            return list(EMBEDDED)
        datasets = [d for d in key.split(",") if d.strip()]
    return [get(d.strip()).name for d in datasets]
