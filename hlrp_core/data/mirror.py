"""A local stand-in mirror of the OXE datasets: real TFDS dir names, versions and feature structure, known content.

``write_mirror(root, "all29", episodes=8)`` writes ``<root>/<tfds_dir>/<version>/`` for each dataset with the
structure the registry describes (camera key and raw size, extra cameras, state/instruction/action keys, nesting,
dtypes, dict/flat/string action, code-point instructions, ``episode_metadata/robot`` for robonet), filled with
procedural tabletop episodes (``hlrp_core.data.synth.tabletop``) rendered at low resolution and upscaled.

Datasets the registry marks ``image_bgr`` store the main camera BGR, as the real ones do. Known answer per
stand-in step: the first two kept action dimensions are the gripper's normalised displacement
(dx, dy) from frame t to t+1 (``delta`` datasets) or its normalised position at t+1 (``absolute`` datasets, so
a[t+k] - a[t] is the displacement); the first two state dimensions are the gripper position at t;
``episode_metadata/primitive_id`` is the motion class 0..7. tidybot's string action is the direction name.

The same functions (:func:`spec_features`, :func:`spec_episode`) also build the procedural embedded datasets.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import registry as reg
from . import rlds_writer as rw
from .synth import tabletop as tt
from .synth.sheet import episode_thumbs, save_contact_sheet

#: Keys whose "/" is part of the literal feature name (bc_z's flat keys); other "/" keys are nested dicts.
LITERAL_SLASH_DATASETS = frozenset({"bc_z"})
#: Rendering resolution cap for the mirror (frames are upscaled to the real size).
RENDER_MAX_SIDE = 96
JPEG_QUALITY = 90
MIRROR_CONTACT_SHEET = "mirror_contact_sheet.png"


def _put(d: dict, key: str, value, literal: bool) -> None:
    if literal or "/" not in key:
        d[key] = value
        return
    head, rest = key.split("/", 1)
    _put(d.setdefault(head, {}), rest, value, literal)


def spec_features(spec: reg.DatasetSpec):
    """The TFDS FeaturesDict of ``spec`` (RLDS layout)."""
    tfds = rw._tfds()
    import tensorflow as tf

    F = tfds.features
    literal = spec.name in LITERAL_SLASH_DATASETS
    jpeg = dict(encoding_format="jpeg")
    obs: dict = {}
    _put(obs, spec.image_key, F.Image(shape=(*spec.image_hw, 3), **jpeg), literal)
    for cam in spec.extra_cameras:
        _put(obs, cam.key, F.Image(shape=(*cam.hw, 3), **jpeg), literal)
    if spec.state_key:
        _put(obs, spec.state_key, F.Tensor(shape=(spec.state_source_dims,), dtype=tf.float32), literal)
    for key, width in spec.extra_obs:
        _put(obs, key, F.Tensor(shape=(width,), dtype=tf.float32), literal)
    step_extra: dict = {}
    if spec.instruction_encoding == "codepoints":
        instr = F.Tensor(shape=(reg.CODEPOINT_LEN,), dtype=tf.int32)
    else:
        instr = F.Text()
    if spec.instruction_location == "obs":
        obs[spec.instruction_key] = instr
    else:
        step_extra[spec.instruction_key] = instr
    if spec.action_layout == "string":
        action = F.Text()
    elif spec.action_layout == "flat":
        action = F.Tensor(shape=(spec.action_source_dims,), dtype=tf.float32)
    else:
        action = {}
        _put(action, spec.action_key, F.Tensor(shape=(spec.action_source_dims,), dtype=tf.float32), literal)
        for key, width, dtype in spec.extra_action:
            feat = F.Scalar(dtype=getattr(tf, dtype)) if width == 0 else F.Tensor(shape=(width,),
                                                                                   dtype=getattr(tf, dtype))
            _put(action, key, feat, literal)
    meta = {"file_path": F.Text(), "primitive_id": F.Scalar(dtype=tf.int32)}
    if spec.robot_key:
        meta[spec.robot_key.split("/")[-1]] = F.Text()
    extra = {spec.success_key: F.Scalar(dtype=tf.bool)} if spec.success_key else None
    return rw.rlds_features(obs, action, step_extra=step_extra, episode_metadata=meta, episode_extra=extra)


def _render_hw(hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    h, w = hw
    s = min(1.0, max_side / max(h, w))
    return max(16, round(h * s)), max(16, round(w * s))


@dataclass
class RenderedEpisode:
    example: dict            # in feature structure, images as JPEG bytes
    frames: np.ndarray       # main camera frames at the real size (for contact sheets / tests)
    episode: tt.TabletopEpisode


def spec_episode(spec: reg.DatasetSpec, seed: int, split_id: int, index: int, num_steps: int, *,
                 max_side: Optional[int] = RENDER_MAX_SIDE, quality: int = JPEG_QUALITY) -> RenderedEpisode:
    """One known-answer episode of ``spec`` (deterministic in (seed, name, split_id, index))."""
    name_crc = zlib.crc32(spec.name.encode())
    render_hw = spec.image_hw if max_side is None else _render_hw(spec.image_hw, max_side)
    pid = (index + name_crc + seed) % 8
    ep = tt.render_episode([seed, name_crc, split_id, index], render_hw, num_steps, primitive_id=pid)
    frames = tt.resize_frames(ep.frames, spec.image_hw)
    literal = spec.name in LITERAL_SLASH_DATASETS
    T = num_steps
    cams = {}
    for cam in spec.extra_cameras:
        # a second view: the scene mirrored left-right at the camera's size (cheap, clearly a different image)
        cams[cam.key] = tt.resize_frames(np.ascontiguousarray(ep.frames[:, :, ::-1]), cam.hw)
    direction = tt.DIRECTION_NAMES[ep.primitive_id]
    text = ep.instruction
    if spec.instruction_encoding == "multimodal":
        text = f"move the {{dragged_obj_1}} {direction}"
    steps = []
    for t in range(T):
        obs: dict = {}
        main = frames[t][..., ::-1] if spec.image_bgr else frames[t]  # stored BGR like the real dataset
        _put(obs, spec.image_key, rw.jpeg_bytes(main, quality), literal)
        for key, cf in cams.items():
            _put(obs, key, rw.jpeg_bytes(cf[t], quality), literal)
        pos = ep.positions[t]
        if spec.state_key:
            state = np.zeros(spec.state_source_dims, np.float32)
            n = min(2, spec.state_source_dims)
            state[:n] = pos[:n]
            _put(obs, spec.state_key, state, literal)
        for key, width in spec.extra_obs:
            v = np.zeros(width, np.float32)
            if key == "effector_target_translation":
                v[: min(2, width)] = ep.positions[-1][: min(2, width)]
            _put(obs, key, v, literal)
        instr = tt.codepoints(text, reg.CODEPOINT_LEN) if spec.instruction_encoding == "codepoints" else text
        step: dict = {}
        if spec.instruction_location == "obs":
            obs[spec.instruction_key] = instr
        else:
            step[spec.instruction_key] = instr
        if spec.action_layout == "string":
            action = direction
        else:
            vec = np.zeros(spec.action_source_dims, np.float32)
            known = ep.actions[t] if spec.action_kind != "absolute" else pos + ep.actions[t]
            n = min(2, spec.action_source_dims)
            vec[:n] = known[:n]
            if spec.action_layout == "flat":
                action = vec
            else:
                action = {}
                _put(action, spec.action_key, vec, literal)
                for key, width, dtype in spec.extra_action:
                    last = t == T - 1
                    if dtype == "bool":
                        val = np.bool_(True) if width == 0 else np.ones(width, bool)
                    elif width == 0:
                        val = np.array(float(last), dtype=dtype)
                    elif key.startswith("terminate"):
                        val = np.array([0, 1, 0] if last else [1, 0, 0], dtype=dtype)[:width]
                    else:
                        val = np.zeros(width, dtype=dtype)
                    _put(action, key, val, literal)
        step.update(observation=obs, action=action, reward=np.float32(t == T - 1), discount=np.float32(1.0),
                    is_first=t == 0, is_last=t == T - 1, is_terminal=t == T - 1)
        steps.append(step)
    meta = {"file_path": f"hlrp://{spec.name}/{split_id}/{index}", "primitive_id": np.int32(ep.primitive_id)}
    if spec.robot_key:
        meta[spec.robot_key.split("/")[-1]] = ("sawyer", "widowx", "franka", "baxter")[index % 4]
    example = {"steps": steps, "episode_metadata": meta}
    if spec.success_key:
        example[spec.success_key] = index % 3 != 2  # every third stand-in episode failed
    return RenderedEpisode(example=example, frames=frames, episode=ep)


def episode_lengths(spec: reg.DatasetSpec, seed: int, split_id: int, n: int, t_range=None) -> list[int]:
    """Episode lengths: vima short (6..8), others in [max(12, k+2), 20] (the tabletop fits 20 steps)."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode()), split_id, 7919])
    if t_range is None:
        lo = max(spec.pair_offset_steps + 1, 6) if "vima" in spec.name else max(12, spec.pair_offset_steps + 2)
        hi = max(lo, 8 if "vima" in spec.name else 20)
    else:
        lo, hi = t_range
    return [int(x) for x in rng.integers(lo, hi + 1, size=n)]


@dataclass
class DatasetReport:
    name: str
    path: str
    episodes: dict
    seconds: float
    bytes: int
    skipped: str = ""
    sheet_rows: list = field(default_factory=list, repr=False)


def write_spec_dataset(spec: reg.DatasetSpec, root, *, splits: dict[str, int], seed: int = 0,
                       num_shards: int | dict = 1, overwrite: bool = False, t_range=None,
                       max_side: Optional[int] = RENDER_MAX_SIDE, sheet_episodes: int = 2) -> DatasetReport:
    """Write one dataset of ``spec`` with procedural content; ``splits`` maps split name -> episode count."""
    t0 = time.perf_counter()
    features = spec_features(spec)
    sheet_rows: list = []
    lengths = {s: episode_lengths(spec, seed, i, n, t_range) for i, (s, n) in enumerate(splits.items())}

    def make(split: str, split_id: int):
        def gen():
            for i, T in enumerate(lengths[split]):
                r = spec_episode(spec, seed, split_id, i, T, max_side=max_side)
                if split_id == 0 and i < sheet_episodes:
                    sheet_rows.append((f"{spec.name}\n{spec.image_key} {spec.image_hw[0]}x{spec.image_hw[1]}\n"
                                       f"ep {i}: {r.episode.instruction}", episode_thumbs(r.frames)))
                yield r.example
        return gen

    path = rw.write_dataset(root, spec.tfds_dir, spec.version, features,
                            {s: make(s, i) for i, s in enumerate(splits)}, num_episodes=splits,
                            num_shards=num_shards, overwrite=overwrite,
                            description=f"hlrp known-answer stand-in for {spec.name}. {spec.notes}")
    return DatasetReport(name=spec.name, path=str(path), episodes=dict(splits),
                         seconds=time.perf_counter() - t0, bytes=rw.dir_size_bytes(path), sheet_rows=sheet_rows)


def write_mirror(root, datasets="all29", episodes: int = 8, seed: int = 0, overwrite: bool = False, *,
                 num_shards: int = 1, contact_sheet: bool = True) -> dict:
    """Write stand-ins for OXE datasets under ``root`` (``<root>/<tfds_dir>/<version>``).

    Args:
        root: Mirror root (like the researcher's local OXE mirror root).
        datasets: ``"all29"``, ``"all32"`` (with the 3 excluded), a comma-separated string or a list of names.
        episodes: Episodes in each dataset's ``train`` split.
        seed: Same seed -> byte-identical episodes.
        overwrite: Replace existing non-empty dataset directories (otherwise refused before anything is written).
        num_shards: TFRecord shards per dataset.
        contact_sheet: Write ``<root>/mirror_contact_sheet.png`` (first/middle/last frame of 2 episodes each).

    Returns:
        ``{"root", "datasets": {name: {"path", "episodes", "seconds", "bytes"}}, "seconds", "bytes",
        "contact_sheet"}``.

    Raises:
        registry.UnknownDatasetError: an unknown name (message lists the known ones).
        rlds_writer.TargetNotEmptyError: a target exists, is non-empty and overwrite is False.
    """
    t0 = time.perf_counter()
    root = Path(root)
    names = reg.resolve_list(datasets)
    specs = [reg.get(n) for n in names]
    if not overwrite:
        for spec in specs:
            d = rw.dataset_dir(root, spec.tfds_dir, spec.version)
            if d.exists() and any(d.iterdir()):
                raise rw.TargetNotEmptyError(f"{d} exists and is not empty; pass overwrite=True (--overwrite)")
    root.mkdir(parents=True, exist_ok=True)
    out: dict = {"root": str(root), "datasets": {}}
    rows: list = []
    for spec in specs:
        r = write_spec_dataset(spec, root, splits={"train": int(episodes)}, seed=seed, num_shards=num_shards,
                               overwrite=overwrite)
        out["datasets"][spec.name] = {"path": r.path, "episodes": r.episodes, "seconds": round(r.seconds, 3),
                                      "bytes": r.bytes}
        rows.extend(r.sheet_rows)
    out["contact_sheet"] = str(save_contact_sheet(rows, root / MIRROR_CONTACT_SHEET)) if contact_sheet else None
    out["seconds"] = round(time.perf_counter() - t0, 3)
    out["bytes"] = sum(d["bytes"] for d in out["datasets"].values())
    return out


def write_scale_dataset(root, name: str = "rt1", episodes: int = 100000, frame_size: int = 16, seed: int = 0, *,
                        num_shards: int = 0, pool: int = 64, overwrite: bool = False) -> dict:
    """A large cheap stand-in of one dataset for scale benchmarks (docs/data_at_scale.md): the registry's layout
    with the main camera at ``frame_size`` x ``frame_size``, ``episodes`` train episodes in ``num_shards`` shards
    (0 = one per 100 episodes, about the real mirror's ~113), each a serialized copy of one of ``pool`` rendered
    episodes (so writing costs disk bandwidth, not rendering)."""
    import dataclasses

    t0 = time.perf_counter()
    spec = dataclasses.replace(reg.get(name), image_hw=(int(frame_size), int(frame_size)), extra_cameras=())
    features = spec_features(spec)
    lengths = episode_lengths(spec, seed, 0, pool)
    records = [features.serialize_example(spec_episode(spec, seed, 0, i, T, max_side=None).example)
               for i, T in enumerate(lengths)]
    shards = int(num_shards) or max(1, int(episodes) // 100)

    def gen():
        for i in range(int(episodes)):
            yield records[i % pool]

    path = rw.write_dataset(root, spec.tfds_dir, spec.version, features, {"train": gen},
                            num_episodes={"train": int(episodes)}, num_shards=shards, overwrite=overwrite,
                            description=f"hlrp scale stand-in for {spec.name} ({frame_size}px frames)")
    return {"name": name, "path": str(path), "episodes": int(episodes), "shards": shards,
            "seconds": round(time.perf_counter() - t0, 2), "bytes": rw.dir_size_bytes(path),
            "record_bytes_mean": float(np.mean([len(r) for r in records])),
            "steps_mean": float(np.mean(lengths))}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"
